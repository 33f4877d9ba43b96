/**
 * The durable spool: a local SQLite file (node:sqlite) holding the messages a producer accepted but the broker has
 * not confirmed yet, replayed in order (one sequence for the whole file) once the broker is back.
 *
 * - SpoolFile is the storage: append, peek in order, remove what the broker confirmed, counts for stats. One process
 *   owns a file at a time (an owner row with its pid; a dead owner's file is taken over, so a process restarted
 *   after kill -9 replays what its predecessor left).
 * - SpoolSender puts a producer in front of it: `send()` resolves once the batch is durable at the broker or in the
 *   file; a drain loop publishes the file's rows in order, deleting them only after the broker confirmed them.
 *   A message may thus reach the broker twice (a confirm lost in a cut connection, or a kill between confirm and
 *   delete), always with the same id: consumers deduplicate by id (see the inbox).
 */
import { mkdirSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type * as Sqlite from 'node:sqlite';
import { BusError, isBusError, toBusError } from '../errors.ts';
import type { TransportMessage } from '../transport/contract.ts';
import { loadSqlite } from '../transports/embedded/sqlite.ts';

export interface SpoolOptions {
  /** The spool file. Default: `<XDG data dir>/busbar/spool/<producerId>.db`. */
  path?: string;
  /** Most payload + header bytes the file holds; send() then waits for room (backpressure). Default 256 MiB. */
  maxBytes?: number;
  /** How long send() waits for room in a full spool before failing with BUSBAR_ERR_SPOOL_FULL. Default 30 s. */
  fullWaitMs?: number;
  /** 'normal' (default) survives a crash of the process; 'full' also a crash of the machine (an fsync per commit). */
  sync?: 'normal' | 'full';
  /** A replayed batch the broker has not confirmed within this time is retried (same ids). Default 15 s. */
  publishTimeoutMs?: number;
  /** close() waits this long for the spool to drain, then leaves the rest in the file for the next start. Default 10 s. */
  drainOnCloseMs?: number;
}

export const DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024;
export const DEFAULT_SPOOL_FULL_WAIT_MS = 30_000;
export const DEFAULT_SPOOL_PUBLISH_TIMEOUT_MS = 15_000;
export const DEFAULT_SPOOL_DRAIN_ON_CLOSE_MS = 10_000;
const MAX_RETRY_DELAY_MS = 2_000;
/** Consecutive failures that are not BusErrors (so say nothing of retrying) before a batch is set aside. */
const MAX_UNKNOWN_FAILURES = 20;
/** send() into the spool lets the event loop run at least this often (ms). */
const YIELD_EVERY_MS = 10;

export function defaultSpoolPath(producerId: string, env: NodeJS.ProcessEnv = process.env): string {
  const base =
    env.XDG_DATA_HOME && isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : join(homedir(), '.local', 'share');
  return join(base, 'busbar', 'spool', `${producerId.replace(/[^A-Za-z0-9._-]/g, '_')}.db`);
}

export interface SpoolStats {
  readonly path: string;
  /** Messages waiting for the broker. */
  readonly messages: number;
  readonly bytes: number;
  readonly maxBytes: number;
  /** Age of the oldest waiting message, ms (0 when empty). */
  readonly oldestAgeMs: number;
  /** Messages the broker refused for good (not retryable): kept, not replayed; `busbar spool status` lists them. */
  readonly failed: number;
  /** Sent to the broker from the spool since this process opened it. */
  readonly replayed: number;
  /** The last publish failure while replaying, until a replay succeeds again. */
  readonly lastError: string | undefined;
}

export interface SpoolRow {
  readonly seq: number;
  readonly message: TransportMessage;
  readonly bytes: number;
}

function sizeOf(m: TransportMessage): number {
  let n = m.body.byteLength + m.id.length + m.type.length + m.source.length + m.time.length + m.contentType.length;
  n += m.key?.length ?? 0;
  for (const [k, v] of Object.entries(m.headers)) n += k.length + v.length;
  return n;
}

/** The spool's storage. Synchronous (node:sqlite), so every call is one short local transaction. */
export class SpoolFile {
  readonly path: string;
  readonly #db: Sqlite.DatabaseSync;
  #bytes: number;
  #owned = false;

  private constructor(path: string, db: Sqlite.DatabaseSync) {
    this.path = path;
    this.#db = db;
    this.#bytes = Number(
      (db.prepare('SELECT COALESCE(SUM(bytes), 0) AS b FROM spool WHERE failed IS NULL').get() as { b: number }).b,
    );
  }

  /** Opens (creating) the file. `own`: take ownership for sending, refused while another live process owns it. */
  static open(path: string, options: { sync?: 'normal' | 'full'; own?: boolean } = {}): SpoolFile {
    const file = resolve(path);
    const sqlite = loadSqlite();
    let db: Sqlite.DatabaseSync;
    try {
      mkdirSync(dirname(file), { recursive: true });
      db = new sqlite.DatabaseSync(file);
      db.exec('PRAGMA busy_timeout = 10000');
      db.exec('PRAGMA journal_mode = WAL');
      db.exec(`PRAGMA synchronous = ${options.sync === 'full' ? 'FULL' : 'NORMAL'}`);
      db.exec(`CREATE TABLE IF NOT EXISTS spool (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, id TEXT NOT NULL, source TEXT NOT NULL,
        time TEXT NOT NULL, content_type TEXT NOT NULL, key TEXT, headers TEXT NOT NULL, body BLOB NOT NULL,
        bytes INTEGER NOT NULL, added_at INTEGER NOT NULL, failed TEXT)`);
      db.exec(`CREATE TABLE IF NOT EXISTS spool_owner (
        one INTEGER PRIMARY KEY CHECK (one = 1), pid INTEGER NOT NULL, host TEXT NOT NULL, since INTEGER NOT NULL)`);
    } catch (error) {
      throw new BusError(
        'BUSBAR_ERR_SPOOL',
        `cannot open the spool file ${file}: ${(error as Error).message}; check the path and its permissions`,
        { cause: error },
      );
    }
    const spool = new SpoolFile(file, db);
    if (options.own) {
      try {
        spool.#takeOwnership();
      } catch (error) {
        db.close();
        throw error;
      }
    }
    return spool;
  }

  #takeOwnership(): void {
    if (ownedHere.has(this.path)) {
      throw new BusError(
        'BUSBAR_ERR_SPOOL',
        `the spool file ${this.path} is already used by another producer of this process: give each producer its ` +
          'own spool path',
      );
    }
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const owner = this.#db.prepare('SELECT pid, host FROM spool_owner WHERE one = 1').get() as
        | { pid: number; host: string }
        | undefined;
      if (owner && owner.pid !== process.pid && (owner.host !== hostname() || alive(owner.pid))) {
        throw new BusError(
          'BUSBAR_ERR_SPOOL',
          `the spool file ${this.path} is in use by process ${owner.pid} on ${owner.host}: ` +
            'give each producer process its own spool path, or stop that process first',
        );
      }
      this.#db
        .prepare('INSERT OR REPLACE INTO spool_owner (one, pid, host, since) VALUES (1, ?, ?, ?)')
        .run(process.pid, hostname(), Date.now());
      this.#db.exec('COMMIT');
      this.#owned = true;
      ownedHere.add(this.path);
    } catch (error) {
      this.#db.exec('ROLLBACK');
      throw error;
    }
  }

  /** Bytes of the messages waiting (failed ones excepted). */
  get bytes(): number {
    return this.#bytes;
  }

  static sizeOf(messages: readonly TransportMessage[]): number {
    return messages.reduce((n, m) => n + sizeOf(m), 0);
  }

  /** Stores a batch in one transaction; on return it is durable in the file. */
  append(messages: readonly TransportMessage[]): void {
    const insert = this.#db.prepare(
      'INSERT INTO spool (type, id, source, time, content_type, key, headers, body, bytes, added_at) ' +
        'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    const now = Date.now();
    let added = 0;
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      for (const m of messages) {
        const bytes = sizeOf(m);
        added += bytes;
        insert.run(
          m.type,
          m.id,
          m.source,
          m.time,
          m.contentType,
          m.key ?? null,
          JSON.stringify(m.headers),
          m.body,
          bytes,
          now,
        );
      }
      this.#db.exec('COMMIT');
    } catch (error) {
      this.#db.exec('ROLLBACK');
      throw new BusError(
        'BUSBAR_ERR_SPOOL',
        `cannot write to the spool file ${this.path}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    this.#bytes += added;
  }

  /** The oldest waiting rows, in order, up to `limit` and all of the first row's type. */
  peek(limit: number): SpoolRow[] {
    const rows = this.#db
      .prepare(
        'SELECT seq, type, id, source, time, content_type, key, headers, body, bytes FROM spool ' +
          'WHERE failed IS NULL ORDER BY seq LIMIT ?',
      )
      .all(limit) as Array<Record<string, unknown>>;
    const batch: SpoolRow[] = [];
    for (const r of rows) {
      if (batch.length > 0 && r.type !== batch[0]!.message.type) break;
      batch.push({
        seq: Number(r.seq),
        bytes: Number(r.bytes),
        message: {
          id: r.id as string,
          type: r.type as string,
          source: r.source as string,
          time: r.time as string,
          contentType: r.content_type as string,
          ...(r.key === null ? {} : { key: r.key as string }),
          headers: JSON.parse(r.headers as string) as Record<string, string>,
          body: new Uint8Array(r.body as Uint8Array),
        },
      });
    }
    return batch;
  }

  /** Deletes rows the broker confirmed. */
  remove(rows: readonly SpoolRow[]): void {
    if (rows.length === 0) return;
    this.#db
      .prepare('DELETE FROM spool WHERE seq BETWEEN ? AND ? AND failed IS NULL')
      .run(rows[0]!.seq, rows.at(-1)!.seq);
    this.#bytes -= rows.reduce((n, r) => n + r.bytes, 0);
  }

  /** Keeps rows the broker refused for good out of the replay, with the reason. */
  markFailed(rows: readonly SpoolRow[], reason: string): void {
    if (rows.length === 0) return;
    this.#db
      .prepare('UPDATE spool SET failed = ? WHERE seq BETWEEN ? AND ? AND failed IS NULL')
      .run(reason, rows[0]!.seq, rows.at(-1)!.seq);
    this.#bytes -= rows.reduce((n, r) => n + r.bytes, 0);
  }

  /** Puts failed rows back into the replay (`busbar spool flush --retry-failed`). */
  retryFailed(): number {
    const changes = Number(this.#db.prepare('UPDATE spool SET failed = NULL WHERE failed IS NOT NULL').run().changes);
    this.#bytes = Number(
      (this.#db.prepare('SELECT COALESCE(SUM(bytes), 0) AS b FROM spool WHERE failed IS NULL').get() as { b: number })
        .b,
    );
    return changes;
  }

  counts(): { messages: number; bytes: number; oldestAt: number | undefined; failed: number } {
    const row = this.#db
      .prepare(
        'SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b, MIN(added_at) AS oldest FROM spool WHERE failed IS NULL',
      )
      .get() as { n: number; b: number; oldest: number | null };
    const failed = this.#db.prepare('SELECT COUNT(*) AS n FROM spool WHERE failed IS NOT NULL').get() as { n: number };
    return {
      messages: Number(row.n),
      bytes: Number(row.b),
      oldestAt: row.oldest === null ? undefined : Number(row.oldest),
      failed: Number(failed.n),
    };
  }

  /** Reasons of failed rows, grouped, for status output. */
  failures(): Array<{ type: string; reason: string; count: number }> {
    return (
      this.#db
        .prepare(
          'SELECT type, failed AS reason, COUNT(*) AS count FROM spool WHERE failed IS NOT NULL GROUP BY type, failed',
        )
        .all() as Array<{ type: string; reason: string; count: number }>
    ).map((r) => ({ type: r.type, reason: r.reason, count: Number(r.count) }));
  }

  /** The owning process, if any (it may be dead: its file is taken over by the next owner). */
  owner(): { pid: number; host: string; since: number; alive: boolean } | undefined {
    const row = this.#db.prepare('SELECT pid, host, since FROM spool_owner WHERE one = 1').get() as
      | { pid: number; host: string; since: number }
      | undefined;
    if (!row) return undefined;
    const pid = Number(row.pid);
    return { pid, host: row.host, since: Number(row.since), alive: row.host !== hostname() || alive(pid) };
  }

  close(): void {
    if (!this.#db.isOpen) return;
    if (this.#owned) {
      ownedHere.delete(this.path);
      try {
        this.#db.prepare('DELETE FROM spool_owner WHERE one = 1 AND pid = ?').run(process.pid);
      } catch {
        // A file that cannot be written is released by the owner check on the next open (this pid is gone then).
      }
    }
    this.#db.close();
  }
}

/** Spool files owned by this process (the owner row holds a pid, which cannot tell two producers apart). */
const ownedHere = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function withTimeout<T>(call: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new BusError('BUSBAR_ERR_TIMEOUT', `${what}: no confirmation from the broker within ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([call, expired]).finally(() => clearTimeout(timer));
}

export type Publish = (type: string, batch: TransportMessage[]) => Promise<void>;

/**
 * A producer's path through the spool. 'through' (async producers): every batch is written to the file and send()
 * resolves at once; the drain loop publishes. 'fallback' (sync producers): a batch goes straight to the broker while
 * the spool is empty, and into the file when the broker fails or does not answer in time (retryable failures);
 * once anything waits in the file, later batches queue behind it, so order is kept.
 */
export class SpoolSender {
  readonly file: SpoolFile;
  readonly #publish: Publish;
  readonly #mode: 'through' | 'fallback';
  readonly #maxBytes: number;
  readonly #fullWaitMs: number;
  readonly #publishTimeoutMs: number;
  readonly #drainOnCloseMs: number;
  readonly #maxBatch: number;
  readonly #onFailure: (error: BusError) => void;
  readonly #room: Array<() => void> = [];
  readonly #idle: Array<() => void> = [];
  #draining = false;
  #replayed = 0;
  #lastError: string | undefined;
  #closed = false;
  #retryTimer: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  #yieldedAt = performance.now();

  constructor(
    path: string,
    options: SpoolOptions & {
      mode: 'through' | 'fallback';
      publish: Publish;
      maxBatch: number;
      onFailure: (error: BusError) => void;
      /** Put rows set aside as failed back in line before replaying (`busbar spool flush --retry-failed`). */
      retryFailed?: boolean;
    },
  ) {
    this.#maxBytes = positiveOption(options.maxBytes, DEFAULT_SPOOL_MAX_BYTES, 'spool.maxBytes');
    this.#fullWaitMs = positiveOption(options.fullWaitMs, DEFAULT_SPOOL_FULL_WAIT_MS, 'spool.fullWaitMs', true);
    this.#publishTimeoutMs = positiveOption(
      options.publishTimeoutMs,
      DEFAULT_SPOOL_PUBLISH_TIMEOUT_MS,
      'spool.publishTimeoutMs',
    );
    this.#drainOnCloseMs = positiveOption(
      options.drainOnCloseMs,
      DEFAULT_SPOOL_DRAIN_ON_CLOSE_MS,
      'spool.drainOnCloseMs',
      true,
    );
    if (options.sync !== undefined && options.sync !== 'normal' && options.sync !== 'full') {
      throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', `spool.sync must be 'normal' or 'full', not ${options.sync}`);
    }
    this.file = SpoolFile.open(path, { sync: options.sync, own: true });
    if (options.retryFailed) this.file.retryFailed();
    this.#publish = options.publish;
    this.#mode = options.mode;
    this.#maxBatch = options.maxBatch;
    this.#onFailure = options.onFailure;
    // What a predecessor left (a crash, a close during an outage) goes out first.
    if (this.file.counts().messages > 0) this.#kick();
  }

  /** Resolves once `batch` is confirmed by the broker or durable in the spool. */
  async send(batch: TransportMessage[]): Promise<void> {
    if (this.#mode === 'fallback' && !this.#draining && this.file.bytes === 0) {
      try {
        await withTimeout(this.#publish(batch[0]!.type, batch), this.#publishTimeoutMs, 'send');
        return;
      } catch (error) {
        // A BusError says whether retrying helps; anything else (a client library's own error) is spooled too.
        if (isBusError(error) && !error.retryable) throw error;
        this.#lastError = (error as Error).message;
        // Not confirmed: the broker may still store it, so the replay can deliver it twice, with the same ids.
      }
    }
    await this.#append(batch);
  }

  async #append(batch: TransportMessage[]): Promise<void> {
    const size = SpoolFile.sizeOf(batch);
    if (size > this.#maxBytes) {
      throw new BusError(
        'BUSBAR_ERR_SPOOL_FULL',
        `a batch of ${size} bytes can never fit the spool ${this.file.path} (maxBytes ${this.#maxBytes}): ` +
          'send smaller batches or raise spool.maxBytes',
        { retryable: false },
      );
    }
    if (this.file.bytes + size > this.#maxBytes) {
      const deadline = Date.now() + this.#fullWaitMs;
      while (this.file.bytes + size > this.#maxBytes) {
        const left = deadline - Date.now();
        if (left <= 0 || this.#closed) {
          throw new BusError(
            'BUSBAR_ERR_SPOOL_FULL',
            `the spool ${this.file.path} is full (${this.file.bytes} of ${this.#maxBytes} bytes) and did not drain ` +
              `within ${this.#fullWaitMs} ms; the broker is not taking messages (last error: ` +
              `${this.#lastError ?? 'none'}): these ${batch.length} message(s) were not accepted; restore the broker, ` +
              'raise spool.maxBytes, or retry later',
            { details: { bytes: this.file.bytes, maxBytes: this.#maxBytes } },
          );
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(wake, left);
          function wake(): void {
            clearTimeout(timer);
            resolve();
          }
          this.#room.push(wake);
        });
      }
    }
    this.file.append(batch);
    this.#kick();
    // A local commit needs no I/O wait, so a caller looping over send() would never let the replay (or any timer)
    // run: give the event loop a turn every few milliseconds.
    if (performance.now() - this.#yieldedAt > YIELD_EVERY_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.#yieldedAt = performance.now();
    }
  }

  #kick(): void {
    if (this.#draining || this.#closed) return;
    this.#draining = true;
    void this.#drain();
  }

  async #drain(): Promise<void> {
    let failures = 0;
    try {
      while (!this.#closed) {
        const rows = this.file.peek(this.#maxBatch);
        if (rows.length === 0) break;
        const batch = rows.map((r) => r.message);
        try {
          await withTimeout(this.#publish(batch[0]!.type, batch), this.#publishTimeoutMs, 'spool replay');
        } catch (error) {
          if (this.#closed) break;
          // A client library's own error (not a BusError) is retried a while before the rows are set aside.
          failures++;
          const retryable = isBusError(error) ? error.retryable : failures <= MAX_UNKNOWN_FAILURES;
          const reason = toBusError(error, 'BUSBAR_ERR_PUBLISH', 'spool replay').message;
          this.#lastError = reason;
          if (!retryable) {
            this.file.markFailed(rows, reason);
            this.#wakeRoom();
            this.#onFailure(
              new BusError(
                'BUSBAR_ERR_PUBLISH',
                `the broker refused ${rows.length} spooled message(s) of '${batch[0]!.type}' for good: ${reason}; ` +
                  `they stay in ${this.file.path} marked failed (busbar spool status; flush --retry-failed)`,
                { cause: error, retryable: false, details: { messages: batch } },
              ),
            );
            failures = 0;
            continue;
          }
          await this.#pause(Math.min(MAX_RETRY_DELAY_MS, 50 * 2 ** Math.min(failures, 6)));
          continue;
        }
        // Closed meanwhile: the file is shut; these rows stay and are replayed (same ids) by the next owner.
        if (this.#closed) break;
        failures = 0;
        this.#lastError = undefined;
        this.file.remove(rows);
        this.#replayed += rows.length;
        this.#wakeRoom();
      }
    } finally {
      this.#draining = false;
      for (const wake of this.#idle.splice(0)) wake();
    }
  }

  #pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#retryTimer = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#retryTimer = { timer, wake };
    });
  }

  #wakeRoom(): void {
    for (const wake of this.#room.splice(0)) wake();
  }

  /** Waits until the spool is empty (or close() began), retrying the broker meanwhile. */
  async drained(): Promise<void> {
    while (!this.#closed && this.file.counts().messages > 0) {
      if (!this.#draining) this.#kick();
      await new Promise<void>((resolve) => this.#idle.push(resolve));
    }
  }

  stats(): SpoolStats {
    const counts = this.file.counts();
    return {
      path: this.file.path,
      messages: counts.messages,
      bytes: counts.bytes,
      maxBytes: this.#maxBytes,
      oldestAgeMs: counts.oldestAt === undefined ? 0 : Math.max(0, Date.now() - counts.oldestAt),
      failed: counts.failed,
      replayed: this.#replayed,
      lastError: this.#lastError,
    };
  }

  /** Drains for up to drainOnCloseMs, then leaves the rest in the file (replayed by the next owner) and closes it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#drainOnCloseMs > 0 && this.file.counts().messages > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.drained(),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, this.#drainOnCloseMs);
        }),
      ]);
      clearTimeout(timer);
    }
    this.#closed = true;
    this.#retryTimer?.wake();
    this.#wakeRoom();
    for (const wake of this.#idle.splice(0)) wake();
    // A publish in flight may still be confirmed; its rows then stay and are replayed (same ids) next time.
    this.file.close();
  }
}

function positiveOption(value: unknown, fallback: number, name: string, zeroOk = false): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < (zeroOk ? 0 : 1)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `${name} must be a whole number ${zeroOk ? '>= 0' : '>= 1'}, not ${JSON.stringify(value)}`,
    );
  }
  return value;
}
