/**
 * The idempotent inbox under kill -9: a consumer process (test/reliability/fixtures/inbox-consumer.ts) handles
 * messages with an inbox; its handler writes one effect row per message in the inbox's transaction. The test
 * kills it -9 while messages are in flight, one of them committed but not acked (so the broker redelivers it), and
 * starts it again. Counted: sent, effect rows, distinct messages in effects, redeliveries the inbox skipped.
 * Promised: every message has exactly one effect row.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { MessageBus, message } from '../../src/index.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { killAll, startChild } from '../helpers/child.ts';

const consumerScript = new URL('./fixtures/inbox-consumer.ts', import.meta.url).pathname;
const TOTAL = 3000;
const HANG_AT = 1000;

describe('inbox: kill -9 of a consumer with messages in flight', () => {
  let skip: string | undefined;
  let pool: pg.Pool | undefined;
  const buses: MessageBus[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];
  const dir = mkdtempSync(join(tmpdir(), 'busbar-inbox-'));

  before(async () => {
    const rabbit = hostPort(BROKERS.rabbitmq, 5672);
    skip =
      (await brokerSkipReason('rabbitmq', () => tcpReachable(rabbit.host, rabbit.port))) ??
      (await brokerSkipReason('postgres', () => tcpReachable('127.0.0.1', 5432)));
    if (!skip) pool = new pg.Pool({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test', max: 4 });
  });

  after(async () => {
    await killAll();
    for (const cleanup of cleanups) await cleanup().catch(() => {});
    for (const bus of buses) await bus.close();
    await pool?.end();
    rmSync(dir, { recursive: true, force: true });
  });

  async function run(
    t: import('node:test').TestContext,
    broker: string,
    store: string,
    effects: { create(): Promise<void>; rows(): Promise<{ rows: number; distinct: number }> },
    suffix: string,
  ) {
    const type = `inbox-${suffix}`;
    const group = `g-${suffix}`;
    const inboxTable = `inbox_${suffix}`;
    const effectsTable = `effects_${suffix}`;
    await effects.create();
    const bus = await MessageBus.connect(broker);
    buses.push(bus);
    cleanups.push(() => bus.admin().deregisterMessageType(type));
    const batch = Array.from({ length: TOTAL }, (_, n) => message({ n }));
    const args = [broker, type, group, store, inboxTable, effectsTable];
    const dups: string[] = [];
    const onLine = (line: string) => {
      if (line.startsWith('dup ')) dups.push(line);
    };
    const first = startChild(consumerScript, [...args, String(HANG_AT)], onLine);
    await first.waitFor(/^ready$/, 60_000);
    for (let i = 0; i < TOTAL; i += 500) await bus.sendBatch(type, batch.slice(i, i + 500));
    await first.waitFor(new RegExp(`^committed ${HANG_AT}$`), 120_000);
    const before = await effects.rows();
    await first.kill9();
    const second = startChild(consumerScript, args, onLine);
    await second.waitFor(/^ready$/, 60_000);
    let last = { rows: 0, distinct: 0 };
    // No event says the database holds every effect: poll it, bounded.
    const deadline = Date.now() + 180_000;
    while (Date.now() < deadline) {
      last = await effects.rows();
      if (last.distinct >= TOTAL) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await second.kill9();
    const counts = {
      sent: TOTAL,
      effectsAtKill: before.rows,
      effectRows: last.rows,
      distinct: last.distinct,
      redeliveriesSkipped: dups.length,
    };
    t.diagnostic(JSON.stringify(counts));
    assert.equal(last.distinct, TOTAL, 'every message has its effect');
    assert.equal(last.rows, TOTAL, 'no message has two effects');
    assert.ok(
      dups.some((line) => line.startsWith(`dup ${HANG_AT} `)),
      'the committed-but-unacked message came back and the inbox skipped it',
    );
  }

  test('PostgreSQL inbox on RabbitMQ: effects exactly once', { timeout: 300_000 }, async (t) => {
    if (skip) return t.skip(skip);
    const suffix = randomUUID().slice(0, 8);
    const table = `effects_${suffix}`;
    cleanups.push(() => pool!.query(`DROP TABLE IF EXISTS ${table}, inbox_${suffix}`));
    await run(
      t,
      BROKERS.rabbitmq,
      'pg',
      {
        create: async () => {
          await pool!.query(`CREATE TABLE ${table} (n INTEGER NOT NULL, id TEXT NOT NULL)`);
        },
        rows: async () => {
          const r = await pool!.query(`SELECT COUNT(*)::int AS rows, COUNT(DISTINCT n)::int AS distinct FROM ${table}`);
          return r.rows[0] as { rows: number; distinct: number };
        },
      },
      suffix,
    );
  });

  test('SQLite inbox on the embedded broker: effects exactly once', { timeout: 300_000 }, async (t) => {
    const suffix = randomUUID().slice(0, 8);
    const appDb = join(dir, `app-${suffix}.db`);
    const db = new DatabaseSync(appDb);
    db.exec('PRAGMA busy_timeout = 10000');
    cleanups.push(async () => db.close());
    const table = `effects_${suffix}`;
    await run(
      t,
      `embedded:${join(dir, `bus-${suffix}.db`)}`,
      `sqlite:${appDb}`,
      {
        create: async () => {
          db.exec(`CREATE TABLE ${table} (n INTEGER NOT NULL, id TEXT NOT NULL)`);
        },
        rows: async () =>
          db.prepare(`SELECT COUNT(*) AS rows, COUNT(DISTINCT n) AS "distinct" FROM ${table}`).get() as {
            rows: number;
            distinct: number;
          },
      },
      suffix,
    );
  });
});
