/**
 * The embedded bus shared by real processes through one file: competing consumers in separate processes, a consumer
 * killed with SIGKILL, and a publisher in another process waking a waiting consumer.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import type { Delivery, TransportMessage } from '../../src/transport/contract.ts';
import createEmbeddedTransport from '../../src/transports/embedded/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'busbar-embedded-mp-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;

interface Child {
  process: ChildProcess;
  lines: string[];
  /** Resolves when a line passes the test; rejects if the child exits first. */
  waitFor(match: (line: string) => boolean): Promise<void>;
  exited: Promise<number | null>;
}

function start(script: string, args: string[]): Child {
  // process.execPath is the Node this test runs on (the pinned Node 24 via npx node), so children use node:sqlite too.
  const child = spawn(process.execPath, [fixture(script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const watchers = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(line);
    for (const watcher of watchers) watcher();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    process: child,
    lines,
    exited,
    waitFor: (match) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (lines.some(match)) {
            watchers.delete(check);
            resolve();
          }
        };
        watchers.add(check);
        check();
        exited.then(() => {
          watchers.delete(check);
          if (!lines.some(match))
            reject(new Error(`${script} exited before printing the expected line: ${lines.join(' | ')}`));
        });
      }),
  };
}

function message(type: string, id: string): TransportMessage {
  return {
    id,
    type,
    source: 'parent',
    time: new Date().toISOString(),
    contentType: 'text/plain',
    headers: {},
    body: new TextEncoder().encode(id),
  };
}

test('consumers in three processes share one group: each message exactly once', async (t) => {
  const path = join(dir, `${randomUUID()}.db`);
  const type = `t-${randomUUID()}`;
  const group = `g-${randomUUID()}`;
  const transport = await createEmbeddedTransport({ url: `embedded:${path}`, endpoints: [], options: {} });
  t.after(() => transport.close());
  await transport.admin.ensureType(type);
  const children = [0, 1, 2].map(() => start('embedded-consumer.ts', [path, type, group, 'ack', '30000']));
  t.after(() => {
    for (const child of children) child.process.kill('SIGKILL');
  });
  await Promise.all(children.map((c) => c.waitFor((l) => l === 'ready')));
  const ids = Array.from({ length: 300 }, (_, i) => `m-${i}`);
  for (let i = 0; i < ids.length; i += 10) {
    await transport.publish(
      type,
      ids.slice(i, i + 10).map((id) => message(type, id)),
    );
  }
  await Promise.all(children.map((c) => c.exited));
  const got = children.flatMap((c) => c.lines.filter((l) => l.startsWith('got ')).map((l) => l.slice(4)));
  assert.equal(got.length, ids.length, 'no duplicates');
  assert.deepEqual(new Set(got), new Set(ids));
  const perChild = children.map((c) => c.lines.filter((l) => l.startsWith('got ')).length);
  assert.ok(perChild.filter((n) => n > 0).length >= 2, `work was shared: ${perChild.join(', ')}`);
  const [stats] = await transport.admin.stats(type);
  assert.equal(stats!.groups.find((g) => g.group === group)!.unread, 0);
});

test('messages held by a SIGKILLed process come back after the ack timeout', async (t) => {
  const path = join(dir, `${randomUUID()}.db`);
  const type = `t-${randomUUID()}`;
  const group = `g-${randomUUID()}`;
  const transport = await createEmbeddedTransport({ url: `embedded:${path}`, endpoints: [], options: {} });
  t.after(() => transport.close());
  await transport.publish(
    type,
    Array.from({ length: 8 }, (_, i) => message(type, `m-${i}`)),
  );
  const holder = start('embedded-consumer.ts', [path, type, group, 'hold', '1500']);
  t.after(() => holder.process.kill('SIGKILL'));
  await holder.waitFor((l) => l.startsWith('held ') && holder.lines.filter((x) => x.startsWith('held ')).length === 5);
  const held = holder.lines.filter((l) => l.startsWith('held ')).map((l) => l.slice(5));
  holder.process.kill('SIGKILL');
  await holder.exited;
  const killedAt = Date.now();

  const subscription = transport.consume({
    types: [type],
    group,
    consumerId: 'survivor',
    offset: 'earliest',
    prefetch: 20,
    ackTimeoutMs: 30_000,
  });
  t.after(() => subscription.close());
  const got: Delivery[] = [];
  for await (const delivery of subscription) {
    got.push(delivery);
    await delivery.ack();
    if (got.length === 8) break;
  }
  const unheld = got.filter((d) => d.attempt === 1).map((d) => d.message.id);
  const returned = got.filter((d) => d.attempt === 2);
  assert.equal(unheld.length, 3, 'the three the killed process never took arrive at once');
  assert.deepEqual(new Set(returned.map((d) => d.message.id)), new Set(held));
  assert.ok(Date.now() - killedAt >= 500, 'held messages waited for their lease to expire, not returned on the kill');
});

// The consumer waits with nothing claimed and no lease timer, so only its watch on the file (PRAGMA data_version,
// polled every pollMs while it waits) can wake it for another process's commit: delivery of every message proves the
// wake-up. How fast is machine speed, not a verdict: the latency is reported as a diagnostic.
test('a publish in another process wakes a waiting consumer: every message, once, in order', async (t) => {
  const path = join(dir, `${randomUUID()}.db`);
  const type = `t-${randomUUID()}`;
  const transport = await createEmbeddedTransport({ url: `embedded:${path}`, endpoints: [], options: {} });
  t.after(() => transport.close());
  const subscription = transport.consume({
    types: [type],
    group: `g-${randomUUID()}`,
    consumerId: 'c',
    offset: 'earliest',
    prefetch: 10,
    ackTimeoutMs: 30_000,
  });
  t.after(() => subscription.close());
  await subscription.ready;
  const publisher = start('embedded-publisher.ts', [path, type, '20']);
  t.after(() => publisher.process.kill('SIGKILL'));
  const ids: string[] = [];
  const latencies: number[] = [];
  // Bounded: a consumer that is never woken ends here with fewer messages than were published.
  const deadline = setTimeout(() => subscription.close(), 60_000);
  for await (const delivery of subscription) {
    ids.push(delivery.message.id);
    latencies.push(Date.now() - Number(new TextDecoder().decode(delivery.message.body)));
    await delivery.ack();
    if (ids.length === 20) break;
  }
  clearTimeout(deadline);
  assert.equal(await publisher.exited, 0);
  assert.deepEqual(
    ids,
    Array.from({ length: 20 }, (_, i) => `p-${i}`),
  );
  latencies.sort((a, b) => a - b);
  t.diagnostic(`cross-process latency: median ${latencies[latencies.length >> 1]} ms, max ${latencies.at(-1)} ms`);
});
