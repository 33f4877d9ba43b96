/**
 * The idempotent inbox: processed message ids recorded in the application's database, so a message delivered again
 * (at-least-once: after a consumer crash, an ack lost in a cut connection, a spool replay, an outbox relay retry) is
 * processed once.
 *
 * - `inbox.transactional(fn)`: the inbox opens a transaction, records the id (a unique row per scope and id), runs
 *   `fn(message, tx)` so the handler's own writes share that transaction, and commits. A redelivered message finds
 *   its id and is acked without running `fn`. Effects in the database happen exactly once; a crash at any point
 *   either rolls back everything (the message comes back and runs) or commits everything (it comes back and is
 *   skipped). Two deliveries of one message at once: the second waits on the first's row lock, then skips.
 * - `inbox.middleware()`: for handlers without a transaction in this database: skips ids already recorded, records
 *   the id after the handler succeeded. A crash between the handler and the record runs the handler once more.
 *
 * PostgreSQL through a `pg` Pool (any object with `connect()` giving a client with `query()` and `release()`), and
 * SQLite through a node:sqlite DatabaseSync.
 */
import type * as Sqlite from 'node:sqlite';
import type { Message } from '../bus/message.ts';
import type { HandlerFn, Middleware } from '../bus/middleware.ts';
import { BusError } from '../errors.ts';

export interface InboxOptions {
  /** The table holding processed ids (created if missing). Default `busbar_inbox`. */
  table?: string;
  /** Ids are unique per scope: use the consumer group, so two groups each process a message once. Default 'default'. */
  scope?: string;
  /** Called for each delivery skipped as already processed (for metrics and tests). */
  onDuplicate?: (message: Message) => void;
}

export interface InboxStats {
  /** Messages this process ran the handler for and recorded. */
  readonly processed: number;
  /** Deliveries skipped because their id was recorded already. */
  readonly duplicates: number;
}

/** What a pg PoolClient offers that the inbox uses. */
export interface PgClientLike {
  query(text: string, values?: unknown[]): Promise<{ rowCount: number | null; rows: unknown[] }>;
  release(error?: Error | boolean): void;
}

/** What a pg Pool offers that the inbox uses. */
export interface PgPoolLike {
  connect(): Promise<PgClientLike>;
}

export interface Inbox<Tx> {
  readonly table: string;
  readonly scope: string;
  /** Creates the table if missing (done on first use too). */
  setup(): Promise<void>;
  /** Runs `fn` inside the inbox's transaction; `tx` is the connection whose writes share it. */
  transactional<T = unknown>(fn: (message: Message<T>, tx: Tx) => Promise<void> | void): HandlerFn<T>;
  /** Skips recorded ids and records an id after the handler succeeded (no shared transaction). */
  middleware(): Middleware;
  /** Whether `id` was processed in this scope. */
  processed(id: string): Promise<boolean>;
  /** Deletes records older than `ageMs` (keep them longer than any redelivery can take). Returns how many. */
  prune(ageMs: number): Promise<number>;
  stats(): InboxStats;
}

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$/;

function checkOptions(options: InboxOptions): { table: string; scope: string } {
  const table = options.table ?? 'busbar_inbox';
  if (typeof table !== 'string' || !TABLE_NAME.test(table)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `inbox table ${JSON.stringify(table)} is not a plain SQL name: use letters, digits and _ (optionally schema.table)`,
    );
  }
  const scope = options.scope ?? 'default';
  if (typeof scope !== 'string' || scope.length === 0) {
    throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', 'inbox scope must be a non-empty string (the consumer group)');
  }
  return { table, scope };
}

/** An inbox in PostgreSQL; `pool` is a `pg` Pool. */
export function pgInbox(pool: PgPoolLike, options: InboxOptions = {}): Inbox<PgClientLike> {
  if (!pool || typeof pool.connect !== 'function') {
    throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', 'pgInbox() takes a pg Pool: pgInbox(new pg.Pool({ ... }))');
  }
  const { table, scope } = checkOptions(options);
  const counts = { processed: 0, duplicates: 0 };
  let ready: Promise<void> | undefined;
  const setup = () =>
    (ready ??= (async () => {
      const client = await pool.connect();
      try {
        await client.query(
          `CREATE TABLE IF NOT EXISTS ${table} (scope TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL, ` +
            'processed_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (scope, id))',
        );
      } finally {
        client.release();
      }
    })().catch((error) => {
      ready = undefined;
      throw error;
    }));
  const duplicate = (message: Message) => {
    counts.duplicates++;
    options.onDuplicate?.(message);
  };
  return {
    table,
    scope,
    setup,
    transactional<T>(fn: (message: Message<T>, tx: PgClientLike) => Promise<void> | void): HandlerFn<T> {
      return async (message) => {
        await setup();
        const client = await pool.connect();
        let broken: Error | undefined;
        try {
          await client.query('BEGIN');
          try {
            const claimed = await client.query(
              `INSERT INTO ${table} (scope, id, type) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
              [scope, message.id, message.type],
            );
            if (claimed.rowCount === 0) {
              await client.query('ROLLBACK');
              duplicate(message as Message);
              return;
            }
            await fn(message, client);
            await client.query('COMMIT');
            counts.processed++;
          } catch (error) {
            await client.query('ROLLBACK').catch((rollback: Error) => {
              broken = rollback;
            });
            throw error;
          }
        } finally {
          client.release(broken ?? false);
        }
      };
    },
    middleware(): Middleware {
      return (next) => async (message) => {
        await setup();
        if (await this.processed(message.id)) {
          duplicate(message);
          return;
        }
        await next(message);
        await query(pool, `INSERT INTO ${table} (scope, id, type) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [
          scope,
          message.id,
          message.type,
        ]);
        counts.processed++;
      };
    },
    async processed(id: string): Promise<boolean> {
      await setup();
      const result = await query(pool, `SELECT 1 FROM ${table} WHERE scope = $1 AND id = $2`, [scope, id]);
      return result.rows.length > 0;
    },
    async prune(ageMs: number): Promise<number> {
      await setup();
      const result = await query(
        pool,
        `DELETE FROM ${table} WHERE scope = $1 AND processed_at < now() - make_interval(secs => $2::double precision / 1000)`,
        [scope, ageMs],
      );
      return result.rowCount ?? 0;
    },
    stats: () => ({ ...counts }),
  };
}

async function query(pool: PgPoolLike, text: string, values: unknown[]) {
  const client = await pool.connect();
  try {
    return await client.query(text, values);
  } finally {
    client.release();
  }
}

/**
 * An inbox in a SQLite database (node:sqlite DatabaseSync) the application owns. One connection holds one
 * transaction at a time, so transactional handlers on the same `db` run one after another (concurrency > 1 brings
 * nothing there); use the connection only through `tx` inside the handler.
 */
export function sqliteInbox(db: Sqlite.DatabaseSync, options: InboxOptions = {}): Inbox<Sqlite.DatabaseSync> {
  if (!db || typeof db.prepare !== 'function' || typeof db.exec !== 'function') {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      "sqliteInbox() takes a node:sqlite DatabaseSync: sqliteInbox(new DatabaseSync('app.db'))",
    );
  }
  const { table, scope } = checkOptions(options);
  const counts = { processed: 0, duplicates: 0 };
  let created = false;
  const setupSync = () => {
    if (created) return;
    db.exec(
      `CREATE TABLE IF NOT EXISTS ${table} (scope TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL, ` +
        'processed_at INTEGER NOT NULL, PRIMARY KEY (scope, id))',
    );
    created = true;
  };
  let lock: Promise<void> = Promise.resolve();
  const exclusive = <R>(work: () => Promise<R>): Promise<R> => {
    const run = lock.then(work);
    lock = run.then(
      () => {},
      () => {},
    );
    return run;
  };
  const duplicate = (message: Message) => {
    counts.duplicates++;
    options.onDuplicate?.(message);
  };
  const isProcessed = (id: string) =>
    db.prepare(`SELECT 1 AS one FROM ${table} WHERE scope = ? AND id = ?`).get(scope, id) !== undefined;
  const record = (message: Message) =>
    db
      .prepare(`INSERT OR IGNORE INTO ${table} (scope, id, type, processed_at) VALUES (?, ?, ?, ?)`)
      .run(scope, message.id, message.type, Date.now()).changes;
  return {
    table,
    scope,
    setup: async () => setupSync(),
    transactional<T>(fn: (message: Message<T>, tx: Sqlite.DatabaseSync) => Promise<void> | void): HandlerFn<T> {
      return (message) =>
        exclusive(async () => {
          setupSync();
          db.exec('BEGIN IMMEDIATE');
          try {
            if (Number(record(message as Message)) === 0) {
              db.exec('ROLLBACK');
              duplicate(message as Message);
              return;
            }
            await fn(message, db);
            db.exec('COMMIT');
            counts.processed++;
          } catch (error) {
            if (db.isTransaction) db.exec('ROLLBACK');
            throw error;
          }
        });
    },
    middleware(): Middleware {
      return (next) => async (message) => {
        setupSync();
        if (isProcessed(message.id)) {
          duplicate(message);
          return;
        }
        await next(message);
        record(message);
        counts.processed++;
      };
    },
    async processed(id: string): Promise<boolean> {
      setupSync();
      return isProcessed(id);
    },
    async prune(ageMs: number): Promise<number> {
      setupSync();
      return Number(
        db.prepare(`DELETE FROM ${table} WHERE scope = ? AND processed_at < ?`).run(scope, Date.now() - ageMs).changes,
      );
    },
    stats: () => ({ ...counts }),
  };
}
