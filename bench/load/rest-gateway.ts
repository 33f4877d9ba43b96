/**
 * Load test of the REST gateway (not a timed test, not part of `npm run bench`): one real `busbar serve` process on
 * a fresh embedded file; P publishers post batches as fast as they are answered for S seconds while C pullers of
 * one group pull and ack batches; then the pullers drain what is left; then everything idles. It prints what
 * happened to every pull (200 / 429 / 5xx), the publish and consume rates, how long draining took after publishing
 * ended, whether each message arrived exactly once, and the gateway's resident memory (VmRSS of its process) under
 * load and idle.
 *
 *   ./node_modules/.bin/node bench/load/rest-gateway.ts [--seconds 15] [--publishers 8] [--pullers 16]
 *     [--batch 100] [--idle 30] [--prefetch N] [--preload N]
 *
 * `--preload N` stores N messages in the file (through the transport, before the gateway starts) for the pullers to
 * drain as well: a way to put many messages through the gateway when publishing through it is slow.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { resolveConfig } from '../../src/index.ts';
import { buildMessage } from '../../src/message/envelope.ts';
import { loadTransport } from '../../src/transport/registry.ts';
import { startReplica, stopReplica } from '../../test/helpers/replicas.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '15' },
    publishers: { type: 'string', default: '8' },
    pullers: { type: 'string', default: '16' },
    batch: { type: 'string', default: '100' },
    idle: { type: 'string', default: '30' },
    prefetch: { type: 'string' },
    preload: { type: 'string', default: '0' },
  },
});
const SECONDS = Number(values.seconds);
const PUBLISHERS = Number(values.publishers);
const PULLERS = Number(values.pullers);
const BATCH = Number(values.batch);
const IDLE_S = Number(values.idle);
/** Draining longer than this counts as a failure (and ends the run). */
const DRAIN_DEADLINE_MS = 10 * 60_000;
const TYPE = 'load';
const GROUP = 'workers';
const pad = 'x'.repeat(80);

const dir = mkdtempSync(join(tmpdir(), 'busbar-load-'));
const configFile = join(dir, 'busbar.json');
const server: Record<string, unknown> = {};
if (values.prefetch) server.prefetch = Number(values.prefetch);
writeFileSync(configFile, JSON.stringify({ broker: `embedded:${join(dir, 'bus.db')}`, server }));
const PRELOAD = Number(values.preload);
if (PRELOAD > 0) {
  const config = resolveConfig(`embedded:${join(dir, 'bus.db')}`);
  const transport = await (await loadTransport(config.scheme))(config.transport);
  for (let n = 0; n < PRELOAD; n += 1000) {
    const count = Math.min(1000, PRELOAD - n);
    await transport.publish(
      TYPE,
      Array.from({ length: count }, (_, i) => buildMessage(TYPE, 'preload', { p: -1, n: n + i, pad })),
    );
  }
  await transport.close();
}
const gateway = await startReplica(configFile);

function rssMb(): number {
  const status = readFileSync(`/proc/${gateway.child.pid}/status`, 'utf8');
  return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024);
}

const statuses = new Map<string, number>();
const count = (what: string) => statuses.set(what, (statuses.get(what) ?? 0) + 1);
const seen = new Set<string>();
let duplicates = 0;
let published = PRELOAD;
let publishing = true;
let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMb())), 250);

async function publisher(p: number): Promise<void> {
  let n = 0;
  while (publishing) {
    const messages = Array.from({ length: BATCH }, () => ({ body: { p, n: n++, pad } }));
    const res = await fetch(`${gateway.url}/v1/types/${TYPE}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages }),
    });
    await res.arrayBuffer();
    count(`publish ${res.status}`);
    if (res.status === 200) published += BATCH;
    else n -= BATCH;
  }
}

let stopPulling = false;
async function puller(): Promise<void> {
  while (!stopPulling) {
    const res = await fetch(`${gateway.url}/v1/types/${TYPE}/messages?group=${GROUP}&max=${BATCH}&wait=1000`);
    const text = await res.text();
    count(`pull ${res.status}`);
    if (res.status !== 200) {
      // A 429 says when to come back; anything else is counted and retried after a moment.
      await new Promise((resolve) => setTimeout(resolve, Number(res.headers.get('retry-after') ?? 1) * 1000));
      continue;
    }
    const { messages } = JSON.parse(text) as { messages: { receipt: string; body: { p: number; n: number } }[] };
    if (messages.length === 0) continue;
    const ack = await fetch(`${gateway.url}/v1/acks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ receipts: messages.map((m) => m.receipt) }),
    });
    await ack.arrayBuffer();
    count(`ack ${ack.status}`);
    if (ack.status !== 200) continue;
    for (const m of messages) {
      const key = `${m.body.p}:${m.body.n}`;
      if (seen.has(key)) duplicates++;
      else seen.add(key);
    }
  }
}

try {
  await fetch(`${gateway.url}/v1/types/${TYPE}`, { method: 'PUT' }).then((r) => r.arrayBuffer());
  const started = Date.now();
  const pulling = Array.from({ length: PULLERS }, () => puller());
  const pubs = Array.from({ length: PUBLISHERS }, (_, p) => publisher(p));
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
  publishing = false;
  await Promise.all(pubs);
  const publishEnded = Date.now();
  const consumedAtPublishEnd = seen.size;
  const rssUnderLoad = rssMb();
  while (seen.size < published && Date.now() - publishEnded < DRAIN_DEADLINE_MS) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const drained = Date.now();
  stopPulling = true;
  await Promise.all(pulling);
  clearInterval(sampler);
  await new Promise((resolve) => setTimeout(resolve, IDLE_S * 1000));
  const rssIdle = rssMb();

  const pulls = [...statuses].filter(([k]) => k.startsWith('pull ')).reduce((sum, [, v]) => sum + v, 0);
  const refused = statuses.get('pull 429') ?? 0;
  console.log(
    JSON.stringify(
      {
        load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
        publishers: PUBLISHERS,
        pullers: PULLERS,
        batch: BATCH,
        published,
        preloaded: PRELOAD,
        publishPerSec: Math.round((published - PRELOAD) / ((publishEnded - started) / 1000)),
        consumedWhilePublishing: consumedAtPublishEnd,
        consumePerSec: Math.round(seen.size / ((drained - started) / 1000)),
        drainMsAfterPublish: drained - publishEnded,
        lost: published - seen.size,
        duplicates,
        pulls,
        pulls429: refused,
        pulls429Share: pulls ? Number((refused / pulls).toFixed(3)) : 0,
        statuses: Object.fromEntries([...statuses].sort()),
        rssMb: { peak: peakRss, endOfPublish: rssUnderLoad, [`idle${IDLE_S}s`]: rssIdle },
      },
      null,
      2,
    ),
  );
  if (published !== seen.size) process.exitCode = 1;
} finally {
  clearInterval(sampler);
  stopPulling = true;
  publishing = false;
  await stopReplica(gateway);
  rmSync(dir, { recursive: true, force: true });
}
