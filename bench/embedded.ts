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
import { BATCH, type RawClient, transportBench, transportCases } from './lib/transport-bench.ts';

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
  return {
    async publish(type, messages) {
      const now = Date.now();
      db.exec('BEGIN IMMEDIATE');
      for (const m of messages) {
        insert.run(type, m.id, m.source, m.time, m.contentType, null, null, m.body, m.body.byteLength, now);
      }
      db.exec('COMMIT');
    },
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
    async close() {
      db.close();
    },
  } satisfies RawClient;
}

export const bench = transportBench({
  transport: 'embedded',
  async url(cleanup) {
    const dir = mkdtempSync(join(tmpdir(), 'busbar-bench-embedded-'));
    cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
    return `embedded:${join(dir, 'bus.db')}`;
  },
  connectRaw,
  prefetch: 256,
  sizes: { batched: 10_000, singles: 2_000, consumed: 10_000, awaited: 2_000 },
  concurrentPublish: true,
});

export default async function cases() {
  return transportCases(bench);
}
