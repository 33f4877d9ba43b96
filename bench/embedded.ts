/**
 * embedded transport vs raw node:sqlite on the same kind of file (WAL, synchronous=NORMAL, same table and index).
 * - `publish 100B x100`: 100-byte messages, one awaited publish() of 100 at a time, vs one INSERT transaction per 100.
 * - `publish 100B x100, 8 concurrent`: 8 publishers at once (group commit merges their batches), vs the raw loop.
 * - `consume+ack 100B`: one consumer (prefetch 256) acking every message, acks pipelined (not awaited one by one),
 *   vs a raw loop that per 100 rows selects them from a cursor and deletes them in one transaction.
 * - `consume+ack 100B, each ack awaited`: the same, but the consumer awaits every ack before taking the next message
 *   (one commit per message), vs the raw loop taking and deleting one row per transaction.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { Transport, TransportMessage } from '../src/transport/contract.ts';
import createEmbeddedTransport from '../src/transports/embedded/index.ts';
import type { BenchCase } from './harness.ts';

const MESSAGES = 10_000;
const BATCH = 100;
const BODY = new Uint8Array(100).fill(0x61);
/** Rounds' worth of messages stored ahead for the consume cases (warm-up + 5 rounds + spare). */
const RESERVOIR_ROUNDS = 8;

function batchOf(type: string): TransportMessage[] {
  const time = new Date().toISOString();
  return Array.from({ length: BATCH }, () => ({
    id: randomUUID(),
    type,
    source: 'bench',
    time,
    contentType: 'application/octet-stream',
    headers: {},
    body: BODY,
  }));
}

/** The raw side: the same table shape busbar uses, written the plain way. */
class Raw {
  readonly db: DatabaseSync;
  readonly insert: StatementSync;
  readonly select: StatementSync;
  readonly remove: StatementSync;
  cursor = 0;

  constructor(path: string) {
    this.db = new DatabaseSync(path);
    this.db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL');
    this.db.exec(`CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, id TEXT, source TEXT,
      time TEXT, content_type TEXT, key TEXT, headers TEXT, body BLOB NOT NULL, size INTEGER NOT NULL, published_ms INTEGER NOT NULL);
      CREATE INDEX messages_by_type ON messages (type, seq)`);
    this.insert = this.db.prepare(
      'INSERT INTO messages (type, id, source, time, content_type, key, headers, body, size, published_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.select = this.db.prepare(
      'SELECT seq, id, source, time, content_type, key, headers, body FROM messages WHERE type = ? AND seq > ? ORDER BY seq LIMIT ?',
    );
    this.remove = this.db.prepare('DELETE FROM messages WHERE type = ? AND seq <= ?');
  }

  publish(type: string, count: number): void {
    for (let done = 0; done < count; done += BATCH) {
      const now = Date.now();
      this.db.exec('BEGIN IMMEDIATE');
      for (const m of batchOf(type)) {
        this.insert.run(type, m.id, m.source, m.time, m.contentType, null, null, m.body, m.body.byteLength, now);
      }
      this.db.exec('COMMIT');
    }
  }

  consume(type: string, count: number, batch = BATCH): void {
    for (let done = 0; done < count; ) {
      this.db.exec('BEGIN IMMEDIATE');
      const rows = this.select.all(type, this.cursor, batch);
      for (const row of rows) this.cursor = row.seq as number;
      this.remove.run(type, this.cursor);
      this.db.exec('COMMIT');
      if (rows.length === 0) this.publish(type, MESSAGES);
      done += rows.length;
    }
  }
}

export default async function cases(): Promise<BenchCase[]> {
  const dir = mkdtempSync(join(tmpdir(), 'busbar-bench-embedded-'));
  let transport: Transport;
  let raw: Raw;
  const type = `bench-${randomUUID()}`;
  const group = `g-${randomUUID()}`;

  const setup = async () => {
    transport = await createEmbeddedTransport({
      url: `embedded:${join(dir, `${randomUUID()}.db`)}`,
      endpoints: [],
      options: {},
    });
    raw = new Raw(join(dir, `${randomUUID()}-raw.db`));
  };
  const teardown = async () => {
    await transport.close();
    raw.db.close();
  };

  const publish: BenchCase = {
    name: `publish 100B x${BATCH}`,
    transport: 'embedded',
    messages: MESSAGES,
    setup,
    teardown,
    async subject() {
      const latencies: number[] = [];
      for (let done = 0; done < MESSAGES; done += BATCH) {
        const batch = batchOf(type);
        const start = performance.now();
        await transport.publish(type, batch);
        latencies.push(performance.now() - start);
      }
      return latencies;
    },
    async baseline() {
      raw.publish(type, MESSAGES);
      return undefined;
    },
  };

  const concurrent: BenchCase = {
    name: `publish 100B x${BATCH}, 8 concurrent`,
    transport: 'embedded',
    messages: MESSAGES,
    setup,
    teardown,
    async subject() {
      const publisher = async () => {
        for (let done = 0; done < MESSAGES / 8; done += BATCH) await transport.publish(type, batchOf(type));
      };
      await Promise.all(Array.from({ length: 8 }, publisher));
      return undefined;
    },
    async baseline() {
      raw.publish(type, MESSAGES);
      return undefined;
    },
  };

  const consumeCase = (name: string, awaitEach: boolean, messages: number): BenchCase => ({
    name,
    transport: 'embedded',
    messages,
    async setup() {
      await setup();
      for (let i = 0; i < (messages * RESERVOIR_ROUNDS) / BATCH; i++) await transport.publish(type, batchOf(type));
      raw.publish(type, messages * RESERVOIR_ROUNDS);
    },
    teardown,
    async subject() {
      const subscription = transport.consume({
        types: [type],
        group,
        consumerId: 'bench',
        offset: 'earliest',
        prefetch: 256,
        ackTimeoutMs: 60_000,
      });
      const acks: Promise<void>[] = [];
      let count = 0;
      for await (const delivery of subscription) {
        if (awaitEach) await delivery.ack();
        else acks.push(delivery.ack());
        if (++count === messages) break;
      }
      await Promise.all(acks);
      return undefined;
    },
    async baseline() {
      raw.consume(type, messages, awaitEach ? 1 : BATCH);
      return undefined;
    },
  });

  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return [
    publish,
    concurrent,
    consumeCase('consume+ack 100B', false, MESSAGES),
    consumeCase('consume+ack 100B, each ack awaited', true, MESSAGES / 5),
  ];
}
