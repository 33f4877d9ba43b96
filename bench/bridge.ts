/**
 * `npm run bench -- bridge`: messages per second through a bridge (src/bridge/), beside the slower side's own
 * consume rate, for each pair of brokers that answers here (shared brokers, fresh types and groups).
 *
 * - busbar's round: a bridge starts on a type that holds `MESSAGES` 100-byte messages and the round ends when the
 *   target confirmed the last of them (stats().forwarded); the bridge consumes at the source, publishes at the
 *   target, and acks at the source after each confirm.
 * - the baseline round: a busbar consumer in a fresh group reads the same number of messages from a type that holds
 *   them and acks each (prefetch as the bridge's), on the side whose consume is slower; setup measures one consume
 *   round at each side to find it. Both rounds include attaching a new consumer to its group (Kafka: a group join).
 * A bridge can go no faster than its source is read, and it also publishes everything again; a ratio near 1 says
 * the bridge adds little beyond the reading itself.
 */
import { Bridge } from '../src/bridge/bridge.ts';
import { MessageBus } from '../src/index.ts';
import { BROKERS, tcpReachable } from '../test/helpers/brokers.ts';
import type { BenchCase } from './harness.ts';
import { BODY, Cleanup, defineCase, freshName, Tally } from './lib/case.ts';

const MESSAGES = 10_000;
const PREFETCH = 1000;
const BATCH = 500;

interface Side {
  readonly name: string;
  readonly url: string;
}

const SIDES: Record<string, Side> = {
  kafka: { name: 'kafka', url: BROKERS.kafka },
  rabbitmq: { name: 'rabbitmq', url: BROKERS.rabbitmq },
  redis: { name: 'redis', url: BROKERS.redis },
  nats: { name: 'nats', url: BROKERS.nats },
};

const PAIRS: Array<[string, string]> = [
  ['kafka', 'rabbitmq'],
  ['rabbitmq', 'kafka'],
  ['redis', 'nats'],
];

async function reachable(side: Side): Promise<boolean> {
  const authority = side.url.replace(/^[a-z0-9+.-]+:\/\//i, '').split(/[/?,]/)[0]!;
  const host = authority.slice(authority.lastIndexOf('@') + 1);
  const [name, port] = host.split(':');
  try {
    await tcpReachable(name || '127.0.0.1', Number(port), 1000);
    return true;
  } catch {
    return false;
  }
}

/** Fills `type` with `count` 100-byte messages, in batches the brokers take well. */
async function fill(bus: MessageBus, type: string, count: number): Promise<void> {
  for (let sent = 0; sent < count; sent += BATCH) {
    await bus.sendBatch(
      type,
      Array.from({ length: Math.min(BATCH, count - sent) }, () => BODY),
    );
  }
}

/** Reads `count` messages of `type` in a fresh group, acking each, as a reader of that side would (every round
 * reads the same messages again, in a group of its own, so they are counted, not checked by id). */
async function consume(bus: MessageBus, type: string, count: number, tally: Tally): Promise<void> {
  const consumer = bus.consumer({ consumerGroup: freshName('g'), messageTypes: [type], prefetch: PREFETCH });
  try {
    while (tally.handled < count) {
      const m = await consumer.receive({ timeout: 30_000 });
      if (!m) throw new Error(`no message of ${type} for 30 s after ${tally.handled}`);
      tally.count();
      void m.ack();
    }
    await consumer.ack();
  } finally {
    await consumer.close();
  }
}

function pairCase(from: Side, to: Side): BenchCase {
  const cleanup = new Cleanup();
  let source: MessageBus;
  let target: MessageBus;
  const roundTypes: string[] = [];
  let sourceReservoir = '';
  let targetReservoir = '';
  let slower: { bus: MessageBus; type: string; name: string } | undefined;
  return defineCase({
    name: `bridge ${from.name} -> ${to.name}, 100B x${MESSAGES}`,
    transport: `${from.name}->${to.name}`,
    messages: MESSAGES,
    async setup({ rounds }) {
      source = await MessageBus.connect(from.url);
      cleanup.add(() => source.close());
      target = await MessageBus.connect(to.url);
      cleanup.add(() => target.close());
      const types: string[] = [];
      for (let i = 0; i <= rounds; i++) types.push(freshName('bridge'));
      sourceReservoir = freshName('src');
      targetReservoir = freshName('dst');
      for (const type of [...types, sourceReservoir]) {
        await fill(source, type, MESSAGES);
        cleanup.add(() => source.admin().deregisterMessageType(type));
      }
      await fill(target, targetReservoir, MESSAGES);
      cleanup.add(() => target.admin().deregisterMessageType(targetReservoir));
      for (const type of types)
        cleanup.add(() =>
          target
            .admin()
            .deregisterMessageType(type)
            .catch(() => {}),
        );
      roundTypes.push(...types);
      // One consume round at each side finds the slower one, the baseline of every round.
      const probe = async (bus: MessageBus, type: string) => {
        const start = performance.now();
        await consume(bus, type, MESSAGES, new Tally(0, new Map()));
        return performance.now() - start;
      };
      const sourceMs = await probe(source, sourceReservoir);
      const targetMs = await probe(target, targetReservoir);
      slower =
        sourceMs >= targetMs
          ? { bus: source, type: sourceReservoir, name: from.name }
          : { bus: target, type: targetReservoir, name: to.name };
      process.stderr.write(
        `  ${from.name}->${to.name}: consume ${Math.round(MESSAGES / (sourceMs / 1000))} msg/s at ${from.name}, ` +
          `${Math.round(MESSAGES / (targetMs / 1000))} msg/s at ${to.name}: baseline is ${slower.name}'s\n`,
      );
    },
    async teardown() {
      await cleanup.run();
    },
    async subject(tally) {
      const type = roundTypes.shift();
      if (!type) throw new Error('more bridge rounds than prepared types');
      const bridge = await Bridge.start({
        from: source,
        to: target,
        types: type,
        group: freshName('bridge-g'),
        prefetch: PREFETCH,
        maxBatch: BATCH,
        lagIntervalMs: 0,
      });
      cleanup.add(() => bridge.close());
      const failed = new Promise<never>((_, reject) => bridge.once('warning', reject));
      failed.catch(() => {});
      const deadline = Date.now() + 120_000;
      while (bridge.stats().forwarded < MESSAGES) {
        if (Date.now() > deadline) throw new Error(`bridge stalled: ${JSON.stringify(bridge.stats())}`);
        await Promise.race([new Promise((resolve) => setTimeout(resolve, 2)), failed]);
      }
      tally.count(bridge.stats().forwarded);
    },
    async baseline(tally) {
      await consume(slower!.bus, slower!.type, MESSAGES, tally);
    },
  });
}

export default async function cases(): Promise<BenchCase[]> {
  const out: BenchCase[] = [];
  for (const [a, b] of PAIRS) {
    const from = SIDES[a]!;
    const to = SIDES[b]!;
    if (!(await reachable(from)) || !(await reachable(to))) {
      process.stderr.write(`  bridge ${a} -> ${b}: skipped, a broker does not answer\n`);
      continue;
    }
    out.push(pairCase(from, to));
  }
  return out;
}
