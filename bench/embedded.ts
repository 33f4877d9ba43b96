/**
 * embedded vs raw node:sqlite on the same kind of file (WAL, synchronous=NORMAL, same table and index, a file of its
 * own beside busbar's). The raw side writes one INSERT transaction per publish call (per message for the x1 cases),
 * and consumes by selecting a batch of rows from a cursor and deleting them with one range DELETE in one transaction:
 * batches of busbar's prefetch up to 100, or of 1 where busbar's side awaits every ack (one commit per message on
 * both sides). It has no
 * leases: busbar claims each batch (a lease per row, kept in the file so another process can take over a dead
 * consumer's messages) and settles each message on its own row when it is acked.
 * - `transport.publish …, 8 concurrent`: 8 publishers at once (group commit merges their batches), vs the raw loop.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { TransportMessage } from '../src/transport/contract.ts';
import { messagesOf } from './lib/case.ts';
import { BATCH, envCase, type RawClient, type TransportBench, transportCases } from './lib/transport-bench.ts';

const SIZES = { batched: 10_000, singles: 2_000, consumed: 10_000, awaited: 2_000 };
const CONCURRENT = 8;
/** Messages per round of the concurrent case: a whole number of batches for each publisher. */
const CONCURRENT_MESSAGES = CONCURRENT * BATCH * 12;

/** The raw side: the same table shape busbar uses, written the plain way. */
async function connectRaw(url: string) {
  const db = new DatabaseSync(`${url.slice('embedded:'.length)}-raw.db`);
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL');
  db.exec(`CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, id TEXT, source TEXT,
    time TEXT, content_type TEXT, key TEXT, headers TEXT, body BLOB NOT NULL, size INTEGER NOT NULL, published_ms INTEGER NOT NULL);
    CREATE INDEX messages_by_type ON messages (type, seq)`);
  const insert = db.prepare(
    'INSERT INTO messages (type, id, source, time, content_type, key, headers, body, size, published_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const select = db.prepare(
    'SELECT seq, id, source, time, content_type, key, headers, body FROM messages WHERE type = ? AND seq > ? ORDER BY seq LIMIT ?',
  );
  const remove = db.prepare('DELETE FROM messages WHERE type = ? AND seq <= ?');
  const cursors = new Map<string, number>();
  const publish = async (type: string, messages: TransportMessage[]) => {
    const now = Date.now();
    db.exec('BEGIN IMMEDIATE');
    for (const m of messages) {
      insert.run(type, m.id, m.source, m.time, m.contentType, null, null, m.body, m.body.byteLength, now);
    }
    db.exec('COMMIT');
  };
  return {
    publish,
    async consume(type, _group, count, tally, { prefetch, awaitEach }) {
      let cursor = cursors.get(type) ?? 0;
      while (tally.handled < count) {
        db.exec('BEGIN IMMEDIATE');
        const rows = select.all(type, cursor, Math.min(awaitEach ? 1 : prefetch, BATCH, count - tally.handled));
        for (const row of rows) {
          cursor = row.seq as number;
          tally.received(row.id as string);
        }
        remove.run(type, cursor);
        db.exec('COMMIT');
        if (rows.length === 0) throw new Error(`the raw reservoir of ${type} ran dry`);
      }
      cursors.set(type, cursor);
    },
    publishConcurrently: (type: string, count: number) =>
      Promise.all(
        Array.from({ length: CONCURRENT }, async () => {
          for (let sent = 0; sent < count / CONCURRENT; sent += BATCH) await publish(type, messagesOf(type, BATCH));
        }),
      ),
    async close() {
      db.close();
    },
  } satisfies RawClient & Record<string, unknown>;
}

const bench: TransportBench<Awaited<ReturnType<typeof connectRaw>>> = {
  transport: 'embedded',
  async url(cleanup) {
    const dir = mkdtempSync(join(tmpdir(), 'busbar-bench-embedded-'));
    cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
    return `embedded:${join(dir, 'bus.db')}`;
  },
  connectRaw,
  prefetch: 256,
  sizes: SIZES,
};

export default async function cases() {
  return [
    ...transportCases(bench),
    envCase(bench, {
      name: `transport.publish 100B x${BATCH}, ${CONCURRENT} concurrent`,
      messages: CONCURRENT_MESSAGES,
      async subject(env, tally) {
        await Promise.all(
          Array.from({ length: CONCURRENT }, async () => {
            for (let sent = 0; sent < CONCURRENT_MESSAGES / CONCURRENT; sent += BATCH) {
              await env.transport.publish(env.type, messagesOf(env.type, BATCH));
              tally.count(BATCH);
            }
          }),
        );
      },
      async baseline(env, tally) {
        await env.raw.publishConcurrently(env.rawType, CONCURRENT_MESSAGES);
        tally.count(CONCURRENT_MESSAGES);
      },
    }),
  ];
}
