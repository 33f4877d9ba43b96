/**
 * rabbitmq vs raw amqplib on the same RabbitMQ (BUSBAR_TEST_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672),
 * same topology (exchange `busbar`, the type's stream log and one quorum group queue bound to it, made by busbar as
 * docs/wire/rabbitmq.md says a plain client finds it), same properties and headers, same durability (persistent,
 * publisher confirms: the raw side publishes a batch, then waitForConfirms()). The raw consumer reads the group queue
 * with the same prefetch and sends one basic.ack per message (AMQP does not confirm acks, so awaiting one is moot).
 * - `transport.publish …, 8 concurrent`: 8 publishers at once on one transport, vs 8 such loops on one channel.
 * - `transport consume+ack …, raw acks coalesced too`: busbar coalesces the acks of one event-loop turn into one
 *   `multiple` ack, so this also runs it beside a raw loop that coalesces its acks the same way.
 */
import amqp, { type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { EXCHANGE, groupQueue, publishOptions, toBuffer } from '../src/transports/rabbitmq/wire.ts';
import type { Tally } from './lib/case.ts';
import { createGroup, type RawClient, transportBench, transportCases } from './lib/transport-bench.ts';

const URL = process.env.BUSBAR_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const PREFETCH = 100;

async function connectRaw(url: string) {
  const connection = await amqp.connect(url);
  const channel: ConfirmChannel = await connection.createConfirmChannel();
  const consume = async (
    type: string,
    group: string,
    count: number,
    tally: Tally,
    coalesce: boolean,
    prefetch = PREFETCH,
  ) => {
    const consumer = await connection.createChannel();
    await consumer.prefetch(prefetch);
    let last: ConsumeMessage | undefined;
    let scheduled = false;
    await new Promise<void>((resolve) => {
      void consumer.consume(groupQueue(type, group), (message) => {
        // Past the count, leave them unacked: closing the channel returns them, as busbar's close does.
        if (!message || tally.handled === count) return;
        tally.count();
        if (!coalesce) consumer.ack(message);
        else {
          last = message;
          if (!scheduled) {
            scheduled = true;
            setImmediate(() => {
              scheduled = false;
              if (last) consumer.ack(last, true);
            });
          }
        }
        if (tally.handled === count) setImmediate(resolve);
      });
    });
    await consumer.close();
  };
  return {
    async publish(type, messages) {
      for (const m of messages) channel.publish(EXCHANGE, type, toBuffer(m.body), publishOptions(m));
      await channel.waitForConfirms();
    },
    createGroup: (type, group, { transport }) => createGroup(transport, type, group),
    consume: (type, group, count, tally, { prefetch }) => consume(type, group, count, tally, false, prefetch),
    consumeCoalescing: (type: string, group: string, count: number, tally: Tally) =>
      consume(type, group, count, tally, true),
    async close() {
      await channel.close().catch(() => {});
      await connection.close().catch(() => {});
    },
  } satisfies RawClient & Record<string, unknown>;
}

export const bench = transportBench({
  transport: 'rabbitmq',
  url: async () => URL,
  connectRaw,
  prefetch: PREFETCH,
  sizes: { batched: 2_000, singles: 500, consumed: 2_000, awaited: 1_000 },
  concurrentPublish: true,
  rawConsumeVariants: { 'raw acks coalesced too': (raw, ...round) => raw.consumeCoalescing(...round) },
});

export default async function cases() {
  return transportCases(bench);
}
