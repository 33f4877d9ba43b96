/**
 * Resident memory of a busbar process (`npm run bench -- footprint --rounds 1`): per transport, a child process
 * (bench/lib/footprint-child.ts) with a paused consumer while a backlog of 1,000,000 messages builds up in its group,
 * then with 10,000 unacked deliveries in flight. RSS and heapUsed after a full GC, in MB; no raw side (there is no
 * raw counterpart of busbar's own bookkeeping). The warm-up round runs a backlog a hundred times smaller, so each
 * result also shows whether memory grows with the backlog. BUSBAR_BENCH_BACKLOG / BUSBAR_BENCH_INFLIGHT change the
 * sizes. The msg/s a round reports is the whole child's (publishing the backlog dominates).
 */
import { execFile } from 'node:child_process';
import { bench as embedded } from './embedded.ts';
import type { BenchCase } from './harness.ts';
import { bench as kafka } from './kafka.ts';
import { Cleanup, defineCase } from './lib/case.ts';
import { bench as mqtt } from './mqtt.ts';
import { bench as nats } from './nats.ts';
import { bench as rabbitmq } from './rabbitmq.ts';
import { bench as redis } from './redis.ts';

const BACKLOG = Number(process.env.BUSBAR_BENCH_BACKLOG ?? 1_000_000);
const INFLIGHT = Number(process.env.BUSBAR_BENCH_INFLIGHT ?? 10_000);
/** A child that has not finished by then has failed (1,000,000 messages at a few thousand msg/s fit well inside). */
const CHILD_TIMEOUT_MS = 40 * 60_000;
const NODE = process.execPath;
const CHILD = new URL('./lib/footprint-child.ts', import.meta.url).pathname;

type Measurement = Record<string, unknown>;

function measure(url: string, backlog: number): Promise<Measurement> {
  return new Promise((resolve, reject) => {
    execFile(
      NODE,
      ['--expose-gc', CHILD, url, String(backlog), String(Math.min(INFLIGHT, backlog))],
      { timeout: CHILD_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 1 << 20 },
      (error, stdout, stderr) => {
        const line = stdout.trim().split('\n').at(-1);
        if (error || !line) reject(new Error(`footprint child for ${url} failed: ${error?.message ?? ''} ${stderr}`));
        else resolve(JSON.parse(line) as Measurement);
      },
    );
  });
}

function footprintCase(transport: string, url: (cleanup: Cleanup) => Promise<string>): BenchCase {
  const cleanup = new Cleanup();
  let address: string | undefined;
  const rounds: Measurement[] = [];
  const benchCase = defineCase({
    name: `resident memory: paused consumer with a backlog of ${BACKLOG.toLocaleString('en-US')}, then ${INFLIGHT.toLocaleString('en-US')} unacked deliveries`,
    transport,
    messages: BACKLOG,
    async setup() {
      address = await url(cleanup);
    },
    teardown: () => cleanup.run(),
    async subject(tally) {
      // The warm-up round (the first) measures a backlog a hundred times smaller.
      const backlog = rounds.length === 0 ? Math.max(1, Math.round(BACKLOG / 100)) : BACKLOG;
      const result = await measure(address!, backlog);
      rounds.push(result);
      if (result.cleanupError) throw new Error(`could not delete the type: ${result.cleanupError}`);
      tally.count(BACKLOG);
    },
  });
  return Object.assign(benchCase, { details: () => ({ footprint: rounds }) });
}

export default async function cases(): Promise<BenchCase[]> {
  const { freePort, loopbackUrl } = await import('../test/helpers/zeromq.ts');
  return [
    footprintCase('memory', async () => 'memory:'),
    footprintCase('embedded', (cleanup) => embedded.url(cleanup)),
    footprintCase('redis', (cleanup) => redis.url(cleanup)),
    footprintCase('nats', (cleanup) => nats.url(cleanup)),
    footprintCase('rabbitmq', (cleanup) => rabbitmq.url(cleanup)),
    footprintCase('kafka', (cleanup) => kafka.url(cleanup)),
    footprintCase('mqtt', (cleanup) => mqtt.url(cleanup)),
    // No broker: the process publishes to itself, and its group keeps at most groupBuffer of the backlog.
    footprintCase('zeromq', async () => loopbackUrl(await freePort(), '')),
    footprintCase('amqp10', async () => process.env.BUSBAR_TEST_AMQP10_URL ?? 'amqp10://busbar:busbar@127.0.0.1:5682'),
    footprintCase('stomp', async () => process.env.BUSBAR_TEST_STOMP_URL ?? 'stomp://busbar:busbar@127.0.0.1:61613'),
  ];
}
