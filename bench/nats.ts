/**
 * nats vs the raw @nats-io clients on the same server (BUSBAR_TEST_NATS_URL, default nats://127.0.0.1:4222), same
 * subjects and headers (docs/wire/nats.md), same durability: a PubAck for every message (the raw side publishes a
 * batch as concurrent js.publish() calls awaited together), an AckAck for every ack. The raw consumer is a durable
 * with the same config busbar's group gets, read with consume({ max_messages: <prefetch> }).
 * - `transport consume+ack`: the raw loop never touches the headers (the client parses them lazily, on first
 *   access); `…, raw reads the headers` also reads them, as anything that needs the CloudEvents attributes must.
 */
import { AckPolicy, DeliverPolicy, type JsMsg, jetstream, jetstreamManager, ReplayPolicy } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { toNatsHeaders } from '../src/transports/nats/headers.ts';
import { durableName, streamName, subjectOf } from '../src/transports/nats/names.ts';
import type { Tally } from './lib/case.ts';
import { type RawClient, transportBench, transportCases } from './lib/transport-bench.ts';

const URL = process.env.BUSBAR_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
const PREFETCH = 256;

/** A message's headers as strings: what reading the CloudEvents attributes costs a raw client. */
function headersOf(m: JsMsg): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, values] of m.headers ?? []) out[name] = values[values.length - 1] ?? '';
  return out;
}

async function connectRaw(url: string) {
  // busbar's connection settings, so the ratio compares code, not configuration.
  const nc = await connect({ servers: url.replace(/^nats:\/\//, '').split(','), noAsyncTraces: true });
  const js = jetstream(nc);
  const consume = async (
    type: string,
    group: string,
    count: number,
    tally: Tally,
    options: { prefetch: number; awaitEach: boolean; readHeaders: boolean },
  ) => {
    const consumer = await js.consumers.get(streamName(type), durableName(group));
    const messages = await consumer.consume({ max_messages: options.prefetch });
    const acks: Promise<boolean>[] = [];
    for await (const m of messages) {
      if (options.readHeaders) headersOf(m);
      tally.count();
      if (options.awaitEach) await m.ackAck();
      else acks.push(m.ackAck());
      if (tally.handled === count) break;
    }
    await Promise.all(acks);
    await messages.close();
  };
  return {
    async publish(type, messages) {
      await Promise.all(messages.map((m) => js.publish(subjectOf(type), m.body, { headers: toNatsHeaders(m) })));
    },
    async createGroup(type, group) {
      const jsm = await jetstreamManager(nc);
      await jsm.consumers.add(streamName(type), {
        durable_name: durableName(group),
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        replay_policy: ReplayPolicy.Instant,
        ack_wait: 600_000_000_000,
        max_deliver: -1,
        max_ack_pending: -1,
        filter_subject: subjectOf(type),
      });
    },
    consume: (type, group, count, tally, options) =>
      consume(type, group, count, tally, { ...options, readHeaders: false }),
    consumeReadingHeaders: (type: string, group: string, count: number, tally: Tally) =>
      consume(type, group, count, tally, { prefetch: PREFETCH, awaitEach: false, readHeaders: true }),
    close: () => nc.close(),
  } satisfies RawClient & Record<string, unknown>;
}

export const bench = transportBench({
  transport: 'nats',
  url: async () => URL,
  connectRaw,
  // 10,000 a round, as these consume cases always had: joining the group each round weighs less.
  sizes: { consumed: 10_000 },
  prefetch: PREFETCH,
  rawConsumeVariants: { 'raw reads the headers': (raw, ...round) => raw.consumeReadingHeaders(...round) },
});

export default async function cases() {
  return transportCases(bench);
}
