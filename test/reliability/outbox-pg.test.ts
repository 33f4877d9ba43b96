/**
 * The PostgreSQL outbox on the machine's PostgreSQL (each test its own tables), relayed to the embedded broker:
 * transactions decide what is sent, the relay wakes on NOTIFY alone, and several relays at once send each message
 * once and each key in order.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { MessageBus, PgOutbox } from '../../src/index.ts';
import { laneOf } from '../../src/reliability/outbox/common.ts';
import type { TransportMessage } from '../../src/transport/contract.ts';
import { checkOrderPerKey, freshTable, PG_URL, pgSkipReason, readUntil, scratch } from './outbox-helpers.ts';

const skip = await pgSkipReason();

describe('PostgreSQL outbox', { skip, timeout: 120_000 }, () => {
  let pool: pg.Pool;
  const tables: string[] = [];
  before(() => {
    pool = new pg.Pool({ connectionString: PG_URL, max: 8 });
  });
  after(async () => {
    for (const table of tables) {
      await pool.query(`DROP TABLE IF EXISTS "${table}", "${table}_lanes", "${table}_orders"`).catch(() => {});
    }
    await pool.end();
  });

  async function setup(t: import('node:test').TestContext) {
    const table = freshTable();
    tables.push(table);
    const outbox = new PgOutbox({ connectionString: PG_URL, table });
    await outbox.install();
    await pool.query(`CREATE TABLE "${table}_orders" (id int PRIMARY KEY)`);
    const { dir, defer } = scratch(t, 'outbox-pg');
    const bus = await MessageBus.connect(`embedded:${join(dir, 'bus.db')}`);
    defer(() => bus.close());
    defer(() => outbox.close());
    return { table, outbox, bus, defer, type: `orders-${table}` };
  }

  /** One application transaction: an order row and its message, committed or rolled back. */
  async function order(outbox: PgOutbox, table: string, type: string, id: number, commit: boolean) {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`INSERT INTO "${table}_orders" (id) VALUES ($1)`, [id]);
      const messageId = await outbox.send(
        client,
        type,
        { order: id },
        { key: `customer-${id % 3}`, headers: { a: 'b' } },
      );
      await client.query(commit ? 'COMMIT' : 'ROLLBACK');
      return messageId;
    } finally {
      client.release();
    }
  }

  test('committed messages arrive with their ids, rolled-back ones never; NOTIFY alone wakes the relay', async (t) => {
    const { table, outbox, bus, defer, type } = await setup(t);
    // A poll longer than the test: only LISTEN/NOTIFY can bring these messages.
    const relay = outbox.relay(bus, { pollMs: 600_000 });
    defer(() => relay.close());
    const kept = await order(outbox, table, type, 1, true);
    await order(outbox, table, type, 2, false);
    const fence = await order(outbox, table, type, 3, true);
    const got = await readUntil(bus, type, (r) => r.some((m) => m.id === fence));
    assert.deepEqual(
      got.map((m) => m.id),
      [kept, fence],
    );
    assert.deepEqual(got[0]!.body, { order: 1 });
    assert.equal(got[0]!.key, 'customer-1');
    assert.equal(got[0]!.headers.a, 'b');
    await relay.drained();
    assert.equal(await outbox.pending(), 0, 'the relay deletes what it sent');
  });

  test('a transaction that commits after a later one: both arrive, neither waits for the other', async (t) => {
    const { table, outbox, bus, defer, type } = await setup(t);
    const relay = outbox.relay(bus, { pollMs: 600_000 });
    defer(() => relay.close());
    // The early transaction takes its id (and its row's sequence number) first and stays open: the relay's cursor
    // must not pass its row while the later transaction's row is sent, or the early one would be skipped.
    const early = await pool.connect();
    defer(() => early.release());
    await early.query('BEGIN');
    const earlyId = await outbox.send(early, type, 'early', { key: 'k' });
    const laterId = await order(outbox, table, type, 1, true);
    const first = await readUntil(bus, type, (r) => r.some((m) => m.id === laterId));
    assert.deepEqual(
      first.map((m) => m.id),
      [laterId],
      'the later transaction is sent while the early one is open',
    );
    await early.query('COMMIT');
    const all = await readUntil(bus, type, (r) => r.some((m) => m.id === earlyId));
    assert.deepEqual(all.map((m) => m.id).sort(), [earlyId, laterId].sort());
    await relay.drained();
    assert.equal(await outbox.pending(), 0);
  });

  test('sent rows are deleted: after the relay caught up the table is empty', async (t) => {
    const { table, outbox, bus, defer, type } = await setup(t);
    for (let i = 0; i < 5; i++) await order(outbox, table, type, i, true);
    const relay = outbox.relay(bus, { batchSize: 2, pollMs: 600_000 });
    defer(() => relay.close());
    await readUntil(bus, type, (r) => r.length >= 5);
    await relay.drained();
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM "${table}"`);
    assert.equal(rows[0].n, 0, 'the rows behind the cursors are deleted once the relay caught up');
  });

  test('a table of the earlier layout (no cursors) is migrated by the relay and its rows sent first, in order', async (t) => {
    const table = freshTable();
    tables.push(table);
    // The layout busbar created before cursors, and rows its writers left (key 'k', in that key's lane, n = 0..5).
    await pool.query(`CREATE TABLE "${table}" (seq bigserial PRIMARY KEY, id text NOT NULL, type text NOT NULL,
      key text, lane smallint NOT NULL, source text NOT NULL, time text NOT NULL, content_type text NOT NULL,
      headers jsonb NOT NULL, body bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
    await pool.query(`CREATE INDEX "${table}_lane_seq" ON "${table}" (lane, seq)`);
    await pool.query(`CREATE TABLE "${table}_lanes" (lane smallint PRIMARY KEY)`);
    await pool.query(`INSERT INTO "${table}_lanes" (lane) SELECT generate_series(0, 15)`);
    const type = `orders-${table}`;
    const old = Array.from({ length: 6 }, (_, n) => ({ id: `old-${n}`, key: 'k', n }));
    for (const m of old) {
      await pool.query(
        `INSERT INTO "${table}" (id, type, key, lane, source, time, content_type, headers, body) ` +
          `VALUES ($1, $2, 'k', $4, 'app://old', '2026-01-01T00:00:00Z', 'application/json', '{}', $3)`,
        [m.id, type, Buffer.from(JSON.stringify({ key: m.key, n: m.n })), laneOf({ key: 'k' } as TransportMessage)],
      );
    }
    const outbox = new PgOutbox({ connectionString: PG_URL, table });
    const { dir, defer } = scratch(t, 'outbox-pg');
    const bus = await MessageBus.connect(`embedded:${join(dir, 'bus.db')}`);
    defer(() => bus.close());
    defer(() => outbox.close());
    const relay = outbox.relay(bus, { pollMs: 600_000 });
    defer(() => relay.close());
    const got = await readUntil(bus, type, (r) => r.length >= old.length);
    assert.deepEqual(
      got.map((m) => m.id),
      old.map((m) => m.id),
    );
    // Written after the migration (key 'k', n = 6, 7): they come after the old rows.
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await outbox.sendBatch(client, type, [
        { body: { key: 'k', n: 6 }, options: { key: 'k' } },
        { body: { key: 'k', n: 7 }, options: { key: 'k' } },
      ]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const all = await readUntil(bus, type, (r) => r.length >= old.length + 2);
    checkOrderPerKey(all);
    await relay.drained();
    assert.equal(await outbox.pending(), 0);
    const { rows } = await pool.query(`SELECT count(*)::int AS n, to_regclass($1) IS NULL AS dropped FROM "${table}"`, [
      `"${table}_lane_seq"`,
    ]);
    assert.deepEqual(rows[0], { n: 0, dropped: true });
  });

  test('three relays at once: every message once, each key in order', async (t) => {
    const { outbox, bus, defer, type } = await setup(t);
    const total = 3000;
    const keys = 20;
    const perKey = new Map<string, number>();
    for (let start = 0; start < total; start += 250) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await outbox.sendBatch(
          client,
          type,
          Array.from({ length: 250 }, (_, i) => {
            const key = `k${(start + i) % keys}`;
            const n = perKey.get(key) ?? 0;
            perKey.set(key, n + 1);
            return { body: { key, n }, options: { key } };
          }),
        );
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    }
    const relays = [1, 2, 3].map(() => outbox.relay(bus, { batchSize: 100, pollMs: 50 }));
    defer(() => Promise.all(relays.map((r) => r.close())));
    const got = await readUntil(bus, type, (r) => r.length >= total);
    assert.equal(new Set(got.map((m) => m.id)).size, total, 'no message twice');
    checkOrderPerKey(got);
    t.diagnostic(`relayed per relay: ${relays.map((r) => r.relayed).join(', ')}`);
    await Promise.all(relays.map((r) => r.close()));
    assert.equal(
      relays.reduce((n, r) => n + r.relayed, 0),
      total,
    );
    assert.equal(await outbox.pending(), 0);
  });

  test("the 'postgres' package's transaction works as well: committed arrives, rolled back never", async (t) => {
    const { outbox, bus, defer, type } = await setup(t);
    const sql = postgres(PG_URL, { max: 1, onnotice: () => {} });
    defer(() => sql.end({ timeout: 5 }));
    const relay = outbox.relay(bus, { pollMs: 600_000 });
    defer(() => relay.close());
    const kept = await sql.begin((tx) => outbox.send(tx, type, { via: 'postgres.js' }, { key: 'k' }));
    await sql
      .begin(async (tx) => {
        await outbox.send(tx, type, 'never');
        throw new Error('roll back');
      })
      .catch(() => {});
    const fence = await sql.begin((tx) => outbox.send(tx, type, 'fence'));
    const got = await readUntil(bus, type, (r) => r.some((m) => m.id === fence));
    assert.deepEqual(
      got.map((m) => m.id),
      [kept, fence],
    );
    assert.deepEqual(got[0]!.body, { via: 'postgres.js' });
    assert.equal(got[0]!.key, 'k');
  });

  test('bad input: a clear error, nothing written', async (t) => {
    const { outbox, type } = await setup(t);
    assert.throws(() => new PgOutbox({ connectionString: PG_URL, table: 'bad name; drop' }), {
      code: 'BUSBAR_ERR_INVALID_ARGUMENT',
    });
    assert.throws(() => new PgOutbox({}), { code: 'BUSBAR_ERR_INVALID_ARGUMENT' });
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await assert.rejects(outbox.send(client, 'bad type!', 'x'), { code: 'BUSBAR_ERR_INVALID_TYPE_NAME' });
      await assert.rejects(outbox.send({} as never, type, 'x'), { code: 'BUSBAR_ERR_INVALID_ARGUMENT' });
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    assert.equal(await outbox.pending(), 0);
  });
});
