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
 *
 * A live source (ZeroMQ: it holds nothing, so no type can be filled before a round) is fed while the round runs
 * instead: the bridge, or the baseline's consumer, attaches (its readiness probe came back) and the same process then
 * publishes the round's messages on the source's own PUB socket, so both rounds include that publishing.
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
  /** Holds nothing while no one reads (ZeroMQ): fed during each round instead of filled before it. */
  readonly live?: boolean;
}

const ZEROMQ_PORT = 43_000 + (process.pid % 2000);

const SIDES: Record<string, Side> = {
  kafka: { name: 'kafka', url: BROKERS.kafka },
  rabbitmq: { name: 'rabbitmq', url: BROKERS.rabbitmq },
  redis: { name: 'redis', url: BROKERS.redis },
  nats: { name: 'nats', url: BROKERS.nats },
  // Subscribes to its own bound PUB socket (a loopback bus: consumers' ready waits for their probe).
  zeromq: {
    name: 'zeromq',
    url: `zeromq://127.0.0.1:${ZEROMQ_PORT}?bind=tcp://127.0.0.1:${ZEROMQ_PORT}`,
    live: true,
  },
};

const PAIRS: Array<[string, string]> = [
  ['kafka', 'rabbitmq'],
  ['rabbitmq', 'kafka'],
  ['redis', 'nats'],
  ['zeromq', 'redis'],
];

async function reachable(side: Side): Promise<boolean> {
  if (side.live) return true; // no broker: the bench process is the publisher
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
async function consume(bus: MessageBus, type: string, count: number, tally: Tally, live = false): Promise<void> {
  const consumer = bus.consumer({ consumerGroup: freshName('g'), messageTypes: [type], prefetch: PREFETCH });
  try {
    let feeding: Promise<void> | undefined;
    if (live) {
      await consumer.ready;
      feeding = fill(bus, type, count);
      feeding.catch(() => {});
    }
    while (tally.handled < count) {
      const m = await consumer.receive({ timeout: 30_000 });
      if (!m) throw new Error(`no message of ${type} for 30 s after ${tally.handled}`);
      tally.count();
      void m.ack();
    }
    await feeding;
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
  let slower: { bus: MessageBus; type: string; name: string; live: boolean } | undefined;
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
      for (const type of from.live ? [] : [...types, sourceReservoir]) {
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
      const probe = async (bus: MessageBus, type: string, live = false) => {
        const start = performance.now();
        await consume(bus, type, MESSAGES, new Tally(0, new Map()), live);
        return performance.now() - start;
      };
      const sourceMs = await probe(source, sourceReservoir, from.live);
      const targetMs = await probe(target, targetReservoir);
      slower =
        sourceMs >= targetMs
          ? { bus: source, type: sourceReservoir, name: from.name, live: from.live ?? false }
          : { bus: target, type: targetReservoir, name: to.name, live: false };
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
      if (from.live) {
        await bridge.ready();
        const feeding = fill(source, type, MESSAGES);
        feeding.catch(() => {});
        cleanup.add(() => feeding);
      }
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
      // A live side's groups keep what their types receive until the bus closes: a fresh type per round, as the
      // bridge's rounds have, so no earlier round's group is fed too.
      const type = slower!.live ? freshName('base') : slower!.type;
      await consume(slower!.bus, type, MESSAGES, tally, slower!.live);
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
