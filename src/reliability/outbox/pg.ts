/**
 * The PostgreSQL outbox: `outbox.send(client, type, body)` inside the application's transaction (a `pg` client
 * after BEGIN, anything with pg's `query(text, values)`, or the `postgres` package's `sql` inside `sql.begin()`), and
 * a relay (on `pg`) that wakes on LISTEN/NOTIFY. Several relays
 * may run at once: each batch holds its lanes with FOR UPDATE SKIP LOCKED, so no two relays send the same key at the
 * same time and each key's messages leave in the order they were written. "Written" is the order of the rows'
 * sequence numbers, taken at INSERT: two transactions that write the same key at the same time may commit in the
 * other order, and then the relay may send the later-numbered row first (transactions one after another per key,
 * the usual case, keep their order).
 *
 * Tables (created by install()): <schema>.<table> (one row per message, deleted once sent) and <table>_lanes.
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

const COLUMNS = 'seq, id, type, key, source, time, content_type, headers, body';

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

  /** Creates the schema and tables when missing (idempotent); run once at start-up or in a migration. */
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
      created_at timestamptz NOT NULL DEFAULT now())`);
    await q.query(`CREATE INDEX IF NOT EXISTS ${quote(`${this.table}_lane_seq`)} ON ${this.#qualified} (lane, seq)`);
    await q.query(`CREATE TABLE IF NOT EXISTS ${this.#lanesTable} (lane smallint PRIMARY KEY)`);
    await q.query(
      `INSERT INTO ${this.#lanesTable} (lane) SELECT generate_series(0, ${LANES - 1}) ON CONFLICT DO NOTHING`,
    );
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

  /** Messages written and not yet relayed. */
  async pending(db?: Queryable): Promise<number> {
    const q = db ?? (await this.#ownQueryable());
    const { rows } = await q.query(`SELECT count(*)::int AS n FROM ${this.#qualified}`);
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
      new PgRelaySource(this.#connectionString, this.#qualified, this.#lanesTable, this.#channel),
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

class PgRelaySource implements RelaySource {
  readonly #connectionString: string;
  readonly #table: string;
  readonly #lanes: string;
  readonly #channel: string;
  #worker: PgClient | undefined;
  #listener: PgClient | undefined;
  #notified = false;
  #wake: (() => void) | undefined;
  #closed = false;

  constructor(connectionString: string, table: string, lanes: string, channel: string) {
    this.#connectionString = connectionString;
    this.#table = table;
    this.#lanes = lanes;
    this.#channel = channel;
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
    // The relay only deletes what the broker already confirmed: a delete lost in a database crash means the rows
    // are sent again with the same ids (at-least-once), never lost. So its commits need not wait for the disk.
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
    this.#worker ??= await this.#client();
    const db = this.#worker;
    this.#notified = false;
    // BEGIN with the lane claim in one round trip; the rows are claimed by deleting and returning them (a failed
    // publish rolls the delete back); COMMIT once the broker confirmed them all.
    const claimed = (await db.query(
      `BEGIN; SELECT lane FROM ${this.#lanes} l WHERE EXISTS (SELECT 1 FROM ${this.#table} o WHERE o.lane = l.lane) ` +
        `ORDER BY lane FOR UPDATE SKIP LOCKED`,
    )) as unknown as Array<{ rows: unknown[] }>;
    try {
      const held = (claimed[1]!.rows as Array<{ lane: number }>).map((r) => r.lane);
      if (held.length === 0) {
        await db.query('COMMIT');
        return 0;
      }
      // Holding every lane (one relay, or the others idle), the primary key's order is all it needs. `= ANY(ARRAY(...))`
      // makes PostgreSQL find the rows by the primary key; `IN (SELECT ...)` was planned as a scan of the whole table.
      const take = (count: number) =>
        held.length === LANES
          ? db.query(
              `DELETE FROM ${this.#table} WHERE seq = ANY(ARRAY(SELECT seq FROM ${this.#table} ORDER BY seq LIMIT $1)) ` +
                `RETURNING ${COLUMNS}`,
              [count],
            )
          : db.query(
              `DELETE FROM ${this.#table} WHERE seq = ANY(ARRAY(SELECT seq FROM ${this.#table} ` +
                `WHERE lane = ANY($1::smallint[]) ORDER BY seq LIMIT $2)) RETURNING ${COLUMNS}`,
              [held, count],
            );
      // The transaction's rows are taken chunk by chunk, the next chunk read while the broker confirms this one:
      // the database's work and the broker's overlap, and the chunks still go out one after another, in order.
      let total = 0;
      let next: ReturnType<typeof take> | undefined = take(Math.min(chunk, limit));
      while (next) {
        const rows = (await next).rows as OutboxRow[];
        total += rows.length;
        next = rows.length === chunk && total < limit ? take(Math.min(chunk, limit - total)) : undefined;
        // A rejected read-ahead is seen when it is awaited (after this chunk's publish), not as an unhandled one.
        next?.catch(() => {});
        if (rows.length > 0) await publish(rows.sort((a, b) => Number(a.seq) - Number(b.seq)).map(rowToMessage));
      }
      await db.query('COMMIT');
      return total;
    } catch (error) {
      await db.query('ROLLBACK').catch(() => {
        this.#worker = undefined;
        void db.end().catch(() => {});
      });
      throw error;
    }
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
    const clients = [this.#worker, this.#listener].filter((c): c is PgClient => c !== undefined);
    this.#worker = undefined;
    this.#listener = undefined;
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
}
