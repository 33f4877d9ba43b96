/**
 * One footprint measurement, in a process of its own so that nothing else's memory is counted (bench/footprint.ts
 * starts it): `node --expose-gc bench/lib/footprint-child.ts <url> <type> <backlog> <inflight> <self|parent>`.
 * Connects a bus, attaches a consumer to a fresh group of `type` and leaves it paused (never iterated). Then the
 * backlog is published: with `parent`, by the parent process (this one prints `ready`, and the parent writes a line
 * to its stdin once the backlog is stored), so that the publisher's own memory is not counted; with `self` (the
 * memory transport and ZeroMQ, whose messages wait in the consuming process), by this process. Then it takes
 * `inflight` deliveries with a second consumer, acking none (or as many as arrive before one minute passes with
 * none: `stalledAfter`). Prints one JSON line: RSS, heapUsed and external (MB, after a full GC) when connected,
 * with the backlog, and with the deliveries in flight. Deletes the type at the end.
 */
import { createInterface } from 'node:readline';
import { MessageBus } from '../../src/index.ts';
import { BODY, freshName } from './case.ts';

const BATCH = 1_000;
/** Leases long enough that nothing is redelivered while the process holds it. */
const ACK_TIMEOUT_MS = 3_600_000;
/** No delivery for this long while taking the unacked ones: the consumer holds all it will. */
const STALL_MS = 60_000;

/** `count` 100-byte messages in producer batches of 1,000, each batch confirmed. */
export async function publishBacklog(bus: MessageBus, type: string, count: number): Promise<void> {
  const producer = bus.producer({ messageType: type });
  const bodies = Array.from({ length: BATCH }, () => BODY);
  for (let sent = 0; sent < count; sent += BATCH) {
    await producer.send(bodies.slice(0, Math.min(BATCH, count - sent)));
  }
  await producer.close();
}

function sample() {
  globalThis.gc!();
  const { rss, heapUsed, external } = process.memoryUsage();
  const mb = (bytes: number) => Math.round(bytes / 2 ** 20);
  return { rssMb: mb(rss), heapUsedMb: mb(heapUsed), externalMb: mb(external) };
}

async function main(url: string, type: string, backlog: number, inflight: number, self: boolean): Promise<void> {
  const bus = await MessageBus.connect(url);
  const admin = bus.admin();
  const group = freshName('g');
  const result: Record<string, unknown> = { backlog, inflight, publisher: self ? 'self' : 'parent' };
  try {
    await admin.registerMessageType(type);
    const paused = bus.consumer({
      consumerId: 'paused',
      consumerGroup: group,
      messageTypes: type,
      ackTimeoutMs: ACK_TIMEOUT_MS,
    });
    await paused.ready;
    result.connected = sample();
    if (self) {
      const started = performance.now();
      await publishBacklog(bus, type, backlog);
      result.publishSeconds = Math.round((performance.now() - started) / 100) / 10;
    } else {
      console.log('ready');
      for await (const _line of createInterface({ input: process.stdin })) break;
    }
    result.withBacklog = sample();
    await paused.close();

    const holding = bus.consumer({
      consumerId: 'holding',
      consumerGroup: group,
      messageTypes: type,
      prefetch: inflight,
      ackTimeoutMs: ACK_TIMEOUT_MS,
    });
    const held: unknown[] = [];
    const deliveries = holding[Symbol.asyncIterator]();
    // Bounded: a transport that caps what a consumer holds below `inflight` (amqp10: 2,048) is measured at its cap.
    const stalled = Symbol('stalled');
    while (held.length < inflight) {
      let timer: NodeJS.Timeout | undefined;
      const next = await Promise.race([
        deliveries.next(),
        new Promise<typeof stalled>((resolve) => {
          timer = setTimeout(() => resolve(stalled), STALL_MS);
        }),
      ]);
      clearTimeout(timer);
      if (next === stalled) {
        result.stalledAfter = held.length;
        break;
      }
      if (next.done) throw new Error(`the consumer ended after ${held.length} of ${inflight} deliveries`);
      held.push(next.value);
    }
    result.withInflight = sample();
    result.held = held.length;
    await holding.close();
  } finally {
    await admin.deregisterMessageType(type).catch((error: unknown) => {
      result.cleanupError = (error as Error)?.message ?? String(error);
    });
    await bus.close().catch(() => {});
  }
  console.log(JSON.stringify(result));
}

if (import.meta.main) {
  const [url, type, backlog, inflight, publisher] = process.argv.slice(2);
  if (!url || !type || !backlog || !inflight || !['self', 'parent'].includes(publisher!) || !globalThis.gc) {
    console.error(
      'usage: node --expose-gc bench/lib/footprint-child.ts <url> <type> <backlog> <inflight> <self|parent>',
    );
    process.exit(2);
  }
  await main(url, type, Number(backlog), Number(inflight), publisher === 'self');
  process.exit(0);
}
