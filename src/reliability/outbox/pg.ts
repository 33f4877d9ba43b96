/**
 * The PostgreSQL outbox: `outbox.send(client, type, body)` inside the application's transaction (a `pg` client
 * after BEGIN, anything with pg's `query(text, values)`, or the `postgres` package's `sql` inside `sql.begin()`), and
 * a relay (on `pg`) that wakes on LISTEN/NOTIFY. Several relays
 * may run at once: each batch holds its lanes with FOR UPDATE SKIP LOCKED, so no two relays send the same key at the
 * same time and each key's messages leave in the order they were written. "Written" is the order of the writing
 * transactions' ids, then of the rows' sequence numbers: two transactions that write the same key at the same time
 * may commit in the other order, and then the relay may send the other's row first (transactions one after another
 * per key, the usual case, keep their order).
 *
 * Sent rows are not deleted one by one: each lane keeps a cursor, (xid, seq) of the last row it sent, advanced by one
 * UPDATE per batch, and the rows behind the cursors are deleted in bulk now and then (every CLEANUP_EVERY rows sent,
 * and when the relay has caught up). A cursor may only pass rows that can no longer be joined by a row from a
 * transaction still running: the rows whose writer's transaction id is below the xmin of the relay's snapshot (every
 * transaction below it has ended, so all their rows are visible and no new row can sort before them). A row above
 * that line (its writer committed while an older transaction, anywhere on the server, is still open) is sent and
 * deleted by its seq, as before, so a long transaction elsewhere never holds the relay back.
 *
 * Tables (created by install()): <schema>.<table> (one row per message) and <table>_lanes (one row per lane, with its
 * cursor). A table made by busbar before cursors (no xid column) is migrated on install() or by the first relay:
 * its rows get xid 0 and are sent first, in seq order. Relays of that earlier version must be stopped first (they
 * would send the rows kept behind the cursors again); writers of any version keep working.
 */
import { BusError } from '../../errors.ts';
import type { Body } from '../../message/codec.ts';
import type { OutgoingOptions } from '../../message/envelope.ts';
import type { TransportMessage } from '../../transport/contract.ts';
import {
  checkIdentifier,
  DEFAULT_TABLE,
  LANES,
  laneOf,
  type OutboxRow,
  outgoing,
  type RelayTarget,
  rowToMessage,
} from './common.ts';
import { Relay, type RelayOptions, type RelaySource } from './relay.ts';

/** What the outbox needs of a connection or transaction: pg's Client, PoolClient and Pool all have it. */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[]; rowCount?: number | null }>;
}

/** The `postgres` package's transaction (the `sql` inside `sql.begin(async (sql) => ...)`) as the outbox uses it. */
export interface PostgresJsSql {
  unsafe(text: string, values?: unknown[]): PromiseLike<unknown>;
}

/** A pg client, or a `postgres` (postgres.js) transaction: both can run the outbox's INSERT. */
function queryableOf(tx: unknown): Queryable | undefined {
  if (typeof (tx as Queryable)?.query === 'function') return tx as Queryable;
  const sql = tx as PostgresJsSql;
  if (typeof sql?.unsafe === 'function') {
    return { query: async (text, values) => ({ rows: (await sql.unsafe(text, values)) as unknown[] }) };
  }
  return undefined;
}

interface PgClient extends Queryable {
  connect(): Promise<unknown>;
  end(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'notification', listener: (message: { channel: string }) => void): unknown;
}

interface PgPool extends Queryable {
  connect(): Promise<Queryable & { release(error?: Error | boolean): void }>;
  end(): Promise<void>;
}

export interface PgOutboxOptions {
  /** For the outbox's own connections: the relay's, and writes made outside the app's transaction. */
  connectionString?: string;
  /** Or the app's own pg Pool for those writes (the relay still opens its own connections from connectionString). */
  pool?: PgPool;
  schema?: string;
  table?: string;
  /** The CloudEvents source of messages sent without one (default: busbar://<host>/<pid>). */
  source?: string;
}

/** Rows sent between two bulk deletes of the rows behind the cursors (the table's growth beyond what is unsent). */
const CLEANUP_EVERY = 10_000;

/** Rows per INSERT statement (9 parameters each, well under PostgreSQL's 65535). */
const INSERT_CHUNK = 1000;

async function loadPg(): Promise<typeof import('pg')> {
  try {
    const module = (await import('pg')) as typeof import('pg') & { default?: typeof import('pg') };
    return module.default ?? module;
  } catch (error) {
    throw new BusError('BUSBAR_ERR_TRANSPORT_LOAD', `the PostgreSQL outbox needs the 'pg' package: npm install pg`, {
      cause: error,
    });
  }
}

function quote(identifier: string): string {
  return `"${identifier}"`;
}

/**
 * Brings tables made by an earlier busbar (rows deleted one by one, no cursors) to the cursor layout: the rows in
 * the table get xid 0 (sent first, in seq order), later ones their writer's transaction id. The column and its
 * default arrive in one ALTER, so no row is written in between with a wrong xid. Looks at the catalog first: an ALTER
 * locks the table even when it has nothing to do.
 */
async function migrate(q: Queryable, table: string, lanes: string, schema: string, name: string): Promise<void> {
  const index = `${schema}.${quote(`${name}_xid_seq`)}`;
  const { rows } = await q.query(
    `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'xid' ` +
      `AND NOT attisdropped) AS rows, EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($2) ` +
      `AND attname = 'sent_xid' AND NOT attisdropped) AS lanes, to_regclass($3) IS NOT NULL AS indexed`,
    [table, lanes, index],
  );
  const has = rows[0] as { rows: boolean; lanes: boolean; indexed: boolean };
  if (!has.rows) {
    await q.query(
      `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS xid xid8 NOT NULL DEFAULT '0', ` +
        `ALTER COLUMN xid SET DEFAULT pg_current_xact_id()`,
    );
  }
  if (!has.lanes) {
    await q.query(
      `ALTER TABLE ${lanes} ADD COLUMN IF NOT EXISTS sent_xid xid8 NOT NULL DEFAULT '0', ` +
        `ADD COLUMN IF NOT EXISTS sent_seq bigint NOT NULL DEFAULT 0`,
    );
  }
  if (!has.indexed) {
    await q.query(`CREATE INDEX IF NOT EXISTS ${quote(`${name}_xid_seq`)} ON ${table} (xid, seq)`);
    // The earlier layout's index served its per-lane reads; nothing reads by it now, and every insert paid for it.
    await q.query(`DROP INDEX IF EXISTS ${schema}.${quote(`${name}_lane_seq`)}`);
  }
}

export class PgOutbox {
  readonly schema: string;
  readonly table: string;
  readonly #qualified: string;
  readonly #lanesTable: string;
  readonly #channel: string;
  readonly #connectionString: string | undefined;
  readonly #source: string | undefined;
  #pool: PgPool | undefined;
  readonly #ownPool: boolean;
  #migrated: Promise<void> | undefined;

  constructor(options: PgOutboxOptions = {}) {
    this.schema = checkIdentifier(options.schema ?? 'public', 'schema');
    this.table = checkIdentifier(options.table ?? DEFAULT_TABLE, 'table');
    checkIdentifier(`${this.table}_lanes`, 'table (with _lanes appended)');
    this.#qualified = `${quote(this.schema)}.${quote(this.table)}`;
    this.#lanesTable = `${quote(this.schema)}.${quote(`${this.table}_lanes`)}`;
    this.#channel = `busbar_outbox.${this.schema}.${this.table}`.slice(0, 63);
    this.#connectionString = options.connectionString;
    this.#source = options.source;
    this.#pool = options.pool;
    this.#ownPool = options.pool === undefined;
    if (!options.connectionString && !options.pool) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        'PgOutbox needs a connectionString (postgres://...) or a pg Pool: new PgOutbox({ connectionString })',
      );
    }
  }

  async #ownQueryable(): Promise<PgPool> {
    if (!this.#pool) {
      const pg = await loadPg();
      this.#pool = new pg.Pool({ connectionString: this.#connectionString, max: 4 }) as unknown as PgPool;
      (this.#pool as unknown as { on(e: 'error', l: () => void): void }).on('error', () => {});
    }
    return this.#pool;
  }

  /** Creates the schema and tables when missing, migrates an earlier layout (idempotent); run once at start-up. */
  async install(db?: Queryable): Promise<void> {
    const q = db ?? (await this.#ownQueryable());
    if (this.schema !== 'public') await q.query(`CREATE SCHEMA IF NOT EXISTS ${quote(this.schema)}`);
    await q.query(`CREATE TABLE IF NOT EXISTS ${this.#qualified} (
      seq bigserial PRIMARY KEY,
      id text NOT NULL,
      type text NOT NULL,
      key text,
      lane smallint NOT NULL,
      source text NOT NULL,
      time text NOT NULL,
      content_type text NOT NULL,
      headers jsonb NOT NULL,
      body bytea NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      xid xid8 NOT NULL DEFAULT pg_current_xact_id())`);
    await q.query(`CREATE TABLE IF NOT EXISTS ${this.#lanesTable} (
      lane smallint PRIMARY KEY,
      sent_xid xid8 NOT NULL DEFAULT '0',
      sent_seq bigint NOT NULL DEFAULT 0)`);
    await q.query(
      `INSERT INTO ${this.#lanesTable} (lane) SELECT generate_series(0, ${LANES - 1}) ON CONFLICT DO NOTHING`,
    );
    await migrate(q, this.#qualified, this.#lanesTable, quote(this.schema), this.table);
  }

  /** Writes one message in the caller's transaction; returns its id (the consumer's dedup key). */
  async send(tx: Queryable | PostgresJsSql, type: string, body: Body, options: OutgoingOptions = {}): Promise<string> {
    const message = outgoing(type, body, options, this.#source);
    await this.write(tx, [message]);
    return message.id;
  }

  /** Writes several messages of one type in the caller's transaction, in order; returns their ids. */
  async sendBatch(
    tx: Queryable | PostgresJsSql,
    type: string,
    messages: ReadonlyArray<{ body: Body; options?: OutgoingOptions }>,
  ): Promise<string[]> {
    const built = messages.map((m) => outgoing(type, m.body, m.options ?? {}, this.#source));
    await this.write(tx, built);
    return built.map((m) => m.id);
  }

  /** Writes built messages in the caller's transaction; the relay is woken when it commits. */
  async write(tx: unknown, messages: readonly TransportMessage[]): Promise<void> {
    const db = queryableOf(tx);
    if (!db) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        'the PostgreSQL outbox writes inside your transaction: pass the pg client you ran BEGIN on, or the sql of ' +
          "the 'postgres' package's sql.begin(async (sql) => ...)",
      );
    }
    for (let start = 0; start < messages.length; start += INSERT_CHUNK) {
      const chunk = messages.slice(start, start + INSERT_CHUNK);
      const values: unknown[] = [this.#channel];
      const rows = chunk.map((m) => {
        const at = values.length;
        values.push(
          m.id,
          m.type,
          m.key ?? null,
          laneOf(m),
          m.source,
          m.time,
          m.contentType,
          JSON.stringify(m.headers),
          Buffer.from(m.body.buffer, m.body.byteOffset, m.body.byteLength),
        );
        return `($${at + 1}, $${at + 2}, $${at + 3}, $${at + 4}, $${at + 5}, $${at + 6}, $${at + 7}, $${at + 8}::jsonb, $${at + 9})`;
      });
      await db.query(
        `WITH written AS (INSERT INTO ${this.#qualified} (id, type, key, lane, source, time, content_type, headers, body) ` +
          `VALUES ${rows.join(', ')}) SELECT pg_notify($1, '')`,
        values,
      );
    }
  }

  /** Writes built messages in a transaction of the outbox's own (the web middleware's `via: outbox()` at response). */
  async writeOwn(messages: readonly TransportMessage[]): Promise<void> {
    const client = await (await this.#ownQueryable()).connect();
    try {
      await client.query('BEGIN');
      await this.write(client, messages);
      await client.query('COMMIT');
      client.release();
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      client.release(true);
      throw error;
    }
  }

  /** Messages written and not yet relayed (the rows ahead of their lane's cursor). */
  async pending(db?: Queryable): Promise<number> {
    const q = db ?? (await this.#ownQueryable());
    this.#migrated ??= migrate(q, this.#qualified, this.#lanesTable, quote(this.schema), this.table).catch((error) => {
      this.#migrated = undefined;
      throw error;
    });
    await this.#migrated;
    const { rows } = await q.query(
      `SELECT count(*)::int AS n FROM ${this.#qualified} o JOIN ${this.#lanesTable} l ON o.lane = l.lane ` +
        `WHERE (o.xid, o.seq) > (l.sent_xid, l.sent_seq)`,
    );
    return (rows[0] as { n: number }).n;
  }

  /** Starts a relay in this process: it publishes through `bus` until closed. */
  relay(bus: RelayTarget, options: RelayOptions = {}): Relay {
    if (!this.#connectionString) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        'the relay opens its own connections (one of them LISTENs): give PgOutbox a connectionString',
      );
    }
    return new Relay(
      new PgRelaySource(this.#connectionString, this.#qualified, this.#lanesTable, this.#channel, (db) =>
        migrate(db, this.#qualified, this.#lanesTable, quote(this.schema), this.table),
      ),
      bus,
      options,
    );
  }

  /** Ends the pool the outbox opened for itself (a pool the app passed stays open). */
  async close(): Promise<void> {
    if (this.#ownPool && this.#pool) await this.#pool.end();
    this.#pool = undefined;
  }
}

/** A lane's cursor: every row of the lane at or before (xid, seq) has been sent. Digits, as PostgreSQL gives them. */
interface Cursor {
  xid: string;
  seq: string;
}

function after(a: Cursor, b: Cursor): boolean {
  const x = BigInt(a.xid) - BigInt(b.xid);
  return x > 0n || (x === 0n && BigInt(a.seq) > BigInt(b.seq));
}

/** Values put into SQL text are checked to be digits (they come from PostgreSQL, as text). */
function digits(value: string): string {
  if (!/^\d+$/.test(value)) throw new BusError('BUSBAR_ERR_INTERNAL', `outbox relay: not a number: ${value}`);
  return value;
}

class PgRelaySource implements RelaySource {
  readonly #connectionString: string;
  readonly #table: string;
  readonly #lanes: string;
  readonly #channel: string;
  readonly #migrate: (db: Queryable) => Promise<void>;
  #migrated = false;
  #worker: PgClient | undefined;
  #listener: PgClient | undefined;
  #notified = false;
  #wake: (() => void) | undefined;
  #closed = false;
  /** Rows sent past the cursors since the last bulk delete, the one running, and how the last one failed. */
  #sinceCleanup = 0;
  #cleaning: Promise<void> | undefined;
  #cleanupError: unknown;

  constructor(
    connectionString: string,
    table: string,
    lanes: string,
    channel: string,
    migrate: (db: Queryable) => Promise<void>,
  ) {
    this.#connectionString = connectionString;
    this.#table = table;
    this.#lanes = lanes;
    this.#channel = channel;
    this.#migrate = migrate;
  }

  async #client(): Promise<PgClient> {
    const pg = await loadPg();
    const client = new pg.Client({ connectionString: this.#connectionString }) as unknown as PgClient;
    let broken = false;
    client.on('error', () => {
      broken = true;
      if (this.#worker === client) this.#worker = undefined;
      if (this.#listener === client) this.#listener = undefined;
    });
    await client.connect();
    if (broken) throw new BusError('BUSBAR_ERR_CONNECTION', 'the outbox relay lost its PostgreSQL connection');
    // The relay only records what the broker already confirmed: a cursor move lost in a database crash means the
    // rows are sent again with the same ids (at-least-once), never lost. So its commits need not wait for the disk.
    await client.query('SET synchronous_commit TO off');
    return client;
  }

  async #ensureListener(): Promise<void> {
    if (this.#listener || this.#closed) return;
    const client = await this.#client();
    client.on('notification', () => {
      this.#notified = true;
      this.#wake?.();
    });
    await client.query(`LISTEN ${quote(this.#channel)}`);
    this.#listener = client;
    // Rows may have been written while nobody listened.
    this.#notified = true;
  }

  async relayBatch(
    limit: number,
    chunk: number,
    publish: (messages: TransportMessage[]) => Promise<void>,
  ): Promise<number> {
    await this.#ensureListener().catch(() => {});
    if (this.#cleanupError !== undefined) {
      const error = this.#cleanupError;
      this.#cleanupError = undefined;
      throw error;
    }
    this.#worker ??= await this.#client();
    const db = this.#worker;
    if (!this.#migrated) {
      await this.#migrate(db);
      this.#migrated = true;
    }
    this.#notified = false;
    try {
      // BEGIN with the lane claim in one round trip, only when some row lies ahead of the lowest cursor (an idle relay
      // locks nothing). The claim's snapshot gives the line a cursor may not pass: its xmin. Inside the try: a failed
      // claim leaves the transaction open (aborted), and only ROLLBACK lets the connection work again.
      const claimed = (await db.query(
        `BEGIN; SELECT lane, sent_xid::text AS xid, sent_seq::text AS seq, ` +
          `pg_snapshot_xmin(pg_current_snapshot())::text AS xmin FROM ${this.#lanes} WHERE EXISTS (SELECT 1 FROM ` +
          `(SELECT o.xid, o.seq FROM ${this.#table} o ORDER BY o.xid DESC, o.seq DESC LIMIT 1) newest ` +
          `WHERE (newest.xid, newest.seq) > (SELECT sent_xid, sent_seq FROM ${this.#lanes} ORDER BY 1, 2 LIMIT 1)) ` +
          `ORDER BY lane FOR UPDATE SKIP LOCKED`,
      )) as unknown as Array<{ rows: unknown[] }>;
      const held = claimed[1]!.rows as Array<{ lane: number; xid: string; seq: string; xmin: string }>;
      if (held.length === 0) {
        await db.query('COMMIT');
        return 0;
      }
      const xmin = held[0]!.xmin;
      const cursors = new Map<number, Cursor>(held.map((l) => [l.lane, { xid: l.xid, seq: l.seq }]));
      let from: Cursor = [...cursors.values()].reduce((low, c) => (after(low, c) ? c : low));
      const lanes = [...cursors.keys()];
      const xids = Array.from({ length: LANES }, (_, lane) => cursors.get(lane)?.xid ?? '0');
      const seqs = Array.from({ length: LANES }, (_, lane) => cursors.get(lane)?.seq ?? '0');
      // A window of the (xid, seq) index from the lowest held cursor, in order, as a plain range with a LIMIT: the
      // lane and cursor filters only flag its rows (`mine`: a held lane's, ahead of its cursor); as a WHERE clause
      // PostgreSQL cannot estimate them and read and sorted the whole table for every chunk. `safe`: below the
      // claim's xmin (a row above it is deleted once sent). Rows come back as rows: aggregating them into one JSON
      // document saved the relay ~1 µs a message of decoding and cost PostgreSQL ~3 µs more.
      const take = (count: number, at: Cursor) =>
        db.query(
          `SELECT seq, id, type, key, source, time, content_type, headers, body, o.xid::text AS xid, ` +
            `o.lane = ANY($4::smallint[]) AND (o.xid, o.seq) > (($5::xid8[])[o.lane + 1], ` +
            `($6::bigint[])[o.lane + 1]) AS mine, o.xid < $1::xid8 AS safe FROM ${this.#table} o ` +
            `WHERE (o.xid, o.seq) > ($2::xid8, $3::bigint) ORDER BY o.xid, o.seq LIMIT $7`,
          [xmin, at.xid, at.seq, lanes, xids, seqs, count],
        );
      // The transaction's rows are read chunk by chunk, the next chunk read while the broker confirms this one:
      // the database's work and the broker's overlap, and the chunks still go out one after another, in order.
      const unsafe: string[] = [];
      let read = 0;
      let total = 0;
      let drained = false;
      let asked = Math.min(chunk, limit);
      let next: ReturnType<typeof take> | undefined = take(asked, from);
      while (next) {
        const rows = (await next).rows as Array<OutboxRow & { xid: string; mine: boolean; safe: boolean }>;
        read += rows.length;
        drained = rows.length < asked;
        const end = rows.at(-1);
        if (end) from = { xid: end.xid, seq: String(end.seq) };
        asked = Math.min(chunk, limit - read);
        next = !drained && asked > 0 ? take(asked, from) : undefined;
        // A rejected read-ahead is seen when it is awaited (after this chunk's publish), not as an unhandled one.
        next?.catch(() => {});
        const messages: TransportMessage[] = [];
        for (const row of rows) {
          if (!row.mine) continue;
          if (!row.safe) unsafe.push(String(row.seq));
          messages.push(rowToMessage(row));
        }
        total += messages.length;
        if (messages.length > 0) await publish(messages);
      }
      // Every held lane's rows up to `from` are sent now. The cursors may pass them only below xmin; above it the
      // rows sent are deleted by seq, and the cursors stop at xmin, which every row below it was, read to the end,
      // or not.
      const reached: Cursor = !drained && BigInt(from.xid) < BigInt(xmin) ? from : { xid: xmin, seq: '0' };
      const updates = [...cursors].filter(([, c]) => after(reached, c)).map(([lane]) => lane);
      const statements: string[] = [];
      if (updates.length > 0) {
        statements.push(
          `UPDATE ${this.#lanes} SET sent_xid = '${digits(reached.xid)}', sent_seq = ${digits(reached.seq)} ` +
            `WHERE lane IN (${updates.join(', ')})`,
        );
      }
      if (unsafe.length > 0) {
        statements.push(`DELETE FROM ${this.#table} WHERE seq = ANY('{${unsafe.map(digits).join(',')}}'::bigint[])`);
      }
      statements.push('COMMIT');
      await db.query(statements.join('; '));
      this.#sinceCleanup += total - unsafe.length;
      if (this.#sinceCleanup >= CLEANUP_EVERY || (drained && this.#sinceCleanup > 0)) this.#cleanup();
      if (drained) await this.#cleaning;
      return total;
    } catch (error) {
      await db.query('ROLLBACK').catch(() => {
        this.#worker = undefined;
        void db.end().catch(() => {});
      });
      throw error;
    }
  }

  /**
   * Deletes the rows behind every lane's cursor (sent by this relay or another) in one statement, on the listening
   * connection, beside the relay's next batches; one at a time. A failure keeps the rows for the next one and is
   * reported by the next batch.
   */
  #cleanup(): void {
    if (this.#cleaning || !this.#listener) return;
    const db = this.#listener;
    this.#sinceCleanup = 0;
    this.#cleaning = db
      .query(
        `DELETE FROM ${this.#table} o USING ${this.#lanes} l WHERE o.lane = l.lane ` +
          `AND (o.xid, o.seq) <= (l.sent_xid, l.sent_seq) ` +
          `AND (o.xid, o.seq) <= (SELECT sent_xid, sent_seq FROM ${this.#lanes} ORDER BY 1 DESC, 2 DESC LIMIT 1)`,
      )
      .then(
        () => {},
        (error) => {
          this.#cleanupError = error;
        },
      )
      .finally(() => {
        this.#cleaning = undefined;
      });
  }

  waitForWork(pollMs: number, signal: AbortSignal): Promise<void> {
    if (this.#notified || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, pollMs);
      signal.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    // A relay that stops leaves no sent rows behind it (a failure here leaves them to the next relay's delete).
    await this.#cleaning;
    if (this.#sinceCleanup > 0) this.#cleanup();
    await this.#cleaning;
    const clients = [this.#worker, this.#listener].filter((c): c is PgClient => c !== undefined);
    this.#worker = undefined;
    this.#listener = undefined;
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
}
