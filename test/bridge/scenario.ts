/**
 * The bridge's crash-and-restart scenario, run for each pair of brokers: a steady stream into the source, a real
 * `busbar bridge` child process moving it to the target, and a reader at the target counting what arrives, while
 * the bridge is killed with SIGKILL and started again, then the source broker and the target broker are each
 * restarted once. Every message the source confirmed must arrive at the target; a message may arrive more than once
 * only as a copy with the same id (that is how the counts are kept: by id).
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Consumer, type Message, MessageBus, message } from '../../src/index.ts';

const bin = new URL('../../bin/busbar.js', import.meta.url).pathname;

export interface Broker {
  readonly name: string;
  /** The URL the test's producer and reader use. */
  readonly url: string;
  /** The URL the bridge uses (e.g. with shorter group timings); `url` when absent. */
  readonly bridgeUrl?: string;
  /** Restarts the broker on its data; absent for a side with no broker to restart (that phase is skipped). */
  restart?(): Promise<void>;
}

export interface ScenarioOptions {
  from: Broker;
  to: Broker;
  /** Check that each key's messages first arrive in the order they were sent (sources that keep order per key). */
  orderPerKey?: boolean;
  /** How many new arrivals each phase waits for. */
  step?: number;
}

const KEYS = 8;

function log(t: TestContext, text: string): void {
  t.diagnostic(`${new Date().toISOString().slice(11, 23)} ${text}`);
}

/** Polls `condition` until it holds; fails after `ms` with `what` and the state `describe` gives. */
export async function waitFor(
  condition: () => boolean,
  ms: number,
  what: string,
  describe: () => string,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}: ${describe()}`);
    await sleep(50);
  }
}

export class BridgeProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr = '';
  /** The last stats line the bridge printed (--json). */
  lastStats = '';
  #partial = '';
  readonly #killOnExit = () => this.child.kill('SIGKILL');

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [bin, 'bridge', ...args], {
      env: { ...process.env, BUSBAR_BROKER: '', BUSBAR_CONFIG: '' },
    });
    this.child.stdout.on('data', (d) => {
      const lines = (this.#partial + d).split('\n');
      this.#partial = lines.pop()!;
      if (lines.length > 0) this.lastStats = lines.at(-1)!;
    });
    this.child.stderr.on('data', (d) => {
      this.stderr += d;
    });
    process.once('exit', this.#killOnExit);
    this.exit = new Promise((resolve) =>
      this.child.on('close', (code, signal) => {
        process.off('exit', this.#killOnExit);
        resolve({ code, signal });
      }),
    );
  }

  async running(ms = 120_000): Promise<void> {
    await waitFor(
      () => /bridge .* running/.test(this.stderr) || this.child.exitCode !== null,
      ms,
      'the bridge to say it runs',
      () => this.stderr,
    );
    if (this.child.exitCode !== null) throw new Error(`the bridge exited ${this.child.exitCode}: ${this.stderr}`);
  }

  async kill9(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exit;
  }

  /** SIGTERM, then SIGKILL if it has not stopped within `ms`. */
  async stop(ms = 60_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exit;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), ms);
    const result = await this.exit;
    clearTimeout(timer);
    return result;
  }
}

/** Sends batches of 10 until stopped; a batch that fails is sent again, same ids, until the source confirms it. */
class Producer {
  readonly confirmed = new Set<string>();
  readonly attempted = new Set<string>();
  /** id -> seq, to name the missing messages by their place in the stream. */
  readonly seqOf = new Map<string, number>();
  failures = 0;
  #seq = 0;
  #stopped = false;
  readonly done: Promise<void>;

  constructor(bus: MessageBus, type: string) {
    this.done = this.#run(bus, type);
  }

  async #run(bus: MessageBus, type: string): Promise<void> {
    while (!this.#stopped) {
      const batch = Array.from({ length: 10 }, () => {
        const seq = this.#seq++;
        const id = randomUUID();
        this.attempted.add(id);
        this.seqOf.set(id, seq);
        return {
          id,
          item: message(
            { seq, text: 'bridged ünïcode ✓' },
            { id, key: `k${seq % KEYS}`, headers: { seq: String(seq), origin: 'bridge-test' } },
          ),
        };
      });
      for (;;) {
        try {
          await bus.sendBatch(
            type,
            batch.map((b) => b.item),
          );
          for (const b of batch) this.confirmed.add(b.id);
          break;
        } catch {
          this.failures++;
          if (this.#stopped) return;
          await sleep(200);
        }
      }
      await sleep(10);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.done;
  }
}

/** Reads the target type in its own group, acking each message, making a new consumer whenever one fails. */
class Reader {
  readonly seen = new Map<string, number>();
  arrivals = 0;
  restarts = 0;
  /** The reader's own acks the target refused (a target restart): those come to it again, its own duplicates. */
  ackFailures = 0;
  readonly problems: string[] = [];
  readonly #lastSeqOfKey = new Map<string, number>();
  readonly #orderPerKey: boolean;
  #stopped = false;
  #consumer: Consumer | undefined;
  readonly done: Promise<void>;

  constructor(bus: MessageBus, type: string, group: string, orderPerKey: boolean, ready: (error?: unknown) => void) {
    this.#orderPerKey = orderPerKey;
    this.done = this.#run(bus, type, group, ready);
  }

  get unique(): number {
    return this.seen.size;
  }

  async #run(bus: MessageBus, type: string, group: string, ready: (error?: unknown) => void): Promise<void> {
    let first = true;
    while (!this.#stopped) {
      const consumer = bus.consumer({
        consumerGroup: group,
        messageTypes: [type],
        prefetch: 200,
        ackTimeoutMs: 60_000,
      });
      this.#consumer = consumer;
      try {
        await consumer.ready;
        if (first) ready();
        first = false;
        for (;;) {
          const m = await consumer.receive({ timeout: 500 });
          if (this.#stopped) break;
          if (!m) continue;
          this.#record(m);
          await m.ack().catch(() => {
            this.ackFailures++;
          });
        }
      } catch (error) {
        if (first) {
          ready(error);
          return;
        }
        this.restarts++;
      }
      await consumer.close().catch(() => {});
      if (!this.#stopped) await sleep(500);
    }
  }

  #record(m: Message): void {
    this.arrivals++;
    const count = this.seen.get(m.id) ?? 0;
    this.seen.set(m.id, count + 1);
    if (count > 0) return;
    const seq = Number(m.headers.seq);
    const body = m.body as { seq: number; text: string };
    if (body.seq !== seq || body.text !== 'bridged ünïcode ✓')
      this.problems.push(`${m.id}: body ${JSON.stringify(body)}`);
    if (m.key !== `k${seq % KEYS}`) this.problems.push(`${m.id}: key ${m.key} for seq ${seq}`);
    if (m.headers.origin !== 'bridge-test') this.problems.push(`${m.id}: headers ${JSON.stringify(m.headers)}`);
    if (this.#orderPerKey && m.key) {
      const last = this.#lastSeqOfKey.get(m.key) ?? -1;
      if (seq < last) this.problems.push(`key ${m.key}: seq ${seq} first arrived after ${last}`);
      this.#lastSeqOfKey.set(m.key, Math.max(seq, last));
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#consumer?.close().catch(() => {});
    await this.done;
  }
}

export async function bridgeScenario(t: TestContext, options: ScenarioOptions): Promise<void> {
  const { from, to } = options;
  const step = options.step ?? 300;
  const type = `bridge-${randomUUID().slice(0, 8)}`;
  const group = `bridge-${randomUUID().slice(0, 8)}`;
  const source = await MessageBus.connect({ broker: from.url, sendTimeoutMs: 10_000 });
  const target = await MessageBus.connect({ broker: to.url });
  const bridges: BridgeProcess[] = [];
  let producer: Producer | undefined;
  let reader: Reader | undefined;
  t.after(async () => {
    await Promise.allSettled(bridges.map((b) => b.stop(5000)));
    await producer?.stop();
    await reader?.stop();
    await Promise.allSettled([source.close(), target.close()]);
  });

  await new Promise<void>((resolve, reject) => {
    reader = new Reader(target, type, `reader-${group}`, options.orderPerKey ?? false, (error) =>
      error ? reject(error) : resolve(),
    );
  });
  const r = reader!;
  const startBridge = async () => {
    const bridge = new BridgeProcess([
      '--from',
      from.bridgeUrl ?? from.url,
      '--to',
      to.bridgeUrl ?? to.url,
      '--types',
      type,
      '--group',
      group,
      '--ack-timeout',
      '10000',
      '--prefetch',
      '200',
      '--batch',
      '100',
      '--json',
    ]);
    bridges.push(bridge);
    await bridge.running();
    return bridge;
  };
  const p = new Producer(source, type);
  producer = p;
  const state = () =>
    `confirmed ${p.confirmed.size}, arrived ${r.unique} unique / ${r.arrivals} in all; bridge stderr: ${bridges.at(-1)?.stderr.slice(-2000)}`;
  const arrive = (n: number, what: string, ms = 180_000) => {
    const goal = r.unique + n;
    return waitFor(() => r.unique >= goal, ms, `${n} more arrivals (${what})`, state);
  };
  const confirm = (n: number, what: string, ms = 180_000) => {
    const goal = p.confirmed.size + n;
    return waitFor(() => p.confirmed.size >= goal, ms, `${n} more confirmed sends (${what})`, state);
  };

  let bridge = await startBridge();
  log(t, `bridge ${from.name} -> ${to.name} running`);
  await arrive(step, 'first bridge');
  await bridge.kill9();
  log(t, `bridge killed (SIGKILL): ${state().split(';')[0]}`);
  await confirm(step, 'while no bridge runs');
  bridge = await startBridge();
  await arrive(2 * step, 'restarted bridge');
  log(t, `bridge restarted: ${state().split(';')[0]}`);

  if (from.restart) {
    await from.restart();
    log(t, `source ${from.name} restarted`);
    await confirm(step, 'after the source restart');
    await arrive(step, 'after the source restart');
    log(t, `after the source restart: ${state().split(';')[0]}`);
  }
  if (to.restart) {
    await to.restart();
    log(t, `target ${to.name} restarted`);
    await arrive(step, 'after the target restart');
    log(t, `after the target restart: ${state().split(';')[0]}`);
  }

  await p.stop();
  const expected = [...p.confirmed];
  log(t, `producer stopped: ${expected.length} confirmed, ${p.failures} failed sends retried`);
  try {
    await waitFor(
      () => expected.every((id) => r.seen.has(id)),
      240_000,
      'every confirmed message at the target',
      () => `${expected.filter((id) => !r.seen.has(id)).length} missing; ${state()}`,
    );
  } catch (error) {
    await explainMissing(t, target, type, `reader-${group}`, expected, p, r).catch((e: unknown) =>
      log(t, `could not explain the missing messages: ${e}`),
    );
    throw error;
  }
  const exit = await bridge.stop();
  log(t, `bridge stopped: ${bridge.stderr.trim().split('\n').at(-1)}`);
  const { forwarded, publishRetries, ackFailures, consumerRestarts, types } = JSON.parse(bridge.lastStats);
  log(
    t,
    `last bridge: ${JSON.stringify({ forwarded, publishRetries, ackFailures, consumerRestarts, joined: types[0].joined })}`,
  );
  await r.stop();

  const unknown = [...r.seen.keys()].filter((id) => !p.attempted.has(id));
  const duplicates = r.arrivals - r.unique;
  log(
    t,
    `arrived ${r.unique} unique (${duplicates} duplicate deliveries, all with the same id), reader restarts ${r.restarts}, its failed acks ${r.ackFailures}`,
  );
  assert.deepEqual(unknown, [], 'messages at the target that were never sent');
  assert.deepEqual(r.problems.slice(0, 10), [], 'messages that changed on the way');
  assert.equal(exit.code, 0, `the bridge exits 0 on SIGTERM: ${bridge.stderr}`);
  assert.ok(r.unique >= expected.length);
}

/**
 * After a timeout: which messages are missing (seq ranges), what the target's own stats say, and whether the target
 * holds them (a fresh group reading the type from its oldest message), so a loss at the target (the bridge acked
 * what the target never stored) is told apart from a reader that skipped what the target holds.
 */
async function explainMissing(
  t: TestContext,
  target: MessageBus,
  type: string,
  readerGroup: string,
  expected: string[],
  p: Producer,
  r: Reader,
): Promise<void> {
  const missing = new Set(expected.filter((id) => !r.seen.has(id)));
  const seqs = [...missing].map((id) => p.seqOf.get(id)!).sort((a, b) => a - b);
  const ranges: string[] = [];
  for (let i = 0; i < seqs.length; ) {
    let j = i;
    while (j + 1 < seqs.length && seqs[j + 1] === seqs[j]! + 1) j++;
    ranges.push(i === j ? `${seqs[i]}` : `${seqs[i]}..${seqs[j]}`);
    i = j + 1;
  }
  log(t, `missing ${missing.size}, seq ${ranges.slice(0, 20).join(', ')}${ranges.length > 20 ? ', ...' : ''}`);
  const stats = await target
    .admin()
    .stats(type)
    .catch((e: unknown) => `${e}`);
  log(t, `target stats: ${JSON.stringify(stats, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}`);
  const recount = target.consumer({
    consumerGroup: `recount-${randomUUID().slice(0, 8)}`,
    messageTypes: [type],
    offset: 'earliest',
    prefetch: 500,
  });
  const held = new Set<string>();
  let records = 0;
  try {
    await recount.ready;
    for (;;) {
      const m = await recount.receive({ timeout: 10_000 });
      if (!m) break;
      records++;
      held.add(m.id);
      await m.ack().catch(() => {});
    }
  } finally {
    await recount.close().catch(() => {});
  }
  const heldMissing = [...missing].filter((id) => held.has(id)).length;
  log(
    t,
    `a fresh group reading ${type} from its oldest message: ${records} records, ${held.size} unique; ` +
      `${heldMissing} of the ${missing.size} missing are at the target (the reader skipped them), ` +
      `${missing.size - heldMissing} are not (lost on the way); reader group ${readerGroup}`,
  );
}
