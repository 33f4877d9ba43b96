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
import type { TransportMessage } from '../src/transport/contract.ts';
import { EXCHANGE, groupQueue, publishOptions, toBuffer } from '../src/transports/rabbitmq/wire.ts';
import { messagesOf, type Tally } from './lib/case.ts';
import {
  BATCH,
  consumeCase,
  createGroup,
  envCase,
  type RawClient,
  type TransportBench,
  transportCases,
} from './lib/transport-bench.ts';

const URL = process.env.BUSBAR_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const PREFETCH = 100;
const SIZES = { batched: 2_000, singles: 500, consumed: 2_000, awaited: 1_000 };
const CONCURRENT = 8;
/** Messages per round of the concurrent case: a whole number of batches for each publisher. */
const CONCURRENT_MESSAGES = CONCURRENT * BATCH * 3;

async function connectRaw(url: string) {
  const connection = await amqp.connect(url);
  const channel: ConfirmChannel = await connection.createConfirmChannel();
  const publish = async (type: string, messages: TransportMessage[]) => {
    for (const message of messages) channel.publish(EXCHANGE, type, toBuffer(message.body), publishOptions(message));
    await channel.waitForConfirms();
  };
  const consume = async (
    type: string,
    group: string,
    count: number,
    tally: Tally,
    prefetch: number,
    coalesce: boolean,
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
    publish,
    createGroup: (type, group, { transport }) => createGroup(transport, type, group),
    consume: (type, group, count, tally, options) => consume(type, group, count, tally, options.prefetch, false),
    consumeCoalescing: (type: string, group: string, count: number, tally: Tally) =>
      consume(type, group, count, tally, PREFETCH, true),
    publishConcurrently: (type: string, count: number) =>
      Promise.all(
        Array.from({ length: CONCURRENT }, async () => {
          for (let sent = 0; sent < count / CONCURRENT; sent += BATCH) await publish(type, messagesOf(type, BATCH));
        }),
      ),
    async close() {
      await channel.close().catch(() => {});
      await connection.close().catch(() => {});
    },
  } satisfies RawClient & Record<string, unknown>;
}

const bench: TransportBench<Awaited<ReturnType<typeof connectRaw>>> = {
  transport: 'rabbitmq',
  url: async () => URL,
  connectRaw,
  prefetch: PREFETCH,
  sizes: SIZES,
};

export default async function cases() {
  return [
    ...transportCases(bench),
    envCase(bench, {
      name: `transport.publish 100B x${BATCH}, ${CONCURRENT} concurrent`,
      messages: CONCURRENT_MESSAGES,
      async subject(env, tally) {
        await Promise.all(
          Array.from({ length: CONCURRENT }, async () => {
            for (let sent = 0; sent < CONCURRENT_MESSAGES / CONCURRENT; sent += BATCH) {
              await env.transport.publish(env.type, messagesOf(env.type, BATCH));
              tally.count(BATCH);
            }
          }),
        );
      },
      async baseline(env, tally) {
        await env.raw.publishConcurrently(env.rawType, CONCURRENT_MESSAGES);
        tally.count(CONCURRENT_MESSAGES);
      },
    }),
    consumeCase(
      bench,
      `transport consume+ack 100B, prefetch ${PREFETCH}, raw acks coalesced too`,
      SIZES.consumed,
      (env, tally) => env.raw.consumeCoalescing(env.rawType, env.group, SIZES.consumed, tally),
    ),
  ];
}
