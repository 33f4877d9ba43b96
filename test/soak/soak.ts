/**
 * The soak: N messages (default 1,000,000) through each named broker while consumer processes are killed -9 at
 * random and replaced; ends when every accepted message was delivered, and fails (exit 1) if any is missing.
 * Not part of `npm test` (it takes minutes): `npm run test:soak -- [--brokers embedded,redis] [--count N]`.
 * Prints one JSON line per broker: accepted, delivered (distinct), deliveries, duplicates, kills, seconds.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, fstatSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { MessageBus } from '../../src/index.ts';
import { BROKERS } from '../helpers/brokers.ts';

const { values } = parseArgs({
  options: {
    brokers: { type: 'string', default: 'embedded,redis' },
    count: { type: 'string', default: '1000000' },
    consumers: { type: 'string', default: '3' },
    'kill-every-ms': { type: 'string', default: '3000' },
    'ack-timeout-ms': { type: 'string', default: '5000' },
    'max-minutes': { type: 'string', default: '30' },
  },
});
const COUNT = Number(values.count);
const CONSUMERS = Number(values.consumers);
const KILL_EVERY_MS = Number(values['kill-every-ms']);
const ACK_TIMEOUT_MS = values['ack-timeout-ms']!;
const DEADLINE = Date.now() + Number(values['max-minutes']) * 60_000;
const consumerScript = new URL('./consumer.ts', import.meta.url).pathname;

interface Tally {
  counts: Uint8Array;
  distinct: number;
  deliveries: number;
}

interface Log {
  path: string;
  offset: number;
  partial: string;
}

const logs: Log[] = [];
const running = new Set<ChildProcessWithoutNullStreams>();

/** Reads what the consumers appended to their logs since the last call into the tally. */
function readLogs(tally: Tally): void {
  for (const log of logs) {
    let fd: number;
    try {
      fd = openSync(log.path, 'r');
    } catch {
      continue; // not created yet
    }
    try {
      const size = fstatSync(fd).size;
      if (size <= log.offset) continue;
      const buffer = Buffer.alloc(size - log.offset);
      readSync(fd, buffer, 0, buffer.length, log.offset);
      log.offset = size;
      const parts = (log.partial + buffer.toString()).split('\n');
      log.partial = parts.pop()!;
      for (const line of parts) {
        const n = Number(line);
        if (tally.counts[n] === 0) tally.distinct++;
        if (tally.counts[n]! < 255) tally.counts[n]!++;
        tally.deliveries++;
      }
    } finally {
      closeSync(fd);
    }
  }
}

function startConsumer(url: string, type: string, group: string, dir: string): ChildProcessWithoutNullStreams {
  const path = join(dir, `${type}-consumer-${logs.length}.log`);
  logs.push({ path, offset: 0, partial: '' });
  const child = spawn(process.execPath, [consumerScript, url, type, group, ACK_TIMEOUT_MS, path], {
    env: { ...process.env, BUSBAR_BROKER: '', BUSBAR_CONFIG: '' },
  });
  running.add(child);
  child.on('exit', () => running.delete(child));
  child.stdout.resume();
  child.stderr.on('data', (d) => process.stderr.write(`[consumer ${child.pid}] ${d}`));
  return child;
}

function kill9(child: ChildProcessWithoutNullStreams): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

async function soak(name: string, url: string, dir: string): Promise<boolean> {
  logs.length = 0;
  const type = `soak-${randomUUID().slice(0, 8)}`;
  const group = 'soak';
  const started = Date.now();
  const bus = await MessageBus.connect(url);
  await bus.admin().registerMessageType(type);
  const tally: Tally = { counts: new Uint8Array(COUNT), distinct: 0, deliveries: 0 };
  const consumers = Array.from({ length: CONSUMERS }, () => startConsumer(url, type, group, dir));
  let kills = 0;
  let stopKilling = false;
  const stopped = new AbortController();
  const killer = (async () => {
    while (!stopKilling) {
      const pause = KILL_EVERY_MS / 2 + Math.random() * KILL_EVERY_MS;
      await sleep(pause, undefined, { signal: stopped.signal }).catch(() => {});
      if (stopKilling) break;
      const i = Math.floor(Math.random() * consumers.length);
      await kill9(consumers[i]!);
      kills++;
      consumers[i] = startConsumer(url, type, group, dir);
    }
  })();
  let accepted = 0;
  const BATCH = 500;
  // Sent through an async producer with a spool: accepted = send() resolved (at the broker or in the spool), and a
  // broker that is slow to answer on a loaded machine delays delivery, never loses or fails a send.
  const producer = bus.producer({
    messageType: type,
    method: 'async',
    maxBatch: BATCH,
    spool: { path: join(dir, `${type}.spool.db`), fullWaitMs: 600_000 },
  });
  const progress = setInterval(() => {
    readLogs(tally);
    process.stderr.write(
      `[${name}] accepted ${accepted}, delivered ${tally.distinct}, deliveries ${tally.deliveries}, kills ${kills}, ` +
        `${Math.round((Date.now() - started) / 1000)} s\n`,
    );
  }, 10_000);
  try {
    for (let from = 0; from < COUNT && Date.now() < DEADLINE; from += BATCH) {
      const bodies = [];
      for (let n = from; n < Math.min(COUNT, from + BATCH); n++) bodies.push({ n });
      await producer.send(bodies);
      accepted += bodies.length;
    }
    await producer.flush();
    // Keep killing a while after the last send, then let the last consumers finish.
    const waitFor = async (share: number) => {
      for (readLogs(tally); tally.distinct < accepted * share && Date.now() < DEADLINE; readLogs(tally)) {
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    await waitFor(0.98);
    stopKilling = true;
    stopped.abort();
    await killer;
    await waitFor(1);
  } finally {
    stopKilling = true;
    stopped.abort();
    clearInterval(progress);
    await killer;
    await Promise.all(consumers.map(kill9));
    readLogs(tally);
    await producer.close();
    await bus
      .admin()
      .deregisterMessageType(type)
      .catch(() => {});
    await bus.close();
  }
  const result = {
    broker: name,
    accepted,
    delivered: tally.distinct,
    deliveries: tally.deliveries,
    duplicates: tally.deliveries - tally.distinct,
    kills,
    consumers: CONSUMERS,
    seconds: Math.round((Date.now() - started) / 1000),
    ok: accepted === COUNT && tally.distinct === accepted,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  return result.ok;
}

const dir = mkdtempSync(join(tmpdir(), 'busbar-soak-'));
// Whatever ends this process, no consumer outlives it.
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});
let ok = true;
try {
  for (const name of values.brokers!.split(',')) {
    const url = name === 'embedded' ? `embedded:${join(dir, 'soak.db')}` : (BROKERS as Record<string, string>)[name];
    if (!url) throw new Error(`unknown broker '${name}': use embedded or one of ${Object.keys(BROKERS).join(', ')}`);
    ok = (await soak(name, url, dir)) && ok;
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exitCode = ok ? 0 : 1;
