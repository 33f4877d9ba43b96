/**
 * Resident memory of a busbar process (`npm run bench -- footprint --rounds 1`): per transport, a child process
 * (bench/lib/footprint-child.ts) with a paused consumer while a backlog of 1,000,000 messages waits in its group
 * (stored by this process, so the publisher's memory is not the child's), then with 10,000 unacked deliveries in
 * flight. RSS, heapUsed and external after a full GC, in MB; no raw side (there is no raw counterpart of busbar's own
 * bookkeeping). The warm-up round runs a backlog a hundred times smaller, so each result also shows whether memory
 * grows with the backlog. BUSBAR_BENCH_BACKLOG / BUSBAR_BENCH_INFLIGHT change the sizes, BUSBAR_BENCH_FOOTPRINT
 * (e.g. `redis,nats`) the transports. The msg/s a round reports is the whole round's (storing the backlog dominates).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { MessageBus } from '../src/index.ts';
import { bench as embedded } from './embedded.ts';
import type { BenchCase } from './harness.ts';
import { bench as kafka } from './kafka.ts';
import { Cleanup, defineCase, freshName } from './lib/case.ts';
import { publishBacklog } from './lib/footprint-child.ts';
import { bench as mqtt } from './mqtt.ts';
import { bench as nats } from './nats.ts';
import { bench as rabbitmq } from './rabbitmq.ts';
import { bench as redis } from './redis.ts';

const BACKLOG = Number(process.env.BUSBAR_BENCH_BACKLOG ?? 1_000_000);
const INFLIGHT = Number(process.env.BUSBAR_BENCH_INFLIGHT ?? 10_000);
/** Transports to measure (comma-separated), all by default. */
const ONLY = process.env.BUSBAR_BENCH_FOOTPRINT?.split(',');
/** A child that has not finished by then has failed (1,000,000 messages at a few thousand msg/s fit well inside). */
const CHILD_TIMEOUT_MS = 40 * 60_000;
const CHILD = new URL('./lib/footprint-child.ts', import.meta.url).pathname;

type Measurement = Record<string, unknown>;

/**
 * Runs one child over `backlog` messages; with `publish`, this process stores the backlog once the child is ready.
 * Bounded: the child is killed after CHILD_TIMEOUT_MS.
 */
function measure(url: string, backlog: number, publish?: (type: string) => Promise<void>): Promise<Measurement> {
  const type = freshName('footprint');
  const child = spawn(
    process.execPath,
    [
      '--expose-gc',
      CHILD,
      url,
      type,
      String(backlog),
      String(Math.min(INFLIGHT, backlog)),
      publish ? 'parent' : 'self',
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
  return new Promise<Measurement>((resolve, reject) => {
    let last = '';
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0 && last.startsWith('{')) resolve(JSON.parse(last) as Measurement);
      else reject(new Error(`footprint child for ${url} ended with ${signal ?? `code ${code}`}`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      last = line;
      if (line !== 'ready' || !publish) return;
      publish(type).then(
        () => child.stdin.write('stored\n'),
        (error: unknown) => {
          child.kill('SIGKILL');
          reject(error);
        },
      );
    });
  });
}

/** `parentPublishes`: the backlog waits in a broker, so this process stores it and the child only consumes. */
function footprintCase(
  transport: string,
  url: (cleanup: Cleanup) => Promise<string>,
  parentPublishes = true,
): BenchCase {
  const cleanup = new Cleanup();
  let address: string | undefined;
  let bus: MessageBus | undefined;
  const rounds: Measurement[] = [];
  const benchCase = defineCase({
    name: `resident memory: paused consumer with a backlog of ${BACKLOG.toLocaleString('en-US')}, then ${INFLIGHT.toLocaleString('en-US')} unacked deliveries`,
    transport,
    messages: BACKLOG,
    async setup() {
      address = await url(cleanup);
      if (parentPublishes) {
        const opened = await MessageBus.connect(address);
        cleanup.add(() => opened.close());
        bus = opened;
      }
    },
    teardown: () => cleanup.run(),
    async subject(tally) {
      // The warm-up round (the first) measures a backlog a hundred times smaller.
      const backlog = rounds.length === 0 ? Math.max(1, Math.round(BACKLOG / 100)) : BACKLOG;
      const publish = bus ? (type: string) => publishBacklog(bus!, type, backlog) : undefined;
      const result = await measure(address!, backlog, publish);
      rounds.push(result);
      if (result.cleanupError) throw new Error(`could not delete the type: ${result.cleanupError}`);
      tally.count(BACKLOG);
    },
  });
  return Object.assign(benchCase, { details: () => ({ footprint: rounds }) });
}

export default async function cases(): Promise<BenchCase[]> {
  const { freePort, loopbackUrl } = await import('../test/helpers/zeromq.ts');
  const all = [
    footprintCase('memory', async () => 'memory:', false),
    footprintCase('embedded', (cleanup) => embedded.url(cleanup)),
    footprintCase('redis', (cleanup) => redis.url(cleanup)),
    footprintCase('nats', (cleanup) => nats.url(cleanup)),
    footprintCase('rabbitmq', (cleanup) => rabbitmq.url(cleanup)),
    footprintCase('kafka', (cleanup) => kafka.url(cleanup)),
    footprintCase('mqtt', (cleanup) => mqtt.url(cleanup)),
    // No broker: the process publishes to itself, and its group keeps at most groupBuffer of the backlog.
    footprintCase('zeromq', async () => loopbackUrl(await freePort(), ''), false),
    footprintCase('amqp10', async () => process.env.BUSBAR_TEST_AMQP10_URL ?? 'amqp10://busbar:busbar@127.0.0.1:5682'),
    footprintCase('stomp', async () => process.env.BUSBAR_TEST_STOMP_URL ?? 'stomp://busbar:busbar@127.0.0.1:61613'),
  ];
  return ONLY ? all.filter((c) => ONLY.includes(c.transport)) : all;
}
