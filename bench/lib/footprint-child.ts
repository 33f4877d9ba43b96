/**
 * One footprint measurement, in a process of its own so that nothing else's memory is counted (bench/footprint.ts
 * starts it): `node --expose-gc bench/lib/footprint-child.ts <url> <backlog> <inflight>`. Connects a bus, attaches
 * a consumer to a fresh group of a fresh type and leaves it paused (never iterated), publishes `backlog` messages
 * (100 B, producer batches of 1,000, each confirmed), then takes `inflight` deliveries with a second consumer without
 * acking any. Prints one JSON line: RSS, heapUsed and external (MB, after a full GC) when connected, with the
 * backlog, and with the deliveries in flight. Deletes its type before it exits.
 */
import { MessageBus } from '../../src/index.ts';
import { BODY, freshName } from './case.ts';

const [url, backlogArg, inflightArg] = process.argv.slice(2);
if (!url || !backlogArg || !inflightArg || typeof globalThis.gc !== 'function') {
  console.error('usage: node --expose-gc bench/lib/footprint-child.ts <url> <backlog> <inflight>');
  process.exit(2);
}
const backlog = Number(backlogArg);
const inflight = Number(inflightArg);
const BATCH = 1_000;
/** Leases long enough that nothing is redelivered while the process holds it. */
const ACK_TIMEOUT_MS = 3_600_000;

function sample() {
  globalThis.gc!();
  const { rss, heapUsed, external } = process.memoryUsage();
  const mb = (bytes: number) => Math.round(bytes / 2 ** 20);
  return { rssMb: mb(rss), heapUsedMb: mb(heapUsed), externalMb: mb(external) };
}

const bus = await MessageBus.connect(url);
const admin = bus.admin();
const type = freshName('footprint');
const group = freshName('g');
const result: Record<string, unknown> = { backlog, inflight };
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

  const producer = bus.producer({ messageType: type });
  const bodies = Array.from({ length: BATCH }, () => BODY);
  const started = performance.now();
  for (let sent = 0; sent < backlog; sent += BATCH)
    await producer.send(bodies.slice(0, Math.min(BATCH, backlog - sent)));
  await producer.close();
  result.publishSeconds = Math.round((performance.now() - started) / 100) / 10;
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
  while (held.length < inflight) {
    const next = await deliveries.next();
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
process.exit(0);
