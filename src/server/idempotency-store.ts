/**
 * Shared Idempotency-Key stores: where replicas keep the first answer to a keyed POST so that a retry landing on any
 * replica, or on a restarted one, gets it again. A key is first claimed (pending, with a short lifetime so that a
 * replica dying mid-publish does not block the key for long), then completed with the answer for the full window.
 *
 * - Redis (`broker` on the redis transport, or a redis:// URL): SET NX PX, and compare-and-set scripts.
 * - SQLite (`sqlite:<path>`, the default on the embedded broker): one table in a file every replica opens (WAL,
 *   busy timeout), so replicas on one machine, or on a shared volume that supports locking, share it.
 */
import { BusError } from '../errors.ts';
import type { StoredAnswer } from './idempotency.ts';

export type Claim =
  | { state: 'claimed' }
  | { state: 'pending'; fingerprint: string }
  | { state: 'done'; fingerprint: string; answer: StoredAnswer };

export interface SharedIdempotencyStore {
  /** Where it lives, for messages. */
  readonly where: string;
  /** Claims `id` for `token` for `pendingMs`, unless someone holds it (pending or done). */
  claim(id: string, token: string, fingerprint: string, pendingMs: number): Promise<Claim>;
  /** Keeps the answer for `ttlMs`, if `token` still holds the claim. */
  complete(id: string, token: string, fingerprint: string, answer: StoredAnswer, ttlMs: number): Promise<void>;
  /** Gives up the claim (the publish failed: a retry must publish). */
  release(id: string, token: string): Promise<void>;
  close(): Promise<void>;
}

interface Record_ {
  s: 'p' | 'd';
  t: string;
  f: string;
  a?: StoredAnswer;
}

function decode(text: string): Claim {
  const record = JSON.parse(text) as Record_;
  return record.s === 'd' && record.a
    ? { state: 'done', fingerprint: record.f, answer: record.a }
    : { state: 'pending', fingerprint: record.f };
}

export class SqliteIdempotencyStore implements SharedIdempotencyStore {
  readonly where: string;
  readonly #db: import('node:sqlite').DatabaseSync;
  readonly #sweeper: NodeJS.Timeout;

  private constructor(db: import('node:sqlite').DatabaseSync, path: string) {
    this.#db = db;
    this.where = `sqlite:${path}`;
    this.#sweeper = setInterval(() => {
      try {
        this.#db.prepare('DELETE FROM idempotency WHERE expires_at <= ?').run(Date.now());
      } catch {}
    }, 60_000);
    this.#sweeper.unref();
  }

  static async open(path: string): Promise<SqliteIdempotencyStore> {
    const { DatabaseSync } = await import('node:sqlite');
    try {
      const db = new DatabaseSync(path, { timeout: 10_000 });
      db.exec('PRAGMA journal_mode = WAL');
      db.exec('PRAGMA synchronous = NORMAL');
      db.exec(
        `CREATE TABLE IF NOT EXISTS idempotency (
           id TEXT PRIMARY KEY, record TEXT NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID`,
      );
      return new SqliteIdempotencyStore(db, path);
    } catch (error) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_CONFIG',
        `cannot open the idempotency store sqlite:${path}: ${(error as Error).message}: check server.idempotencyStore`,
        { cause: error },
      );
    }
  }

  async claim(id: string, token: string, fingerprint: string, pendingMs: number): Promise<Claim> {
    const now = Date.now();
    const db = this.#db;
    db.exec('BEGIN IMMEDIATE');
    try {
      const row = db.prepare('SELECT record, expires_at FROM idempotency WHERE id = ?').get(id) as
        | { record: string; expires_at: number }
        | undefined;
      let claim: Claim;
      if (row && row.expires_at > now) {
        claim = decode(row.record);
      } else {
        const record: Record_ = { s: 'p', t: token, f: fingerprint };
        db.prepare('INSERT OR REPLACE INTO idempotency (id, record, expires_at) VALUES (?, ?, ?)').run(
          id,
          JSON.stringify(record),
          now + pendingMs,
        );
        claim = { state: 'claimed' };
      }
      db.exec('COMMIT');
      return claim;
    } catch (error) {
      db.exec('ROLLBACK');
      throw error;
    }
  }

  async complete(id: string, token: string, fingerprint: string, answer: StoredAnswer, ttlMs: number): Promise<void> {
    const record: Record_ = { s: 'd', t: token, f: fingerprint, a: answer };
    this.#db
      .prepare(`UPDATE idempotency SET record = ?, expires_at = ? WHERE id = ? AND json_extract(record, '$.t') = ?`)
      .run(JSON.stringify(record), Date.now() + ttlMs, id, token);
  }

  async release(id: string, token: string): Promise<void> {
    this.#db
      .prepare(
        `DELETE FROM idempotency WHERE id = ? AND json_extract(record, '$.t') = ? AND json_extract(record, '$.s') = 'p'`,
      )
      .run(id, token);
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    try {
      this.#db.close();
    } catch {}
  }
}

/** The Redis commands the store needs (the redis transport's connection has them). */
export interface RedisCommands {
  send<T>(args: readonly string[]): Promise<T>;
  close(): Promise<void>;
}

const COMPLETE = `local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v).t == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return false`;
const RELEASE = `local v = redis.call('GET', KEYS[1])
if v then local r = cjson.decode(v) if r.t == ARGV[1] and r.s == 'p' then return redis.call('DEL', KEYS[1]) end end
return 0`;

export class RedisIdempotencyStore implements SharedIdempotencyStore {
  readonly where: string;
  readonly #redis: RedisCommands;
  readonly #prefix: string;
  readonly #ownsConnection: boolean;

  constructor(redis: RedisCommands, where: string, prefix: string, ownsConnection: boolean) {
    this.#redis = redis;
    this.where = where;
    this.#prefix = prefix;
    this.#ownsConnection = ownsConnection;
  }

  async claim(id: string, token: string, fingerprint: string, pendingMs: number): Promise<Claim> {
    const key = this.#prefix + id;
    const record: Record_ = { s: 'p', t: token, f: fingerprint };
    for (let i = 0; i < 5; i++) {
      const set = await this.#redis.send<string | null>([
        'SET',
        key,
        JSON.stringify(record),
        'NX',
        'PX',
        String(pendingMs),
      ]);
      if (set === 'OK') return { state: 'claimed' };
      const current = await this.#redis.send<string | null>(['GET', key]);
      if (current !== null) return decode(current);
      // It expired between the two commands: claim again.
    }
    throw new BusError('BUSBAR_ERR_BROKER', 'the idempotency key kept changing in Redis: retry');
  }

  async complete(id: string, token: string, fingerprint: string, answer: StoredAnswer, ttlMs: number): Promise<void> {
    const record: Record_ = { s: 'd', t: token, f: fingerprint, a: answer };
    await this.#redis.send(['EVAL', COMPLETE, '1', this.#prefix + id, token, JSON.stringify(record), String(ttlMs)]);
  }

  async release(id: string, token: string): Promise<void> {
    await this.#redis.send(['EVAL', RELEASE, '1', this.#prefix + id, token]);
  }

  async close(): Promise<void> {
    if (this.#ownsConnection) await this.#redis.close();
  }
}

/** The transport settings the store choice reads (ResolvedConfig has them). */
export interface StoreContext {
  readonly transportName: string;
  readonly transport: import('../transport/contract.ts').TransportConfig;
}

async function openRedis(
  transport: import('../transport/contract.ts').TransportConfig,
): Promise<RedisIdempotencyStore> {
  const { parseSettings, RedisConnection } = await import('../transports/redis/connection.ts');
  const settings = parseSettings(transport);
  const connection = await RedisConnection.open(settings);
  const where = `redis at ${settings.endpoints.map((e) => `${e.host}:${e.port}`).join(',')}`;
  return new RedisIdempotencyStore(connection, where, `${settings.prefix}:idempotency:`, true);
}

/**
 * Opens the store `setting` names (server.idempotencyStore), or the default for the broker; undefined means
 * process memory (one gateway, keys lost on restart).
 */
export async function openSharedStore(
  setting: string | undefined,
  context: StoreContext,
): Promise<SharedIdempotencyStore | undefined> {
  const value = setting ?? (['redis', 'embedded'].includes(context.transportName) ? 'broker' : 'memory');
  if (value.toLowerCase() === 'memory') return undefined;
  if (value.toLowerCase() === 'broker') {
    if (context.transportName === 'redis') return openRedis(context.transport);
    if (context.transportName === 'embedded') {
      const { parseEmbeddedOptions } = await import('../transports/embedded/options.ts');
      return SqliteIdempotencyStore.open(`${parseEmbeddedOptions(context.transport).path}.idempotency`);
    }
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      `server.idempotencyStore: the ${context.transportName} broker cannot keep Idempotency-Key answers for the ` +
        'gateway: name a store every replica reaches, sqlite:<path> (replicas on one machine or a shared volume) ' +
        'or a redis:// URL, or use memory (one gateway only)',
    );
  }
  if (/^sqlite:/i.test(value)) {
    const { resolve } = await import('node:path');
    return SqliteIdempotencyStore.open(resolve(value.slice('sqlite:'.length)));
  }
  const url = new URL(value);
  return openRedis({
    url: value,
    endpoints: [],
    options: {},
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
  });
}
