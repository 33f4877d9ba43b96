/**
 * kafka vs the raw @platformatic/kafka client on the same broker (BUSBAR_TEST_KAFKA_URL, default
 * kafka://127.0.0.1:9092): same records (docs/wire/kafka.md headers and key), same durability (idempotent producer,
 * acks=all), types of 4 partitions, keys spread over 16 values. The raw consumer (autocommit off) reads each record's
 * headers as strings, as the CloudEvents attributes must be read, and commits each message's offset: one commit in
 * flight at a time with the offsets processed meanwhile folded into the next (what busbar does), or each commit
 * awaited before the next message where busbar's side awaits every ack. It fetches as many bytes per Fetch as busbar
 * does (`BENCH_KAFKA_RAW_FETCH=default` gives it its own 10 MiB).
 */
import { Consumer, compatibilityPartitioner, type Message, Producer } from '@platformatic/kafka';
import { DEFAULT_FETCH_MAX_BYTES } from '../src/transports/kafka/options.ts';
import { toRecord } from '../src/transports/kafka/wire.ts';
import type { Tally } from './lib/case.ts';
import { type RawClient, type RawConsumeOptions, transportBench, transportCases } from './lib/transport-bench.ts';

const URL = process.env.BUSBAR_TEST_KAFKA_URL ?? 'kafka://127.0.0.1:9092';
const RAW_FETCH_MAX_BYTES =
  process.env.BENCH_KAFKA_RAW_FETCH === 'default' ? 10 * 1024 * 1024 : DEFAULT_FETCH_MAX_BYTES;

type Record = Message<Buffer, Buffer, Buffer, Buffer>;

function readHeaders(message: Record): void {
  const headers: { [name: string]: string } = {};
  for (const [name, value] of message.headers) headers[name.toString()] = value.toString();
}

async function connectRaw(url: string) {
  const brokers = url.replace(/^kafka:\/\//, '').split(',');
  const producer = new Producer({
    clientId: 'bench-raw',
    bootstrapBrokers: brokers,
    idempotent: true,
    acks: -1,
    partitioner: compatibilityPartitioner,
  });
  const consume = async (type: string, group: string, count: number, tally: Tally, options: RawConsumeOptions) => {
    const consumer = new Consumer({
      groupId: group,
      clientId: 'bench-raw',
      bootstrapBrokers: brokers,
      maxBytes: RAW_FETCH_MAX_BYTES,
    });
    const stream = await consumer.consume({
      topics: [type],
      mode: 'committed',
      fallbackMode: 'earliest',
      autocommit: false,
    });
    const offsetOf = (m: Record) => ({
      topic: m.topic,
      partition: m.partition,
      offset: m.offset + 1n,
      leaderEpoch: -1,
    });
    const latest = new Map<string, Record>();
    let inflight: Promise<void> | undefined;
    const flush = (): void => {
      if (inflight || latest.size === 0) return;
      const offsets = [...latest.values()].map(offsetOf);
      latest.clear();
      inflight = consumer.commit({ offsets }).finally(() => {
        inflight = undefined;
        flush();
      });
    };
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (message: Record) => {
        // Records the client fetched beyond the round stay uncommitted: the next round reads them again.
        if (tally.handled === count) return;
        readHeaders(message);
        tally.count();
        if (options.awaitEach) {
          stream.pause();
          consumer.commit({ offsets: [offsetOf(message)] }).then(() => {
            if (tally.handled === count) resolve();
            else stream.resume();
          }, reject);
          return;
        }
        latest.set(`${message.topic}:${message.partition}`, message);
        flush();
        if (tally.handled === count) resolve();
      });
    });
    while (inflight || latest.size > 0) {
      flush();
      await inflight;
    }
    await consumer.close(true);
  };
  return {
    async publish(type, messages) {
      await producer.send({ messages: messages.map((m) => toRecord(type, m)) });
    },
    consume,
    close: () => producer.close(),
  } satisfies RawClient;
}

export const bench = transportBench({
  transport: 'kafka',
  url: async () => URL,
  connectRaw,
  // 10,000 a round, as these consume cases always had: joining the group each round weighs less.
  sizes: { consumed: 10_000 },
  prefetch: 256,
  handlePrefetch: 256,
  partitions: 4,
  keys: 16,
});

export default async function cases() {
  return transportCases(bench);
}
