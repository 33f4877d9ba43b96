/**
 * busbar's side of a consume case, as a group member that takes `count` messages a round: a consumer awaiting every
 * ack (the README's loop), a handler, or a bare transport subscription. A case opens one per round, or, where the
 * broker needs it (TransportBench.persistentMembers), one for all rounds, joined before the reservoir is stored.
 */
import type { MessageBus } from '../../src/index.ts';
import type { Transport } from '../../src/transport/contract.ts';
import type { Tally } from './case.ts';

/** Long enough that no lease runs out while the other side has its round. */
export const ACK_TIMEOUT_MS = 600_000;

export interface Member {
  readonly ready: Promise<void>;
  /** Takes the next `count` messages of the group, counting each in `tally`; resolves once all are acked. */
  round(count: number, tally: Tally): Promise<void>;
  close(): Promise<void>;
}

export interface Where {
  type: string;
  group: string;
}

/** `for await (const m of consumer) { …; await m.ack(); }`, by hand so that one loop can span rounds. */
export function consumerMember(bus: MessageBus, { type, group }: Where): Member {
  const consumer = bus.consumer({
    consumerId: 'bench',
    consumerGroup: group,
    messageTypes: type,
    ackTimeoutMs: ACK_TIMEOUT_MS,
  });
  const messages = consumer[Symbol.asyncIterator]();
  return {
    ready: consumer.ready,
    async round(count, tally) {
      while (tally.handled < count) {
        const next = await messages.next();
        if (next.done) throw new Error('the consumer ended before the round did');
        tally.received(next.value.id, next.value.attempt);
        await next.value.ack();
      }
    },
    close: () => consumer.close(),
  };
}

/**
 * bus.handle(): the handler function counts a message and returns (so the bus acks it). A message arriving when the
 * round has all it needs waits for the next round, holding its slot as busy work would; on close, such messages
 * return uncounted and are acked, which only shortens the reservoir.
 */
export function handlerMember(bus: MessageBus, { type, group }: Where, concurrency: number, prefetch?: number): Member {
  let tally: Tally | undefined;
  let wanted = 0;
  let roundDone: () => void = () => {};
  let openGate: () => void = () => {};
  let gate = new Promise<void>((resolve) => {
    openGate = resolve;
  });
  let closed = false;
  const handler = bus.handle(
    type,
    { group, consumerId: 'bench', concurrency, ...(prefetch ? { prefetch } : {}), ackTimeoutMs: ACK_TIMEOUT_MS },
    async (m) => {
      while (!closed && (!tally || tally.handled >= wanted)) await gate;
      if (closed || !tally) return;
      tally.received(m.id, m.attempt);
      if (tally.handled === wanted) roundDone();
    },
  );
  const release = () => {
    const open = openGate;
    gate = new Promise<void>((resolve) => {
      openGate = resolve;
    });
    open();
  };
  return {
    ready: handler.ready,
    round(count, roundTally) {
      const done = new Promise<void>((resolve) => {
        roundDone = resolve;
      });
      tally = roundTally;
      wanted = count;
      release();
      return done;
    },
    async close() {
      closed = true;
      release();
      await handler.close();
    },
  };
}

/** A bare subscription acking every message, acks not awaited one by one. */
export function subscriptionMember(transport: Transport, { type, group }: Where, prefetch: number): Member {
  const subscription = transport.consume({
    types: [type],
    group,
    consumerId: 'bench',
    offset: 'earliest',
    prefetch,
    ackTimeoutMs: ACK_TIMEOUT_MS,
  });
  const deliveries = subscription[Symbol.asyncIterator]();
  return {
    ready: subscription.ready,
    async round(count, tally) {
      const acks: Promise<void>[] = [];
      while (tally.handled < count) {
        const next = await deliveries.next();
        if (next.done) throw new Error('the subscription ended before the round did');
        tally.received(next.value.message.id, next.value.attempt);
        acks.push(next.value.ack());
      }
      await Promise.all(acks);
    },
    close: () => subscription.close(),
  };
}
