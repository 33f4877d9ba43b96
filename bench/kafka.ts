/**
 * kafka transport vs the raw @platformatic/kafka client doing the same work on the same broker
 * (BUSBAR_TEST_KAFKA_URL, default kafka://127.0.0.1:9092): same records (docs/wire/kafka.md headers and key), same
 * durability (idempotent producer, acks=all), same batch sizes.
 * - `publish 100B x100`: one awaited publish() of 100 messages at a time, vs one awaited producer.send() of the same
 *   100 records.
 * - `publish 100B x1`: one message per awaited publish(), vs one awaited send() of one record.
 * - `consume+ack 100B`: a new group reads 10,000 stored messages from the earliest offset and acks each one (acks
 *   awaited together at the end), vs a raw consumer stream (autocommit off, reading each record's headers as
 *   strings, as the CloudEvents attributes must be) that commits each message's offset, one
 *   commit in flight at a time with the offsets processed meanwhile folded into the next (what busbar does), and
 *   fetching as many bytes per Fetch as busbar does (`BENCH_KAFKA_RAW_FETCH=default` gives it its own 10 MiB).
 */
import { randomUUID } from 'node:crypto';
import { Consumer, compatibilityPartitioner, type Message, Producer } from '@platformatic/kafka';
import type { Transport, TransportMessage } from '../src/transport/contract.ts';
import createKafkaTransport from '../src/transports/kafka/index.ts';
import { DEFAULT_FETCH_MAX_BYTES } from '../src/transports/kafka/options.ts';
import { toRecord } from '../src/transports/kafka/wire.ts';
import type { BenchCase } from './harness.ts';

const URL = process.env.BUSBAR_TEST_KAFKA_URL ?? 'kafka://127.0.0.1:9092';
const BROKERS = URL.replace(/^kafka:\/\//, '').split(',');
const MESSAGES = Number(process.env.BENCH_KAFKA_MESSAGES ?? 10_000);
const SINGLES = 2_000;
const BATCH = 100;
const PREFETCH = 256;
const BODY = new Uint8Array(100).fill(0x61);
/** BENCH_KAFKA_RAW_FETCH=default measures the raw client with its own 10 MiB default instead. */
const RAW_FETCH_MAX_BYTES =
  process.env.BENCH_KAFKA_RAW_FETCH === 'default' ? 10 * 1024 * 1024 : DEFAULT_FETCH_MAX_BYTES;

function batchOf(type: string, size = BATCH): TransportMessage[] {
  const time = new Date().toISOString();
  return Array.from({ length: size }, (_, i) => ({
    id: randomUUID(),
    type,
    source: 'bench',
    time,
    contentType: 'application/octet-stream',
    key: `k${i % 16}`,
    headers: {},
    body: BODY,
  }));
}

function headersOf(message: Message<Buffer, Buffer, Buffer, Buffer>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of message.headers) headers[name.toString()] = value.toString();
  return headers;
}

export default async function cases(): Promise<BenchCase[]> {
  let transport: Transport;
  let producer: Producer<Buffer, Buffer, Buffer, Buffer>;
  const type = `bench-${randomUUID()}`;
  const rawType = `bench-raw-${randomUUID()}`;

  /** What a plain client sends for the same messages, following docs/wire/kafka.md. */
  const rawSend = (messages: TransportMessage[]) =>
    producer.send({ messages: messages.map((m) => toRecord(rawType, m)) });

  const setup = async () => {
    transport = await createKafkaTransport({ url: URL, endpoints: BROKERS, options: {} });
    producer = new Producer({
      clientId: 'bench-raw',
      bootstrapBrokers: BROKERS,
      idempotent: true,
      acks: -1,
      partitioner: compatibilityPartitioner,
    });
    await transport.admin.ensureType(type, { partitions: 4 });
    await transport.admin.ensureType(rawType, { partitions: 4 });
  };
  const teardown = async () => {
    await transport.admin.deleteType(type);
    await transport.admin.deleteType(rawType);
    await transport.close();
    await producer.close();
  };

  const publish: BenchCase = {
    name: `publish 100B x${BATCH}`,
    transport: 'kafka',
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
      for (let done = 0; done < MESSAGES; done += BATCH) await rawSend(batchOf(rawType));
      return undefined;
    },
  };

  const single: BenchCase = {
    name: 'publish 100B x1',
    transport: 'kafka',
    messages: SINGLES,
    setup,
    teardown,
    async subject() {
      const latencies: number[] = [];
      for (let done = 0; done < SINGLES; done++) {
        const batch = batchOf(type, 1);
        const start = performance.now();
        await transport.publish(type, batch);
        latencies.push(performance.now() - start);
      }
      return latencies;
    },
    async baseline() {
      for (let done = 0; done < SINGLES; done++) await rawSend(batchOf(rawType, 1));
      return undefined;
    },
  };

  const consume: BenchCase = {
    name: 'consume+ack 100B',
    transport: 'kafka',
    messages: MESSAGES,
    async setup() {
      await setup();
      for (let done = 0; done < MESSAGES; done += BATCH) {
        await transport.publish(type, batchOf(type));
        await rawSend(batchOf(rawType));
      }
    },
    teardown,
    async subject() {
      const subscription = transport.consume({
        types: [type],
        group: `g-${randomUUID()}`,
        consumerId: 'bench',
        offset: 'earliest',
        prefetch: PREFETCH,
        ackTimeoutMs: 60_000,
      });
      const acks: Promise<void>[] = [];
      for await (const delivery of subscription) {
        acks.push(delivery.ack());
        if (acks.length === MESSAGES) break;
      }
      await Promise.all(acks);
      await subscription.close();
      return undefined;
    },
    async baseline() {
      // Same fetch size as busbar's (DEFAULT_FETCH_MAX_BYTES), so both sides fetch alike.
      const consumer = new Consumer({
        groupId: `g-${randomUUID()}`,
        clientId: 'bench-raw',
        bootstrapBrokers: BROKERS,
        maxBytes: RAW_FETCH_MAX_BYTES,
      });
      const stream = await consumer.consume({
        topics: [rawType],
        mode: 'committed',
        fallbackMode: 'earliest',
        autocommit: false,
      });
      // What a careful raw user does: commit each processed message's offset, one commit in flight at a time,
      // folding the offsets processed meanwhile into the next one.
      const latest = new Map<string, Message<Buffer, Buffer, Buffer, Buffer>>();
      let inflight: Promise<void> | undefined;
      const flush = (): void => {
        if (inflight || latest.size === 0) return;
        const offsets = [...latest.values()].map((m) => ({
          topic: m.topic,
          partition: m.partition,
          offset: m.offset + 1n,
          leaderEpoch: -1,
        }));
        latest.clear();
        inflight = consumer.commit({ offsets }).finally(() => {
          inflight = undefined;
          flush();
        });
      };
      let count = 0;
      await new Promise<void>((resolve) => {
        stream.on('data', (message: Message<Buffer, Buffer, Buffer, Buffer>) => {
          // Reading the CloudEvents attributes is part of the work on both sides.
          headersOf(message);
          latest.set(`${message.topic}:${message.partition}`, message);
          flush();
          if (++count === MESSAGES) resolve();
        });
      });
      while (inflight || latest.size > 0) {
        flush();
        await inflight;
      }
      await consumer.close(true);
      return undefined;
    },
  };

  return [publish, single, consume];
}
