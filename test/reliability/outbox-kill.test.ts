/**
 * kill -9 of the relay mid-batch: a real `busbar relay` child process relays a large outbox to the embedded broker,
 * is killed with SIGKILL while it sends, and a second relay finishes. Counted by id: every accepted message is
 * delivered, nothing else is, no message arrives twice before the kill, and repeats after it are the killed relay's
 * unfinished batch, sent again with the same ids. PostgreSQL and SQLite outboxes.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import pg from 'pg';
import { type Message, MessageBus, PgOutbox, SqliteOutbox } from '../../src/index.ts';
import { type Running, start } from '../cli/process.ts';
import { checkOrderPerKey, freshTable, PG_URL, pgSkipReason, scratch } from './outbox-helpers.ts';

const TOTAL = 20_000;
const PER_TRANSACTION = 500;
/** Rows per relay transaction, published in broker calls of 500: the kill has four calls' time to land mid-batch. */
const BATCH = 2000;
const KEYS = 10;

interface Case {
  name: string;
  skip(): Promise<string | undefined>;
  /** Writes TOTAL messages in transactions; returns the ids the app was told were committed, and the outbox URL. */
  fill(
    dir: string,
    table: string,
    type: string,
  ): Promise<{ accepted: string[]; url: string; pending(): Promise<number> }>;
}

function bodies(start: number): Array<{ key: string; n: number }> {
  return Array.from({ length: PER_TRANSACTION }, (_, i) => {
    const index = start + i;
    return { key: `k${index % KEYS}`, n: Math.floor(index / KEYS) };
  });
}

const CASES: Case[] = [
  {
    name: 'PostgreSQL',
    skip: pgSkipReason,
    async fill(_dir, table, type) {
      const outbox = new PgOutbox({ connectionString: PG_URL, table });
      await outbox.install();
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      const accepted: string[] = [];
      try {
        for (let startAt = 0; startAt < TOTAL; startAt += PER_TRANSACTION) {
          await client.query('BEGIN');
          const ids = await outbox.sendBatch(
            client,
            type,
            bodies(startAt).map((body) => ({ body, options: { key: body.key } })),
          );
          await client.query('COMMIT');
          accepted.push(...ids);
        }
      } finally {
        await client.end();
      }
      return {
        accepted,
        url: PG_URL,
        pending: () => outbox.pending(),
        close: () => outbox.close(),
        drop: () => undefined,
      } as never;
    },
  },
  {
    name: 'SQLite',
    skip: async () => undefined,
    async fill(dir, table, type) {
      const path = join(dir, 'app.db');
      const { DatabaseSync } = process.getBuiltinModule('node:sqlite') as typeof import('node:sqlite');
      const db = new DatabaseSync(path, { timeout: 5000 });
      const outbox = new SqliteOutbox({ path, table });
      outbox.install(db);
      const accepted: string[] = [];
      for (let startAt = 0; startAt < TOTAL; startAt += PER_TRANSACTION) {
        db.exec('BEGIN IMMEDIATE');
        const ids = bodies(startAt).map((body) => outbox.send(db, type, body, { key: body.key }));
        db.exec('COMMIT');
        accepted.push(...ids);
      }
      db.close();
      return { accepted, url: `sqlite:${path}`, pending: async () => outbox.pending() } as never;
    },
  },
];

for (const c of CASES) {
  describe(`${c.name} outbox: kill -9 of the relay mid-batch`, { skip: await c.skip(), timeout: 240_000 }, () => {
    test('accepted = delivered; repeats only after the kill, with the same ids', async (t) => {
      const { dir, defer } = scratch(t, 'outbox-kill');
      const table = freshTable('kill');
      const type = `kill-${table}`;
      const broker = `embedded:${join(dir, 'bus.db')}`;
      if (c.name === 'PostgreSQL') {
        defer(async () => {
          const client = new pg.Client({ connectionString: PG_URL });
          await client.connect();
          await client.query(`DROP TABLE IF EXISTS "${table}", "${table}_lanes"`);
          await client.end();
        });
      }
      const { accepted, url, pending } = await c.fill(dir, table, type);
      const acceptedSet = new Set(accepted);

      const bus = await MessageBus.connect(broker);
      defer(() => bus.close());
      const children: Running[] = [];
      defer(async () => {
        for (const child of children) {
          if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL');
          await child.exit;
        }
      });
      const relay = () => {
        const args = ['relay', '--outbox', url, '--table', table, '--batch', String(BATCH), '--broker', broker];
        // The second SQLite relay takes over once the killed one's lease ran out.
        if (url.startsWith('sqlite:')) args.push('--lease-ms', '2000');
        const child = start(args);
        children.push(child);
        return child;
      };

      // Killed once a quarter is relayed and the broker holds messages whose rows are still in the outbox: in the
      // middle of a batch, after the broker confirmed part of it and before the transaction that deletes it commits.
      const first = relay();
      const depth = async () => (await bus.admin().stats(type))[0]?.depth ?? 0;
      for (;;) {
        const left = await pending();
        if (left <= TOTAL * 0.75 && (await depth()) > TOTAL - left) break;
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      first.child.kill('SIGKILL');
      const firstExit = await first.exit;
      assert.equal(firstExit.signal, 'SIGKILL');
      // Everything the killed relay published, in the order the broker took it.
      const [atKill] = await bus.admin().stats(type);
      const publishedBeforeKill = atKill!.depth;

      const second = relay();
      await second.printed('busbar relay:');
      while ((await pending()) > 0) await new Promise((resolve) => setTimeout(resolve, 20));
      second.child.kill('SIGTERM');
      const secondExit = await second.exit;
      assert.equal(secondExit.code, 0, secondExit.stderr);
      const relayedBySecond = Number(/stopped after (\d+)/.exec(secondExit.stdout.toString())?.[1]);
      assert.ok(relayedBySecond > 0, 'the kill came before the first relay was done');

      // Counted by id at the end: the broker keeps publish order, so the first publishedBeforeKill arrivals are the
      // killed relay's and the rest the second relay's.
      const [atEnd] = await bus.admin().stats(type);
      const consumer = bus.consumer({ consumerGroup: 'count', messageTypes: [type], offset: 'earliest' });
      defer(() => consumer.close());
      const arrivals: Array<{ message: Message; afterKill: boolean }> = [];
      const seen = new Map<string, number>();
      const acks: Promise<void>[] = [];
      while (arrivals.length < atEnd!.depth) {
        const m = await consumer.receive({ timeout: 60_000 });
        assert.ok(m, `expected ${atEnd!.depth} messages, read ${arrivals.length}`);
        seen.set(m.id, (seen.get(m.id) ?? 0) + 1);
        arrivals.push({ message: m, afterKill: arrivals.length >= publishedBeforeKill });
        acks.push(m.ack());
        if (acks.length >= 500) await Promise.all(acks.splice(0));
      }
      await Promise.all(acks);
      const deliveredBeforeKill = publishedBeforeKill;

      const strangers = [...seen.keys()].filter((id) => !acceptedSet.has(id));
      const missing = accepted.filter((id) => !seen.has(id));
      const repeats = arrivals.length - seen.size;
      const repeatedIds = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
      t.diagnostic(
        `${c.name}: accepted ${accepted.length}, delivered ${seen.size} distinct (${arrivals.length} arrivals), ` +
          `${deliveredBeforeKill} published before the kill, repeats ${repeats} (${repeatedIds.length} ids), ` +
          `relayed by the second relay: ${relayedBySecond}`,
      );
      assert.deepEqual(missing, [], 'every accepted message is delivered');
      assert.deepEqual(strangers, [], 'nothing but accepted messages is delivered');
      // A repeat's first copy may predate the kill (the killed relay published it), its second copy may not.
      const secondCopies = new Map<string, boolean>();
      for (const { message, afterKill } of arrivals) {
        if (secondCopies.has(message.id)) assert.ok(afterKill, `${message.id} arrived twice before the kill`);
        secondCopies.set(message.id, afterKill);
      }
      assert.ok(repeats <= BATCH, `at most the killed relay's one unfinished batch comes again, got ${repeats}`);
      // Order per key holds over the first copy of each message.
      const firstCopies: Message[] = [];
      const once = new Set<string>();
      for (const { message } of arrivals) {
        if (once.has(message.id)) continue;
        once.add(message.id);
        firstCopies.push(message);
      }
      checkOrderPerKey(firstCopies);
    });
  });
}
