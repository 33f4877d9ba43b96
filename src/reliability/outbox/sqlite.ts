/**
 * The SQLite outbox, for apps that keep their data in a file (node:sqlite): `outbox.send(db, type, body)` inside the
 * application's transaction on its own DatabaseSync, and a relay with a connection of its own to the same file.
 *
 * node:sqlite is synchronous: a connection waiting for the write lock blocks its whole thread. So no transaction of
 * the relay stays open across the broker call (the app's own writes in the same process would wait on a lock whose
 * holder cannot run): the relay reads a batch, publishes it, then deletes it in a short transaction. Several relays,
 * in one process or many, take turns through a lease row (<table>_lease): only its holder relays, and renews it every
 * batch; a relay that died is replaced once its lease ran out (leaseMs). Order per key therefore holds unless a relay
 * stalls longer than its lease and another takes over meanwhile.
 */
import { randomUUID } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import { BusError } from '../../errors.ts';
import type { Body } from '../../message/codec.ts';
import type { OutgoingOptions } from '../../message/envelope.ts';
import type { TransportMessage } from '../../transport/contract.ts';
import { checkIdentifier, DEFAULT_TABLE, type OutboxRow, outgoing, type RelayTarget, rowToMessage } from './common.ts';
import { Relay, type RelayOptions, type RelaySource } from './relay.ts';

export interface SqliteOutboxOptions {
  /** The database file the app writes its rows to; the relay opens its own connection to it. */
  path: string;
  table?: string;
  /** How long a connection of the outbox waits for another's write lock (default 5000 ms). */
  busyTimeoutMs?: number;
  /** The CloudEvents source of messages sent without one (default: busbar://<host>/<pid>). */
  source?: string;
  /** How long a relay's turn lasts without renewal; another relay takes over after it (default 30000 ms). */
  leaseMs?: number;
}

function openDatabase(path: string, busyTimeoutMs: number): DatabaseSync {
  const sqlite = process.getBuiltinModule('node:sqlite') as typeof import('node:sqlite') | undefined;
  if (!sqlite) {
    throw new BusError('BUSBAR_ERR_UNSUPPORTED', `the SQLite outbox needs node:sqlite: use Node.js 22.20+ or 24.7+`);
  }
  try {
    return new sqlite.DatabaseSync(path, { timeout: busyTimeoutMs });
  } catch (error) {
    throw new BusError(
      'BUSBAR_ERR_CONFIG_FILE',
      `cannot open the outbox database ${path}: ${(error as Error).message}: check that the path is a writable file`,
      { cause: error },
    );
  }
}

function isDatabase(value: unknown): value is DatabaseSync {
  return typeof (value as DatabaseSync)?.prepare === 'function' && typeof (value as DatabaseSync)?.exec === 'function';
}

export class SqliteOutbox {
  readonly path: string;
  readonly table: string;
  readonly #busyTimeoutMs: number;
  readonly #leaseMs: number;
  readonly #source: string | undefined;
  readonly #wakers = new Set<() => void>();
  #own: DatabaseSync | undefined;

  constructor(options: SqliteOutboxOptions) {
    if (typeof options?.path !== 'string' || options.path === '' || options.path === ':memory:') {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        'SqliteOutbox needs the path of the database file the app uses (the relay opens it too): new SqliteOutbox({ path })',
      );
    }
    this.path = options.path;
    this.table = checkIdentifier(options.table ?? DEFAULT_TABLE, 'table');
    checkIdentifier(`${this.table}_lease`, 'table (with _lease appended)');
    this.#leaseMs = options.leaseMs ?? 30_000;
    this.#busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    this.#source = options.source;
  }

  #ownDatabase(): DatabaseSync {
    this.#own ??= openDatabase(this.path, this.#busyTimeoutMs);
    return this.#own;
  }

  /** Creates the table when missing (idempotent). */
  install(db: DatabaseSync = this.#ownDatabase()): void {
    db.exec(`CREATE TABLE IF NOT EXISTS "${this.table}" (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      id TEXT NOT NULL,
      type TEXT NOT NULL,
      key TEXT,
      source TEXT NOT NULL,
      time TEXT NOT NULL,
      content_type TEXT NOT NULL,
      headers TEXT NOT NULL,
      body BLOB NOT NULL,
      created_at INTEGER NOT NULL)`);
    db.exec(`CREATE TABLE IF NOT EXISTS "${this.table}_lease" (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      owner TEXT NOT NULL,
      until INTEGER NOT NULL)`);
    db.exec(`INSERT OR IGNORE INTO "${this.table}_lease" (id, owner, until) VALUES (1, '', 0)`);
  }

  /** Writes one message in the caller's transaction (on the app's own DatabaseSync); returns its id. */
  send(db: DatabaseSync, type: string, body: Body, options: OutgoingOptions = {}): string {
    const message = outgoing(type, body, options, this.#source);
    this.#insert(db, [message]);
    return message.id;
  }

  #insert(db: unknown, messages: readonly TransportMessage[]): void {
    if (!isDatabase(db)) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        'the SQLite outbox writes through your node:sqlite DatabaseSync, inside your transaction: pass that database',
      );
    }
    const insert = db.prepare(
      `INSERT INTO "${this.table}" (id, type, key, source, time, content_type, headers, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const now = Date.now();
    for (const m of messages) {
      insert.run(m.id, m.type, m.key ?? null, m.source, m.time, m.contentType, JSON.stringify(m.headers), m.body, now);
    }
    if (this.#wakers.size > 0) {
      setImmediate(() => {
        for (const wake of this.#wakers) wake();
      });
    }
  }

  /** Writes built messages in the caller's transaction (the web middleware's req.bus.writeTo(db)). */
  async write(db: unknown, messages: readonly TransportMessage[]): Promise<void> {
    this.#insert(db, messages);
  }

  /** Writes built messages in a transaction of the outbox's own connection. */
  async writeOwn(messages: readonly TransportMessage[]): Promise<void> {
    const db = this.#ownDatabase();
    db.exec('BEGIN IMMEDIATE');
    try {
      this.#insert(db, messages);
      db.exec('COMMIT');
    } catch (error) {
      if (db.isTransaction) db.exec('ROLLBACK');
      throw error;
    }
  }

  /** Messages written and not yet relayed. */
  pending(db: DatabaseSync = this.#ownDatabase()): number {
    return Number((db.prepare(`SELECT count(*) AS n FROM "${this.table}"`).get() as { n: number }).n);
  }

  /** Starts a relay in this process: it publishes through `bus` until closed. */
  relay(bus: RelayTarget, options: RelayOptions = {}): Relay {
    const db = openDatabase(this.path, this.#busyTimeoutMs);
    // The relay only deletes what the broker already confirmed: a delete lost with the power means the rows are sent
    // again with the same ids (at-least-once), never lost. So its commits need not wait for the disk.
    db.exec('PRAGMA synchronous = OFF');
    const source = new SqliteRelaySource(db, this.table, this.#wakers, this.#leaseMs);
    return new Relay(source, bus, options);
  }

  /** Closes the outbox's own connection (the app's database stays open). */
  close(): void {
    this.#own?.close();
    this.#own = undefined;
  }
}

class SqliteRelaySource implements RelaySource {
  readonly #db: DatabaseSync;
  readonly #table: string;
  readonly #wakers: Set<() => void>;
  readonly #leaseMs: number;
  readonly #owner = randomUUID();
  #leaseUntil = 0;

  constructor(db: DatabaseSync, table: string, wakers: Set<() => void>, leaseMs: number) {
    this.#db = db;
    this.#table = table;
    this.#wakers = wakers;
    this.#leaseMs = leaseMs;
  }

  /** Takes or renews the lease (once half of it is gone); false while another relay holds it. */
  #lease(): boolean {
    const now = Date.now();
    if (this.#leaseUntil - now > this.#leaseMs / 2) return true;
    const { changes } = this.#db
      .prepare(`UPDATE "${this.#table}_lease" SET owner = ?, until = ? WHERE id = 1 AND (owner = ? OR until < ?)`)
      .run(this.#owner, now + this.#leaseMs, this.#owner, now);
    this.#leaseUntil = Number(changes) === 1 ? now + this.#leaseMs : 0;
    return this.#leaseUntil > 0;
  }

  async relayBatch(
    limit: number,
    _chunk: number,
    publish: (messages: TransportMessage[]) => Promise<void>,
  ): Promise<number> {
    if (!this.#lease()) return 0;
    const rows = this.#db
      .prepare(
        `SELECT seq, id, type, key, source, time, content_type, headers, body FROM "${this.#table}" ORDER BY seq LIMIT ?`,
      )
      .all(limit) as unknown as OutboxRow[];
    if (rows.length === 0) return 0;
    await publish(rows.map(rowToMessage));
    const first = rows[0]!.seq as number;
    const last = rows.at(-1)!.seq as number;
    this.#db.prepare(`DELETE FROM "${this.#table}" WHERE seq BETWEEN ? AND ?`).run(first, last);
    return rows.length;
  }

  waitForWork(pollMs: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, pollMs);
      signal.addEventListener('abort', done, { once: true });
      this.#wakers.add(done);
    });
  }

  async close(): Promise<void> {
    try {
      // Hand the turn on at once rather than after the lease runs out (best effort: it runs out anyway).
      this.#db.prepare(`UPDATE "${this.#table}_lease" SET until = 0 WHERE id = 1 AND owner = ?`).run(this.#owner);
    } catch {
    } finally {
      this.#db.close();
    }
  }
}
