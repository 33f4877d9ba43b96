/**
 * Transactional outbox: how fast a relay moves messages from the outbox to the broker, beside plain publishing of
 * the same messages to the same broker (bus.sendBatch, same batch size, same confirms). Goal: the relay reaches at
 * least 0.8x plain publishing. Setup writes one outbox table per round (warm-up included) so that only relaying is
 * timed; a round ends when the relay has published every row and, closed, deleted them (PostgreSQL deletes sent rows
 * in bulk behind its cursors, the last of them when the relay stops).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { MessageBus, PgOutbox, type Relay, SqliteOutbox } from '../src/index.ts';
import type { BenchCase } from './harness.ts';
import { BODY, Cleanup, defineCase, freshName, type Tally } from './lib/case.ts';

const N = 20_000;
const BATCH = 500;
const PG_URL = process.env.BUSBAR_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.BUSBAR_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

interface Store {
  /** Writes N messages of `type` in transactions of BATCH; returns a relay factory for them. */
  fill(type: string): Promise<() => Relay>;
  close(): Promise<void>;
}

async function pgStore(): Promise<Store> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  const tables: string[] = [];
  const outboxes: PgOutbox[] = [];
  return {
    async fill(type) {
      const table = freshName('outbox').replaceAll('-', '_');
      tables.push(table);
      const outbox = new PgOutbox({ connectionString: PG_URL, table });
      outboxes.push(outbox);
      await outbox.install(client);
      for (let i = 0; i < N; i += BATCH) {
        await client.query('BEGIN');
        await outbox.sendBatch(
          client,
          type,
          Array.from({ length: BATCH }, () => ({ body: BODY })),
        );
        await client.query('COMMIT');
      }
      return () => outbox.relay(bus(), { publishSize: BATCH });
    },
    async close() {
      for (const table of tables) await client.query(`DROP TABLE IF EXISTS "${table}", "${table}_lanes"`);
      for (const outbox of outboxes) await outbox.close();
      await client.end();
    },
  };
}

async function sqliteStore(dir: string): Promise<Store> {
  const { DatabaseSync } = process.getBuiltinModule('node:sqlite') as typeof import('node:sqlite');
  const path = join(dir, 'app.db');
  const db = new DatabaseSync(path);
  db.exec('PRAGMA journal_mode = WAL');
  return {
    async fill(type) {
      const table = freshName('outbox').replaceAll('-', '_');
      const outbox = new SqliteOutbox({ path, table });
      outbox.install(db);
      for (let i = 0; i < N; i += BATCH) {
        db.exec('BEGIN IMMEDIATE');
        for (let j = 0; j < BATCH; j++) outbox.send(db, type, BODY);
        db.exec('COMMIT');
      }
      return () => outbox.relay(bus(), { publishSize: BATCH });
    },
    async close() {
      db.close();
    },
  };
}

let current: MessageBus | undefined;
const bus = () => current!;

async function relayRound(start: () => Relay, tally: Tally): Promise<void> {
  const relay = start();
  await new Promise<void>((resolve, reject) => {
    relay.on('relayed', (count) => {
      tally.count(count);
      if (relay.relayed >= N) resolve();
    });
    relay.on('error', reject);
  });
  await relay.close();
}

async function plainRound(type: string, tally: Tally): Promise<void> {
  const batch = Array.from({ length: BATCH }, () => BODY);
  for (let i = 0; i < N; i += BATCH) {
    await bus().sendBatch(type, batch);
    tally.count(BATCH);
  }
}

function outboxCase(
  database: 'postgres' | 'sqlite',
  brokerName: string,
  brokerUrl: (dir: string) => string,
): BenchCase {
  const cleanup = new Cleanup();
  const relays: Array<() => Relay> = [];
  const type = freshName(`outbox-${database}`);
  return defineCase({
    name: `${database} outbox relay x${BATCH}`,
    transport: brokerName,
    messages: N,
    async setup({ rounds }) {
      const dir = mkdtempSync(join(tmpdir(), 'busbar-bench-outbox-'));
      cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
      current = await MessageBus.connect(brokerUrl(dir));
      const opened = current;
      cleanup.add(() => opened.close());
      cleanup.add(() =>
        opened
          .admin()
          .deregisterMessageType(type)
          .catch(() => {}),
      );
      const store = database === 'postgres' ? await pgStore() : await sqliteStore(dir);
      cleanup.add(() => store.close());
      for (let round = 0; round <= rounds; round++) relays.push(await store.fill(type));
    },
    teardown: () => cleanup.run(),
    subject: (tally) => relayRound(relays.shift()!, tally),
    baseline: (tally) => plainRound(type, tally),
  });
}

export default async function cases(): Promise<BenchCase[]> {
  const embedded = (dir: string) => `embedded:${join(dir, 'bus.db')}`;
  return [
    outboxCase('postgres', 'embedded', embedded),
    outboxCase('sqlite', 'embedded', embedded),
    outboxCase('postgres', 'redis', () => REDIS_URL),
  ];
}
