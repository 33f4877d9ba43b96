/**
 * Range leases (schema 2, src/transports/embedded/leases.ts): what the file records while unkeyed messages are in
 * flight, read back with node:sqlite the way another process would, and the upgrade of a version 1 file.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import type { ConsumeOptions, Delivery, Subscription, Transport } from '../../src/transport/contract.ts';
import createEmbeddedTransport from '../../src/transports/embedded/index.ts';

type TestContext = { after(fn: () => unknown): void };

const dir = mkdtempSync(join(tmpdir(), 'busbar-embedded-leases-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

async function open(t: TestContext, path: string): Promise<Transport> {
  const transport = await createEmbeddedTransport({ url: `embedded:${path}`, endpoints: [], options: {} });
  t.after(() => transport.close());
  return transport;
}

function publish(transport: Transport, type: string, bodies: string[], key?: string): Promise<void> {
  const time = new Date().toISOString();
  return transport.publish(
    type,
    bodies.map((body) => ({
      id: randomUUID(),
      type,
      source: 'test',
      time,
      contentType: 'text/plain',
      key,
      headers: {},
      body: new TextEncoder().encode(body),
    })),
  );
}

function consume(t: TestContext, transport: Transport, options: Partial<ConsumeOptions> & { types: string[] }) {
  const subscription = transport.consume({
    group: 'g',
    consumerId: `c-${randomUUID()}`,
    offset: 'earliest',
    prefetch: 100,
    ackTimeoutMs: 30_000,
    ...options,
  });
  t.after(() => subscription.close());
  return subscription;
}

/** The next `count` deliveries (the test's own timeout bounds the wait). */
function reader(subscription: Subscription) {
  const iterator = subscription[Symbol.asyncIterator]();
  return async (count: number): Promise<Delivery[]> => {
    const got: Delivery[] = [];
    while (got.length < count) {
      const next = await iterator.next();
      if (next.done) break;
      got.push(next.value);
    }
    return got;
  };
}

const text = (d: Delivery) => new TextDecoder().decode(d.message.body);

/** The file's record of group g of `type`, as another process reads it. */
function file(path: string, type: string) {
  const db = new DatabaseSync(path, { timeout: 5000 });
  try {
    const runs = db
      .prepare('SELECT first_seq, last_seq, attempt, owner IS NOT NULL AS held FROM leases WHERE type = ? ORDER BY 1')
      .all(type)
      .map((r) => [r.first_seq, r.last_seq, r.attempt, r.held]);
    const pending = db
      .prepare('SELECT seq, attempt FROM pending WHERE type = ? ORDER BY seq')
      .all(type)
      .map((r) => [r.seq, r.attempt]);
    return { runs, pending };
  } finally {
    db.close();
  }
}

test('unkeyed messages are leased as runs: in-order acks move a run start, others split it, close returns it', async (t) => {
  const path = join(dir, `${randomUUID()}.db`);
  const transport = await open(t, path);
  const ty = `t-${randomUUID()}`;
  await publish(transport, ty, ['m1', 'm2', 'm3', 'm4', 'm5']);
  await publish(transport, ty, ['k1'], 'K');
  await publish(transport, ty, ['m6', 'm7']);
  const first = consume(t, transport, { types: [ty] });
  const got = await reader(first)(8);
  assert.deepEqual(got.map(text), ['m1', 'm2', 'm3', 'm4', 'm5', 'k1', 'm6', 'm7']);
  // The seq of each delivery: what the file's rows name.
  const s = got.map((d) => (d as unknown as { seq: number }).seq);
  // One row per run of unkeyed messages (the keyed one ends a run and keeps its own pending row).
  assert.deepEqual(file(path, ty), {
    runs: [
      [s[0], s[4], 1, 1],
      [s[6], s[7], 1, 1],
    ],
    pending: [[s[5], 1]],
  });
  await Promise.all([got[0]!.ack(), got[1]!.ack()]);
  assert.deepEqual(file(path, ty).runs[0], [s[2], s[4], 1, 1], 'acks in order move the start');
  await got[3]!.ack();
  assert.deepEqual(file(path, ty).runs.slice(0, 2), [
    [s[2], s[2], 1, 1],
    [s[4], s[4], 1, 1],
  ]);
  await Promise.all([got[5]!.ack(), got[7]!.ack()]);
  assert.deepEqual(file(path, ty), {
    runs: [
      [s[2], s[2], 1, 1],
      [s[4], s[4], 1, 1],
      [s[6], s[6], 1, 1],
    ],
    pending: [],
  });
  const [stats] = await transport.admin.stats(ty);
  assert.deepEqual(
    stats!.groups.map((g) => [g.unread, g.inflight]),
    [[3, 3]],
  );
  await first.close();
  assert.deepEqual(
    file(path, ty).runs.map((r) => r[3]),
    [0, 0, 0],
    'closing returns the runs',
  );
  const again = await reader(consume(t, transport, { types: [ty] }))(3);
  assert.deepEqual(again.map(text).sort(), ['m3', 'm5', 'm6']);
  assert.deepEqual(
    again.map((d) => d.attempt),
    [2, 2, 2],
  );
  await Promise.all(again.map((d) => d.ack()));
  assert.deepEqual(file(path, ty), { runs: [], pending: [] });
});

test('a nack inside a run redelivers only that message; an expired run is taken in parts by a smaller prefetch', async (t) => {
  const path = join(dir, `${randomUUID()}.db`);
  const transport = await open(t, path);
  const ty = `t-${randomUUID()}`;
  await publish(transport, ty, ['a', 'b', 'c', 'd']);
  const read = reader(consume(t, transport, { types: [ty], group: 'nacks' }));
  const got = await read(4);
  await got[1]!.nack();
  const [redelivered] = await read(1);
  assert.equal(text(redelivered!), 'b');
  assert.equal(redelivered!.attempt, 2);
  await got[1]!.ack();
  await Promise.all([got[0]!.ack(), got[2]!.ack(), got[3]!.ack(), redelivered!.ack()]);
  assert.deepEqual(file(path, ty), { runs: [], pending: [] });

  // A consumer that takes a run and never settles it (its prefetch is full: it claims no more): its lease expires
  // and the group gets the run back.
  const other = `t-${randomUUID()}`;
  await publish(transport, other, ['e1', 'e2', 'e3', 'e4', 'e5']);
  const dead = await reader(consume(t, transport, { types: [other], prefetch: 5, ackTimeoutMs: 200 }))(5);
  assert.equal(dead.length, 5);
  const taker = reader(consume(t, transport, { types: [other], prefetch: 2 }));
  const part = await taker(2);
  assert.deepEqual(part.map(text), ['e1', 'e2']);
  // At least 2: the stalled member keeps its subscription, so (contract rule 3) its expired slots are free again and
  // it may take a run back and let it expire once more before the taker gets it, on a busy machine.
  assert.ok(
    part.every((d) => d.attempt >= 2),
    `attempts ${part.map((d) => d.attempt)}`,
  );
  const runs = file(path, other).runs;
  assert.equal(runs.length, 2, 'the part taken is a run of its own; the rest of the run stays ready');
  await Promise.all(part.map((d) => d.ack()));
  const rest = await taker(2);
  await Promise.all(rest.map((d) => d.ack()));
  rest.push(...(await taker(1)));
  await rest[2]!.ack();
  assert.deepEqual(rest.map(text), ['e3', 'e4', 'e5']);
  assert.ok(
    rest.every((d) => d.attempt >= 2),
    `attempts ${rest.map((d) => d.attempt)}`,
  );
  assert.deepEqual(file(path, other).runs, []);
});

test('a version 1 file is upgraded in place: its pending rows keep their meaning', async (t) => {
  const path = join(dir, `${randomUUID()}.db`);
  const ty = `t-${randomUUID()}`;
  const first = await createEmbeddedTransport({ url: `embedded:${path}`, endpoints: [], options: {} });
  await publish(first, ty, ['expired', 'acked', 'returned']);
  await first.close();
  // What busbar 1 left behind: no leases table, one pending row per delivered message.
  const db = new DatabaseSync(path);
  const [s1, , s3] = db
    .prepare('SELECT seq FROM messages WHERE type = ? ORDER BY seq')
    .all(ty)
    .map((r) => r.seq as number);
  db.exec('DROP TABLE leases; PRAGMA user_version = 1');
  db.prepare('INSERT INTO groups VALUES (?, ?, ?, ?)').run(ty, 'old', s3! + 1, Date.now());
  const insert = db.prepare('INSERT INTO pending VALUES (?, ?, ?, NULL, 1, ?, 0, ?)');
  insert.run(ty, 'old', s1!, Date.now() - 1000, 'dead#1');
  insert.run(ty, 'old', s3!, 0, null);
  db.close();

  const transport = await open(t, path);
  const check = new DatabaseSync(path);
  const version = check.prepare('PRAGMA user_version').get() as { user_version: number };
  const tables = check.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name = 'leases'").get() as { n: number };
  check.close();
  assert.deepEqual([version.user_version, tables.n], [2, 1]);
  const got = await reader(consume(t, transport, { types: [ty], group: 'old' }))(2);
  assert.deepEqual(got.map(text).sort(), ['expired', 'returned']);
  assert.deepEqual(
    got.map((d) => d.attempt),
    [2, 2],
  );
});

test('retention that trims part of a leased run leaves the rest leased, counted and ackable', async (t) => {
  const path = join(dir, `${randomUUID()}.db`);
  const transport = await open(t, path);
  const ty = `t-${randomUUID()}`;
  await publish(transport, ty, ['r1', 'r2', 'r3', 'r4']);
  const got = await reader(consume(t, transport, { types: [ty] }))(4);
  // Two bytes left: the two oldest messages (two bytes each) go.
  await transport.admin.setRetention(ty, { maxBytes: 4 });
  const [stats] = await transport.admin.stats(ty);
  assert.deepEqual([stats!.depth, ...stats!.groups.map((g) => [g.unread, g.inflight])], [2, [2, 2]]);
  await Promise.all(got.map((d) => d.ack()));
  assert.deepEqual(file(path, ty), { runs: [], pending: [] });
});
