/**
 * redis vs raw node-redis on the same Redis (BUSBAR_TEST_REDIS_URL, default :6379), same fields (docs/wire/redis.md),
 * same durability (the XADD reply). The raw side publishes with pipelined XADDs awaited together, and consumes with
 * XREADGROUP COUNT <prefetch> BLOCK on a connection of its own (as the transport does), XACKs on the shared one.
 * Neither raw loop decodes anything: it takes each entry's fields as Buffers and only sends the ids back, while
 * busbar turns every entry into a complete message and a delivery with its own ack; that work is busbar's side.
 * - `transport consume+ack`: the raw loop sends one XACK per entry, pipelined; busbar sends the acks of one
 *   event-loop turn as one XACK, so `…, raw one XACK per read` also runs it beside the best a hand-written consumer
 *   does: one XACK per read.
 */
import { createClient, RESP_TYPES } from 'redis';
import { encodeFields } from '../src/transports/redis/wire.ts';
import type { Tally } from './lib/case.ts';
import { type RawClient, transportBench, transportCases } from './lib/transport-bench.ts';

const URL = process.env.BUSBAR_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFETCH = 256;
const BINARY = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };

type Acking = 'entry' | 'read' | 'awaited';

const streamOf = (type: string) => `busbar:{${type}}`;

async function connectRaw(url: string) {
  const client = createClient({ url, RESP: 2 });
  client.on('error', () => undefined);
  await client.connect();
  const consume = async (
    type: string,
    group: string,
    count: number,
    tally: Tally,
    prefetch: number,
    acking: Acking,
  ) => {
    const stream = streamOf(type);
    const reader = client.duplicate();
    reader.on('error', () => undefined);
    await reader.connect();
    const acks: Promise<unknown>[] = [];
    while (tally.handled < count) {
      const want = String(Math.min(prefetch, count - tally.handled));
      const reply = (await reader.sendCommand(
        ['XREADGROUP', 'GROUP', group, 'raw', 'COUNT', want, 'BLOCK', '1000', 'STREAMS', stream, '>'],
        BINARY,
      )) as [Buffer, [Buffer, Buffer[]][]][] | null;
      for (const [, entries] of reply ?? []) {
        tally.count(entries.length);
        if (acking === 'read') acks.push(client.sendCommand(['XACK', stream, group, ...entries.map(([id]) => id)]));
        for (const [id] of acking === 'read' ? [] : entries) {
          const ack = client.sendCommand(['XACK', stream, group, id]);
          if (acking === 'awaited') await ack;
          else acks.push(ack);
        }
      }
    }
    await Promise.all(acks);
    reader.destroy();
  };
  return {
    async publish(type, messages) {
      await Promise.all(messages.map((m) => client.sendCommand(['XADD', streamOf(type), '*', ...encodeFields(m)])));
    },
    async createGroup(type, group) {
      await client.sendCommand(['XGROUP', 'CREATE', streamOf(type), group, '0', 'MKSTREAM']);
    },
    consume: (type, group, count, tally, options) =>
      consume(type, group, count, tally, options.prefetch, options.awaitEach ? 'awaited' : 'entry'),
    consumePerRead: (type: string, group: string, count: number, tally: Tally) =>
      consume(type, group, count, tally, PREFETCH, 'read'),
    async close() {
      client.destroy();
    },
  } satisfies RawClient & Record<string, unknown>;
}

export const bench = transportBench({
  transport: 'redis',
  url: async () => URL,
  connectRaw,
  // 10,000 a round, as these consume cases always had: joining the group each round weighs less.
  sizes: { consumed: 10_000 },
  prefetch: PREFETCH,
  rawConsumeVariants: { 'raw one XACK per read': (raw, ...round) => raw.consumePerRead(...round) },
});

export default async function cases() {
  return transportCases(bench);
}
