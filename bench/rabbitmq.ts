/**
 * rabbitmq transport vs raw amqplib doing the same work on the same RabbitMQ (BUSBAR_TEST_AMQP_URL, default
 * amqp://guest:guest@127.0.0.1:5672), same topology (exchange `busbar`, the type's stream log and one quorum group
 * queue bound to it), same properties and headers (docs/wire/rabbitmq.md), same durability (persistent, confirms):
 * - `publish 100B x100`: one awaited publish() of 100 at a time, vs 100 publishes on a confirm channel then
 *   waitForConfirms().
 * - `publish 100B x100, 8 concurrent`: 8 publishers at once on one transport, vs 8 such loops on one confirm channel.
 * - `consume+ack 100B`: one consumer, prefetch 100, acking every message, vs a raw consumer on the same queue with
 *   the same prefetch acking every message with its own basic.ack (the usual raw loop). busbar coalesces the acks of
 *   one event-loop turn into one `multiple` ack, so it sends far fewer frames:
 * - `consume+ack 100B, raw acks coalesced too`: the same, vs a raw loop that coalesces its acks the same way.
 */
import { randomUUID } from 'node:crypto';
import amqp, { type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import type { Transport, TransportMessage } from '../src/transport/contract.ts';
import createRabbitTransport from '../src/transports/rabbitmq/index.ts';
import { EXCHANGE, groupQueue, publishOptions, toBuffer } from '../src/transports/rabbitmq/wire.ts';
import type { BenchCase } from './harness.ts';

const URL = process.env.BUSBAR_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const MESSAGES = 5_000;
const BATCH = 100;
const PREFETCH = 100;
const BODY = new Uint8Array(100).fill(0x61);
const CONSUMED = 4_000;
/** Rounds' worth of messages stored ahead for a consume case, per side (warm-up + up to --rounds 10 + spare). */
const RESERVOIR_ROUNDS = 12;

function batchOf(type: string, size = BATCH): TransportMessage[] {
  const time = new Date().toISOString();
  return Array.from({ length: size }, () => ({
    id: randomUUID(),
    type,
    source: 'bench',
    time,
    contentType: 'application/octet-stream',
    headers: {},
    body: BODY,
  }));
}

/** The raw side: what a plain client following docs/wire/rabbitmq.md sends, awaited per batch of confirms. */
async function rawPublish(channel: ConfirmChannel, type: string, count: number): Promise<void> {
  for (let done = 0; done < count; done += BATCH) {
    for (const message of batchOf(type))
      channel.publish(EXCHANGE, type, toBuffer(message.body), publishOptions(message));
    await channel.waitForConfirms();
  }
}

export default async function cases(): Promise<BenchCase[]> {
  let transport: Transport;
  let raw: ChannelModel;
  let channel: ConfirmChannel;
  const type = `bench-${randomUUID().slice(0, 8)}`;
  const group = `g-${randomUUID().slice(0, 8)}`;

  const setup = async () => {
    transport = await createRabbitTransport({ url: URL, endpoints: [new globalThis.URL(URL).host], options: {} });
    // The group queue exists before anything is published, so both sides store every message twice alike.
    const subscription = transport.consume({
      types: [type],
      group,
      consumerId: 'bench',
      offset: 'latest',
      prefetch: 1,
      ackTimeoutMs: 60_000,
    });
    await subscription.ready;
    await subscription.close();
    raw = await amqp.connect(URL);
    channel = await raw.createConfirmChannel();
  };
  const teardown = async () => {
    await channel.close().catch(() => {});
    await raw.close().catch(() => {});
    await transport.admin.deleteType(type);
    await transport.close();
  };

  const publish: BenchCase = {
    name: `publish 100B x${BATCH}`,
    transport: 'rabbitmq',
    messages: MESSAGES,
    setup,
    teardown,
    async subject() {
      const latencies: number[] = [];
      for (let done = 0; done < MESSAGES; done += BATCH) {
        const batch = batchOf(type);
        const start = performance.now();
        await transport.publish(type, batch);
        latencies.push(performance.now() - start);
      }
      return latencies;
    },
    async baseline() {
      await rawPublish(channel, type, MESSAGES);
      return undefined;
    },
  };

  const concurrent: BenchCase = {
    name: `publish 100B x${BATCH}, 8 concurrent`,
    transport: 'rabbitmq',
    messages: MESSAGES,
    setup,
    teardown,
    async subject() {
      const publisher = async () => {
        for (let done = 0; done < MESSAGES / 8; done += BATCH) await transport.publish(type, batchOf(type));
      };
      await Promise.all(Array.from({ length: 8 }, publisher));
      return undefined;
    },
    async baseline() {
      await Promise.all(Array.from({ length: 8 }, () => rawPublish(channel, type, MESSAGES / 8)));
      return undefined;
    },
  };

  const consume: BenchCase = {
    name: `consume+ack 100B, prefetch ${PREFETCH}`,
    transport: 'rabbitmq',
    messages: CONSUMED,
    async setup() {
      await setup();
      await rawPublish(channel, type, CONSUMED * RESERVOIR_ROUNDS * 2);
    },
    teardown,
    async subject() {
      const subscription = transport.consume({
        types: [type],
        group,
        consumerId: 'bench',
        offset: 'latest',
        prefetch: PREFETCH,
        ackTimeoutMs: 60_000,
      });
      let count = 0;
      for await (const delivery of subscription) {
        void delivery.ack();
        if (++count === CONSUMED) break;
      }
      await subscription.close();
      return undefined;
    },
    async baseline() {
      const consumer = await raw.createChannel();
      await consumer.prefetch(PREFETCH);
      let count = 0;
      await new Promise<void>((resolve) => {
        void consumer.consume(groupQueue(type, group), (message) => {
          // Past the count, leave them unacked: closing returns them, as busbar's close does.
          if (!message || count === CONSUMED) return;
          consumer.ack(message);
          if (++count === CONSUMED) resolve();
        });
      });
      await consumer.close();
      return undefined;
    },
  };

  const consumeCoalesced: BenchCase = {
    ...consume,
    name: `consume+ack 100B, prefetch ${PREFETCH}, raw acks coalesced too`,
    async baseline() {
      const consumer = await raw.createChannel();
      await consumer.prefetch(PREFETCH);
      let count = 0;
      let last: ConsumeMessage | undefined;
      let scheduled = false;
      await new Promise<void>((resolve) => {
        void consumer.consume(groupQueue(type, group), (message) => {
          if (!message || count === CONSUMED) return;
          last = message;
          if (!scheduled) {
            scheduled = true;
            setImmediate(() => {
              scheduled = false;
              if (last) consumer.ack(last, true);
            });
          }
          if (++count === CONSUMED) setImmediate(resolve);
        });
      });
      await consumer.close();
      return undefined;
    },
  };

  return [publish, concurrent, consume, consumeCoalesced];
}
