/**
 * The inbox's own rules on real PostgreSQL and SQLite: two deliveries of one message at once run the handler once;
 * a failing handler leaves no record (the redelivery runs it); the middleware records after success; bad names are
 * refused. Deliveries are built by hand here (the broker side is covered by inbox-faults.test.ts).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { type Inbox, isBusError, Message, pgInbox, sqliteInbox } from '../../src/index.ts';
import { buildMessage } from '../../src/message/envelope.ts';
import type { Delivery } from '../../src/transport/contract.ts';
import { brokerSkipReason, tcpReachable } from '../helpers/brokers.ts';

function delivery(id: string, attempt = 1): Message {
  const d: Delivery = {
    message: buildMessage('orders', 'test', { id }, { id }),
    attempt,
    leaseUntil: Date.now() + 60_000,
    ack: async () => {},
    nack: async () => {},
  };
  return new Message(d);
}

async function rules(inbox: Inbox<unknown>, effects: () => Promise<number>, write: (tx: unknown) => Promise<void>) {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let runs = 0;
  const handler = inbox.transactional(async (_m, tx) => {
    runs++;
    await gate;
    await write(tx);
  });
  const id = randomUUID();
  const first = Promise.resolve(handler(delivery(id)));
  const second = Promise.resolve(handler(delivery(id, 2)));
  release();
  await Promise.all([first, second]);
  assert.equal(runs, 1, 'two deliveries of one message at once: the handler ran once');
  assert.equal(await effects(), 1);
  assert.equal(inbox.stats().duplicates, 1);

  const failing = randomUUID();
  let attempts = 0;
  const flaky = inbox.transactional(async (_m, tx) => {
    attempts++;
    await write(tx);
    if (attempts === 1) throw new Error('boom');
  });
  await assert.rejects(Promise.resolve(flaky(delivery(failing))), /boom/);
  assert.equal(await inbox.processed(failing), false, 'a failed handler leaves no record');
  assert.equal(await effects(), 1, 'and its writes rolled back');
  await flaky(delivery(failing, 2));
  assert.equal(await effects(), 2);
  assert.equal(await inbox.processed(failing), true);

  let plain = 0;
  const wrapped = inbox.middleware()(async () => {
    plain++;
  });
  const m = randomUUID();
  await wrapped(delivery(m));
  await wrapped(delivery(m, 2));
  assert.equal(plain, 1, 'middleware: skipped once recorded');
  assert.equal(await inbox.prune(3_600_000), 0, 'nothing older than an hour');
}

describe('inbox rules', () => {
  let skip: string | undefined;
  let pool: pg.Pool | undefined;
  const tables: string[] = [];
  before(async () => {
    skip = await brokerSkipReason('postgres', () => tcpReachable('127.0.0.1', 5432));
    if (!skip) pool = new pg.Pool({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test', max: 4 });
  });
  after(async () => {
    for (const table of tables) await pool?.query(`DROP TABLE IF EXISTS ${table}`);
    await pool?.end();
  });

  test('PostgreSQL', async (t) => {
    if (skip) return t.skip(skip);
    const suffix = randomUUID().slice(0, 8);
    const inboxTable = `inbox_rules_${suffix}`;
    const effects = `effects_rules_${suffix}`;
    tables.push(inboxTable, effects);
    await pool!.query(`CREATE TABLE ${effects} (n INTEGER)`);
    const inbox = pgInbox(pool!, { table: inboxTable, scope: 'g' });
    await rules(
      inbox as Inbox<unknown>,
      async () => (await pool!.query(`SELECT COUNT(*)::int AS n FROM ${effects}`)).rows[0].n,
      async (tx) => {
        await (tx as pg.PoolClient).query(`INSERT INTO ${effects} (n) VALUES (1)`);
      },
    );
  });

  test('SQLite', async () => {
    const db = new DatabaseSync(':memory:');
    db.exec('CREATE TABLE effects (n INTEGER)');
    const inbox = sqliteInbox(db, { scope: 'g' });
    await rules(
      inbox as Inbox<unknown>,
      async () => Number((db.prepare('SELECT COUNT(*) AS n FROM effects').get() as { n: number }).n),
      async (tx) => {
        (tx as DatabaseSync).prepare('INSERT INTO effects (n) VALUES (1)').run();
      },
    );
    db.close();
  });

  test('bad arguments say what to pass', () => {
    const db = new DatabaseSync(':memory:');
    assert.throws(
      () => sqliteInbox(db, { table: 'x; DROP TABLE y' }),
      (e: unknown) => isBusError(e, 'BUSBAR_ERR_INVALID_ARGUMENT') && /plain SQL name/.test(e.message),
    );
    assert.throws(
      () => pgInbox({} as never),
      (e: unknown) => isBusError(e, 'BUSBAR_ERR_INVALID_ARGUMENT') && /pg Pool/.test(e.message),
    );
    db.close();
  });
});
