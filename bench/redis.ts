/**
 * redis transport vs raw node-redis doing the same work on the same Redis (BUSBAR_TEST_REDIS_URL, default :6379),
 * same fields, same durability (the XADD reply):
 * - `publish 100B x100`: one awaited publish() of 100 messages at a time, vs 100 pipelined XADDs awaited together.
 * - `publish 100B x1`: one message per awaited publish(), vs one awaited XADD at a time.
 * - `consume+ack 100B, raw XACK per entry, no decoding`: one consumer (prefetch 256) acking every message (acks not
 *   awaited one by one), vs a raw loop on its own connection: XREADGROUP COUNT 256 BLOCK, then one XACK per entry,
 *   pipelined. busbar sends the acks of one event-loop turn as one XACK; `consume+ack 100B, raw one XACK per read,
 *   no decoding` therefore also runs it beside a raw loop that acks each whole read with one XACK, the best a
 *   hand-written consumer can do.
 *   Neither raw loop decodes anything: it gets each entry's fields as Buffers from node-redis and only sends their
 *   ids back, while busbar must turn every entry into a complete message (id, source, type, time, content type, key,
 *   headers, body view) and a delivery with its own ack. The names say so; that work is part of busbar's side.
 *   busbar's side also opens and closes its subscription every round: attaching the group, claiming what the last
 *   round's close released (what its prefetch read beyond the 10,000), releasing what this one read beyond them.
 */
import { randomUUID } from 'node:crypto';
import { createClient, RESP_TYPES } from 'redis';
import type { Transport, TransportMessage } from '../src/transport/contract.ts';
import createRedisTransport from '../src/transports/redis/index.ts';
import { encodeFields } from '../src/transports/redis/wire.ts';
import type { BenchCase } from './harness.ts';

const URL = process.env.BUSBAR_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const MESSAGES = 10_000;
const SINGLES = 2_000;
const BATCH = 100;
const PREFETCH = 256;
const BODY = new Uint8Array(100).fill(0x61);
/**
 * Rounds' worth of messages stored ahead for the consume cases: warm-up + the rounds bench/run.ts was given
 * (`--rounds`, default 5) + one spare. A round that found too few would wait forever.
 */
const RESERVOIR_ROUNDS = roundsRequested() + 2;

function roundsRequested(): number {
  const at = process.argv.findIndex((a) => a === '--rounds' || a.startsWith('--rounds='));
  const value =
    at < 0 ? undefined : process.argv[at]!.includes('=') ? process.argv[at]!.split('=')[1] : process.argv[at + 1];
  return Number(value) || 5;
}
const BINARY = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };

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

async function rawClient() {
  const client = createClient({ url: URL, RESP: 2 });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

type Raw = Awaited<ReturnType<typeof rawClient>>;

/** What a plain client would send for the same messages: the same fields, via docs/wire/redis.md. */
function rawXadd(raw: Raw, stream: string, message: TransportMessage): Promise<unknown> {
  return raw.sendCommand(['XADD', stream, '*', ...encodeFields(message)]);
}

export default async function cases(): Promise<BenchCase[]> {
  let transport: Transport;
  let raw: Raw;
  const type = `bench-${randomUUID()}`;
  const rawType = `bench-raw-${randomUUID()}`;
  const rawStream = `busbar:{${rawType}}`;

  const setup = async () => {
    transport = await createRedisTransport({ url: URL, endpoints: [], options: {} });
    raw = await rawClient();
  };
  const teardown = async () => {
    await transport.admin.deleteType(type);
    await transport.admin.deleteType(rawType);
    await transport.close();
    raw.destroy();
  };

  const publish: BenchCase = {
    name: `publish 100B x${BATCH}`,
    transport: 'redis',
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
      for (let done = 0; done < MESSAGES; done += BATCH) {
        await Promise.all(batchOf(rawType).map((m) => rawXadd(raw, rawStream, m)));
      }
      return undefined;
    },
  };

  const single: BenchCase = {
    name: 'publish 100B x1',
    transport: 'redis',
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
      for (let done = 0; done < SINGLES; done++) await rawXadd(raw, rawStream, batchOf(rawType, 1)[0]!);
      return undefined;
    },
  };

  /** `perRead`: the raw loop acks a whole read with one XACK instead of one XACK per entry. */
  const consumeCase = (perRead: boolean): BenchCase => {
    const group = `g-${randomUUID()}`;
    return {
      name: perRead
        ? 'consume+ack 100B, raw one XACK per read, no decoding'
        : 'consume+ack 100B, raw XACK per entry, no decoding',
      transport: 'redis',
      messages: MESSAGES,
      async setup() {
        await setup();
        await raw.sendCommand(['XGROUP', 'CREATE', rawStream, group, '0', 'MKSTREAM']);
        for (let i = 0; i < (MESSAGES * RESERVOIR_ROUNDS) / BATCH; i++) {
          await transport.publish(type, batchOf(type));
          await Promise.all(batchOf(rawType).map((m) => rawXadd(raw, rawStream, m)));
        }
      },
      teardown,
      async subject() {
        const subscription = transport.consume({
          types: [type],
          group,
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
        // Like the transport: a connection of its own for the blocking reads, acks on the shared one.
        const reader = raw.duplicate();
        reader.on('error', () => undefined);
        await reader.connect();
        const acks: Promise<unknown>[] = [];
        let received = 0;
        while (received < MESSAGES) {
          const want = Math.min(PREFETCH, MESSAGES - received);
          const reply = (await reader.sendCommand(
            ['XREADGROUP', 'GROUP', group, 'raw', 'COUNT', String(want), 'BLOCK', '1000', 'STREAMS', rawStream, '>'],
            BINARY,
          )) as [Buffer, [Buffer, Buffer[]][]][] | null;
          for (const [, entries] of reply ?? []) {
            received += entries.length;
            if (perRead) acks.push(raw.sendCommand(['XACK', rawStream, group, ...entries.map(([id]) => id)]));
            else for (const [id] of entries) acks.push(raw.sendCommand(['XACK', rawStream, group, id]));
          }
        }
        await Promise.all(acks);
        reader.destroy();
        return undefined;
      },
    };
  };

  return [publish, single, consumeCase(false), consumeCase(true)];
}
