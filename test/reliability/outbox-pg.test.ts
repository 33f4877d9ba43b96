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
