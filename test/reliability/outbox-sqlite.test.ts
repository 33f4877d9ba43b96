/**
 * The SQLite outbox (node:sqlite), relayed to the embedded broker: the app's transaction decides, ids are kept, two
 * relays on one file take turns and keep every message once and in order.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import { MessageBus, SqliteOutbox } from '../../src/index.ts';
import { checkOrderPerKey, readUntil, scratch } from './outbox-helpers.ts';

const { DatabaseSync: Database } = process.getBuiltinModule('node:sqlite') as typeof import('node:sqlite');

async function setup(t: import('node:test').TestContext) {
  const { dir, defer } = scratch(t, 'outbox-sqlite');
  const path = join(dir, 'app.db');
  const db: DatabaseSync = new Database(path, { timeout: 5000 });
  db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY)');
  const outbox = new SqliteOutbox({ path });
  outbox.install(db);
  const bus = await MessageBus.connect(`embedded:${join(dir, 'bus.db')}`);
  defer(() => bus.close());
  defer(() => db.close());
  defer(() => outbox.close());
  return { db, outbox, bus, defer, type: `orders-${Date.now()}` };
}

test('committed messages arrive with their ids, rolled-back ones never', { timeout: 60_000 }, async (t) => {
  const { db, outbox, bus, defer, type } = await setup(t);
  const relay = outbox.relay(bus, { pollMs: 20 });
  defer(() => relay.close());
  const order = (id: number, commit: boolean) => {
    db.exec('BEGIN IMMEDIATE');
    db.prepare('INSERT INTO orders (id) VALUES (?)').run(id);
    const messageId = outbox.send(db, type, { order: id }, { key: 'c1', headers: { a: 'b' } });
    db.exec(commit ? 'COMMIT' : 'ROLLBACK');
    return messageId;
  };
  const kept = order(1, true);
  order(2, false);
  const fence = order(3, true);
  const got = await readUntil(bus, type, (r) => r.some((m) => m.id === fence));
  assert.deepEqual(
    got.map((m) => m.id),
    [kept, fence],
  );
  assert.deepEqual(got[0]!.body, { order: 1 });
  assert.equal(got[0]!.key, 'c1');
  assert.equal(got[0]!.headers.a, 'b');
  await relay.drained();
  assert.equal(outbox.pending(db), 0, 'the relay deletes what it sent');
});

test('two relays on one file: every message once, each key in order', { timeout: 120_000 }, async (t) => {
  const { db, outbox, bus, defer, type } = await setup(t);
  const total = 2000;
  const perKey = new Map<string, number>();
  for (let start = 0; start < total; start += 200) {
    db.exec('BEGIN IMMEDIATE');
    for (let i = start; i < start + 200; i++) {
      const key = `k${i % 7}`;
      const n = perKey.get(key) ?? 0;
      perKey.set(key, n + 1);
      outbox.send(db, type, { key, n }, { key });
    }
    db.exec('COMMIT');
  }
  const relays = [outbox.relay(bus, { batchSize: 100, pollMs: 20 }), outbox.relay(bus, { batchSize: 100, pollMs: 20 })];
  defer(() => Promise.all(relays.map((r) => r.close())));
  const got = await readUntil(bus, type, (r) => r.length >= total);
  assert.equal(new Set(got.map((m) => m.id)).size, total);
  checkOrderPerKey(got);
  await Promise.all(relays.map((r) => r.close()));
  assert.equal(relays[0]!.relayed + relays[1]!.relayed, total);
  assert.equal(outbox.pending(db), 0);
});

test('bad input: clear errors', () => {
  assert.throws(() => new SqliteOutbox({ path: '' }), { code: 'BUSBAR_ERR_INVALID_ARGUMENT' });
  assert.throws(() => new SqliteOutbox({ path: ':memory:' }), { code: 'BUSBAR_ERR_INVALID_ARGUMENT' });
  assert.throws(() => new SqliteOutbox({ path: '/tmp/x.db', table: 'a-b' }), { code: 'BUSBAR_ERR_INVALID_ARGUMENT' });
  const outbox = new SqliteOutbox({ path: '/tmp/never-opened.db' });
  assert.throws(() => outbox.send({} as DatabaseSync, 'orders', 'x'), { code: 'BUSBAR_ERR_INVALID_ARGUMENT' });
});
