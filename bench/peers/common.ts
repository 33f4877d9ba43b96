/**
 * What every peer adapter shares: the 100-byte payload that carries its own id (so each side counts every message
 * exactly once, whatever envelope its library wraps around it), a window of sends in flight, a gate that hands a
 * long-lived consumer its messages one round at a time, and a deadline on every wait.
 */
import { randomUUID } from 'node:crypto';
import { MessageBus } from '../../src/index.ts';
import type { BenchCase } from '../harness.ts';
import { defineCase, freshName, Tally } from '../lib/case.ts';
import { ACK_TIMEOUT_MS, handlerMember, type Member, type Where } from '../lib/members.ts';

/** Messages in one round of every publish and consume case. */
export const MESSAGES = 2_000;
/** Unacked deliveries each consumer may hold, and sends each publisher keeps in flight. */
export const PREFETCH = 100;
/** Bytes of every payload: a UUID, then padding. */
export const PAYLOAD_BYTES = 100;
/** No round of 2,000 messages takes this long on a working library; one that does has hung. */
const ROUND_DEADLINE_MS = 60_000;
/** Connecting, declaring, closing. */
export const STEP_DEADLINE_MS = 20_000;

/** A 100-character payload starting with a fresh UUID. */
export function payload(): string {
  return randomUUID().padEnd(PAYLOAD_BYTES, 'a');
}

/** The id a payload (string or bytes) carries. */
export function idOf(body: string | Uint8Array): string {
  return (typeof body === 'string' ? body : Buffer.from(body).toString('latin1')).slice(0, 36);
}

/** `promise`, or a clear failure naming `what` once `ms` have passed. */
export async function within<T>(promise: Promise<T>, what: string, ms = STEP_DEADLINE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer after ${ms / 1000} s (the library hung)`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `send(i)` for i < count with at most `window` unsettled at once. */
export async function windowed(count: number, window: number, send: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < count) await send(next++);
  };
  await Promise.all(Array.from({ length: Math.min(window, count) }, lane));
}

/**
 * Hands a consumer that lives across rounds its messages one round at a time: a message that arrives when the round
 * has all it needs waits (unacked, holding a prefetch slot, as busbar's handler member does) for the next round.
 */
export class RoundGate {
  #tally: Tally | undefined;
  #wanted = 0;
  #done: () => void = () => {};
  #open: () => void = () => {};
  #gate = this.#next();
  #closed = false;

  #next(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#open = resolve;
    });
  }

  #release(): void {
    const open = this.#open;
    this.#gate = this.#next();
    open();
  }

  /** Waits for room in a round, then counts the message; false once closed (the caller should not ack it). */
  async take(id: string): Promise<boolean> {
    while (!this.#closed && (!this.#tally || this.#tally.handled >= this.#wanted)) await this.#gate;
    if (this.#closed || !this.#tally) return false;
    this.#tally.received(id);
    if (this.#tally.handled === this.#wanted) this.#done();
    return true;
  }

  /** One round of `count` messages, failing clearly if they stop coming. */
  round(count: number, tally: Tally, what: string): Promise<void> {
    const done = new Promise<void>((resolve) => {
      this.#done = resolve;
    });
    this.#tally = tally;
    this.#wanted = count;
    this.#release();
    return within(done, `${what}: ${count} messages a round`, ROUND_DEADLINE_MS).catch((error: Error) => {
      throw new Error(`${error.message}; got ${tally.handled}`);
    });
  }

  close(): void {
    this.#closed = true;
    this.#release();
  }
}

/** One library doing the publish side: `publish` resolves once every message is at the broker as the library can tell. */
export interface Publisher {
  publish(count: number, tally: Tally): Promise<void>;
  close(): Promise<void>;
}

/** One library doing the consume side: a consumer that lives across rounds, fed through a RoundGate. */
export interface Subscriber {
  round(count: number, tally: Tally): Promise<void>;
  close(): Promise<void>;
}

/**
 * A side of a case: what it is called, and how to open it, for publishing or, with `consume`, with a consumer
 * started on a reservoir of `rounds` rounds' messages.
 */
export interface Side<T> {
  name: string;
  open(rounds: number, consume: boolean): Promise<T>;
}

/** A publish case: `peer` beside `baseline` (the raw client), alternating rounds, both opened before the first. */
export function publishCase(transport: string, peer: Side<Publisher>, baseline: Side<Publisher>): BenchCase {
  return pairCase(transport, `publish 100B: ${peer.name}`, false, peer, baseline, (p, tally) =>
    p.publish(MESSAGES, tally),
  );
}

/** A consume+ack case: each side opens its consumer and stores all its rounds' messages before the first round. */
export function consumeCase(transport: string, peer: Side<Subscriber>, baseline: Side<Subscriber>): BenchCase {
  return pairCase(transport, `consume+ack 100B: ${peer.name}`, true, peer, baseline, (s, tally) =>
    s.round(MESSAGES, tally),
  );
}

function pairCase<T extends { close(): Promise<void> }>(
  transport: string,
  name: string,
  consume: boolean,
  peer: Side<T>,
  baseline: Side<T>,
  run: (side: T, tally: Tally) => Promise<void>,
): BenchCase {
  let subject: T | undefined;
  let raw: T | undefined;
  const opened = (side: T | undefined) => {
    if (!side) throw new Error(`${transport} '${name}': used before its setup`);
    return side;
  };
  const close = async () => {
    const sides = [subject, raw];
    subject = raw = undefined;
    const results = await Promise.allSettled(
      sides.map((side) => side && within(side.close(), `${transport} '${name}': closing`)),
    );
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  };
  return defineCase({
    name,
    transport,
    messages: MESSAGES,
    async setup({ rounds }) {
      // Warm-up round, the timed rounds, and one spare.
      try {
        subject = await within(peer.open(rounds + 2, consume), `${transport} '${name}': opening ${peer.name}`, 120_000);
        raw = await within(
          baseline.open(rounds + 2, consume),
          `${transport} '${name}': opening ${baseline.name}`,
          120_000,
        );
      } catch (error) {
        await close().catch(() => {});
        throw error;
      }
    },
    teardown: close,
    subject: (tally) => run(opened(subject), tally),
    baseline: (tally) => run(opened(raw), tally),
  });
}

/** busbar's producer (confirms, the default 'sync' method), one message a send, PREFETCH sends in flight. */
export function busbarPublish(bus: MessageBus, type: string, tally: Tally, count: number): Promise<void> {
  const producer = bus.producer({ messageType: type });
  return windowed(count, PREFETCH, async () => {
    await producer.send([Buffer.from(payload())]);
    tally.count();
  }).finally(() => producer.close());
}

/**
 * busbar through its public API on `url`: a fresh type with one group (created before anything is published, as a
 * peer's queue is), deregistered on close. `consume` says which consumer the reservoir is read with.
 */
export function busbarSide(
  url: string,
  consume?: 'handle' | 'for await',
  partitions?: number,
): Side<Publisher & Subscriber> {
  const name =
    consume === 'handle'
      ? `busbar bus.handle (concurrency ${PREFETCH}, prefetch ${PREFETCH})`
      : consume === 'for await'
        ? `busbar consumer for await + await m.ack() (prefetch ${PREFETCH})`
        : 'busbar producer.send (confirms)';
  return {
    name,
    async open(rounds) {
      const bus = await MessageBus.connect(url);
      const admin = bus.admin();
      const type = freshName('peers');
      const group = freshName('g');
      const cleanup = async () => {
        await retried(() => admin.deregisterMessageType(type)).catch(() => {});
        await bus.close();
      };
      try {
        // Retried: on Kafka it describes every topic on the cluster, and fails when another client deletes one
        // meanwhile (a busbar bug, reported; other benches on the same broker do).
        await retried(() => admin.registerMessageType(type, partitions ? { partitions } : {}));
        await admin.createConsumerGroup(type, group, { offset: 'earliest' });
        let member: Member | undefined;
        const where = { type, group };
        if (consume === 'handle') member = handlerMember(bus, where, PREFETCH, PREFETCH);
        if (consume === 'for await') member = awaitingMember(bus, where);
        if (member) {
          await member.ready;
          await busbarPublish(bus, type, new Tally(0, new Map()), MESSAGES * rounds);
        }
        let published = 0;
        return {
          async publish(count, tally) {
            await busbarPublish(bus, type, tally, count);
            published += count;
            const unread = await admin.unreadCount(type, group);
            if (unread !== published)
              throw new Error(`busbar: the group holds ${unread} messages, expected ${published}`);
          },
          round: (count, tally) => within(member!.round(count, tally), `${name}: a round`, 60_000),
          async close() {
            await member?.close();
            await cleanup();
          },
        };
      } catch (error) {
        await cleanup().catch(() => {});
        throw error;
      }
    },
  };
}

/** The README's loop, `for await (const m of consumer) { …; await m.ack(); }`, with prefetch PREFETCH. */
function awaitingMember(bus: MessageBus, { type, group }: Where): Member {
  const consumer = bus.consumer({
    consumerId: 'bench',
    consumerGroup: group,
    messageTypes: type,
    prefetch: PREFETCH,
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

async function retried<T>(step: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (error) {
      if (attempt >= attempts) throw error;
    }
  }
}
