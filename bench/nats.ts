/**
 * nats transport vs the raw @nats-io clients doing the same work on the same server (BUSBAR_TEST_NATS_URL, default
 * nats://127.0.0.1:4222): same subjects, same headers (docs/wire/nats.md), same durability.
 * - `publish 100B x100`: one awaited publish() of 100 messages at a time, vs 100 concurrent js.publish() awaited
 *   together — a PubAck for every message on both sides.
 * - `publish 100B x1`: one message per awaited publish(), vs one awaited js.publish() at a time.
 * - `consume+ack 100B`: one consumer (prefetch 256) confirming every ack (AckAck, not awaited one by one), vs the
 *   raw client's consume({ max_messages: 256 }) on a consumer with the same config, ackAck() for every message.
 * - `consume+ack 100B, raw reads the headers`: the same, but the raw loop also reads each message's headers, as
 *   anything that needs the CloudEvents attributes must (the client parses headers lazily, on first access).
 */
import { randomUUID } from 'node:crypto';
import { AckPolicy, DeliverPolicy, type JsMsg, jetstream, jetstreamManager, ReplayPolicy } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Transport, TransportMessage } from '../src/transport/contract.ts';
import { toNatsHeaders } from '../src/transports/nats/headers.ts';
import createNatsTransport from '../src/transports/nats/index.ts';
import { durableName, streamName, subjectOf } from '../src/transports/nats/names.ts';
import type { BenchCase } from './harness.ts';

const URL = process.env.BUSBAR_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
const SERVERS = URL.replace(/^nats:\/\//, '').split(',');
const MESSAGES = 10_000;
const SINGLES = 2_000;
const BATCH = 100;
const PREFETCH = 256;
const BODY = new Uint8Array(100).fill(0x61);
/** Rounds' worth of messages stored ahead for the consume case: warm-up + the rounds asked for + spare. */
const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1]);
const RESERVOIR_ROUNDS = (process.argv.includes('--rounds') && rounds > 0 ? rounds : 5) + 2;

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

/** A message's headers as strings: what reading the CloudEvents attributes costs a raw client. */
function headersOf(m: JsMsg): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, values] of m.headers ?? []) out[name] = values[values.length - 1] ?? '';
  return out;
}

export default async function cases(): Promise<BenchCase[]> {
  let transport: Transport;
  let nc: NatsConnection;
  const type = `bench-${randomUUID()}`;
  const rawType = `bench-raw-${randomUUID()}`;
  const group = `g-${randomUUID()}`;

  /** What a plain client sends for the same message, following docs/wire/nats.md. */
  const rawPublish = (message: TransportMessage) =>
    jetstream(nc).publish(subjectOf(rawType), message.body, { headers: toNatsHeaders(message) });

  const setup = async () => {
    transport = await createNatsTransport({ url: URL, endpoints: SERVERS, options: {} });
    // The raw client gets busbar's connection settings too, so the ratio compares code, not configuration.
    nc = await connect({ servers: SERVERS, noAsyncTraces: true });
    await transport.admin.ensureType(type);
    await transport.admin.ensureType(rawType);
  };
  const teardown = async () => {
    await transport.admin.deleteType(type);
    await transport.admin.deleteType(rawType);
    await transport.close();
    await nc.close();
  };

  const publish: BenchCase = {
    name: `publish 100B x${BATCH}`,
    transport: 'nats',
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
      for (let done = 0; done < MESSAGES; done += BATCH) await Promise.all(batchOf(rawType).map(rawPublish));
      return undefined;
    },
  };

  const single: BenchCase = {
    name: 'publish 100B x1',
    transport: 'nats',
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
      for (let done = 0; done < SINGLES; done++) await rawPublish(batchOf(rawType, 1)[0]!);
      return undefined;
    },
  };

  const consumeCase = (readHeaders: boolean): BenchCase => ({
    name: readHeaders ? 'consume+ack 100B, raw reads the headers' : 'consume+ack 100B',
    transport: 'nats',
    messages: MESSAGES,
    async setup() {
      await setup();
      const jsm = await jetstreamManager(nc);
      await jsm.consumers.add(streamName(rawType), {
        durable_name: durableName(group),
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        replay_policy: ReplayPolicy.Instant,
        ack_wait: 60_000_000_000,
        max_deliver: -1,
        max_ack_pending: -1,
        filter_subject: subjectOf(rawType),
      });
      for (let i = 0; i < (MESSAGES * RESERVOIR_ROUNDS) / BATCH; i++) {
        await transport.publish(type, batchOf(type));
        await Promise.all(batchOf(rawType).map(rawPublish));
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
      const consumer = await jetstream(nc).consumers.get(streamName(rawType), durableName(group));
      const messages = await consumer.consume({ max_messages: PREFETCH });
      const acks: Promise<boolean>[] = [];
      for await (const m of messages) {
        // The like-for-like variant reads the CloudEvents headers, as busbar must; the client parses them lazily.
        if (readHeaders) headersOf(m);
        acks.push(m.ackAck());
        if (acks.length === MESSAGES) break;
      }
      await Promise.all(acks);
      await messages.close();
      return undefined;
    },
  });

  return [publish, single, consumeCase(false), consumeCase(true)];
}
