/**
 * Connections to Redis through node-redis: settings from the TransportConfig, one shared connection for commands,
 * a duplicate per subscription for its blocking XREADGROUP, Lua scripts by SHA with a fallback to EVAL, and
 * node-redis failures turned into BusErrors.
 */
import { AbortError, createClient, createSentinel, ErrorReply, RESP_TYPES, TimeoutError } from 'redis';
import { BusError, type ErrorCode } from '../../errors.ts';
import type { TransportConfig } from '../../transport/contract.ts';
import { OptionReader, parseEndpoint, readTlsFiles } from '../../transport/options.ts';
import type { Script } from './scripts.ts';

export type Arg = string | Buffer;

/** Replies keep bulk strings as Buffers, so bodies stay byte-exact. */
const BINARY = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } } as const;

export interface RedisSettings {
  readonly mode: 'single' | 'sentinel';
  readonly endpoints: readonly { host: string; port: number }[];
  readonly sentinelName: string | undefined;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly database: number;
  readonly tls: { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized?: boolean } | undefined;
  readonly prefix: string;
  readonly connectTimeoutMs: number;
  /** A command (publish included) that has no reply within this time fails with a retryable error. */
  readonly commandTimeoutMs: number;
  /** A publish also waits (WAIT) until this many replicas have its entries, so a failover cannot lose them. */
  readonly replicas: number;
}

export const DEFAULT_PREFIX = 'busbar';
export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
export const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;

const KNOWN_OPTIONS = ['prefix', 'sentinel', 'db', 'connectTimeoutMs', 'commandTimeoutMs', 'replicas'];

export function parseSettings(config: TransportConfig): RedisSettings {
  const url = /^(rediss?):\/\/(?:[^@/]*@)?([^/?]*)(\/[^?]*)?/i.exec(config.url);
  if (!url) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_URL',
      `invalid Redis URL: expected redis://[user:password@]host[:port][,host2:port2][/db][?options] or rediss://...`,
    );
  }
  const options = new OptionReader('redis', config.options, KNOWN_OPTIONS);
  const hosts = config.endpoints.length ? config.endpoints : url[2]!.split(',').filter(Boolean);
  const sentinelName = options.string('sentinel');
  const endpoints = (hosts.length ? hosts : ['localhost']).map((h) =>
    parseEndpoint('redis', h, sentinelName ? 26379 : 6379),
  );
  if (endpoints.length > 1 && !sentinelName) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      `the redis transport got ${endpoints.length} endpoints: list several only as Sentinels, with ?sentinel=<master name> (e.g. redis://s1:26379,s2:26379?sentinel=mymaster); Redis Cluster is not supported`,
    );
  }
  const dbText = config.options.db ?? url[3]?.slice(1);
  const database = dbText === undefined || dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(database) || database < 0) {
    throw new BusError('BUSBAR_ERR_INVALID_URL', `invalid Redis database '${dbText}': use a number such as /0`);
  }
  const tlsWanted = url[1]!.toLowerCase() === 'rediss' || config.tls !== undefined;
  const prefix = options.string('prefix', DEFAULT_PREFIX);
  if (!/^[A-Za-z0-9._-]+$/.test(prefix)) {
    throw options.invalid('prefix', 'a key prefix of A-Z a-z 0-9 . _ -');
  }
  return {
    mode: sentinelName ? 'sentinel' : 'single',
    endpoints,
    sentinelName,
    username: config.username,
    password: config.password,
    database,
    tls: tlsWanted ? readTlsFiles(config.tls) : undefined,
    prefix,
    connectTimeoutMs: options.integer('connectTimeoutMs', DEFAULT_CONNECT_TIMEOUT_MS, { min: 1 }),
    commandTimeoutMs: options.integer('commandTimeoutMs', DEFAULT_COMMAND_TIMEOUT_MS, { min: 1 }),
    replicas: options.integer('replicas', 0),
  };
}

/** The part of node-redis's client (or sentinel) surface busbar uses. */
interface RawClient {
  connect(): Promise<unknown>;
  destroy(): unknown;
  close(): Promise<void>;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  readonly isReady: boolean;
}

/** One logical connection: a single client, or a sentinel-managed master. */
export class RedisConnection {
  readonly settings: RedisSettings;
  readonly #raw: RawClient;
  readonly #send: (args: readonly Arg[], options: object) => Promise<unknown>;
  #connected = false;
  #closed = false;
  #lastError: unknown;
  /** The abort signal commands sent now share, and the earliest time a command may still be given it. */
  #shared: { signal: AbortSignal; until: number } | undefined;

  private constructor(settings: RedisSettings) {
    this.settings = settings;
    const reconnectStrategy = (retries: number, cause: Error): number | Error => {
      // Before the first connection, give up after connectTimeoutMs or on a refusal no retry can fix.
      if (!this.#connected) {
        if (cause instanceof ErrorReply || retries * 250 >= settings.connectTimeoutMs) return cause;
        return 250;
      }
      return Math.min(2 ** retries * 50, 1000) + Math.floor(Math.random() * 100);
    };
    const socket = {
      host: settings.endpoints[0]!.host,
      port: settings.endpoints[0]!.port,
      connectTimeout: settings.connectTimeoutMs,
      reconnectStrategy,
      ...(settings.tls ? { tls: true as const, ...settings.tls } : {}),
    };
    // No timer per command (see #deadline): 0 turns node-redis's own per-command timeout off.
    const common = { RESP: 2 as const, maintNotifications: 'disabled' as const, commandOptions: { timeout: 0 } };
    if (settings.mode === 'sentinel') {
      const sentinel = createSentinel({
        ...common,
        name: settings.sentinelName!,
        sentinelRootNodes: settings.endpoints.map((e) => ({ host: e.host, port: e.port })),
        masterPoolSize: 1,
        nodeClientOptions: {
          RESP: 2,
          username: settings.username,
          password: settings.password,
          database: settings.database,
          socket: {
            connectTimeout: settings.connectTimeoutMs,
            ...(settings.tls ? { tls: true, ...settings.tls } : {}),
          },
        },
      } as Parameters<typeof createSentinel>[0]);
      this.#raw = sentinel as unknown as RawClient;
      this.#send = (args, options) => sentinel.sendCommand(false, args as Arg[], options);
    } else {
      const client = createClient({
        ...common,
        socket,
        username: settings.username,
        password: settings.password,
        database: settings.database,
      });
      this.#raw = client as unknown as RawClient;
      this.#send = (args, options) => client.sendCommand(args as Arg[], options);
    }
    // node-redis emits 'error' on every dropped connection while it reconnects: keep the last for messages.
    this.#raw.on('error', (error) => {
      this.#lastError = error;
    });
  }

  static async open(settings: RedisSettings): Promise<RedisConnection> {
    const connection = new RedisConnection(settings);
    await connection.#connect();
    return connection;
  }

  async #connect(): Promise<void> {
    try {
      await this.#raw.connect();
      this.#connected = true;
    } catch (error) {
      this.#closed = true;
      const where = this.settings.endpoints.map((e) => `${e.host}:${e.port}`).join(',');
      const cause = error ?? this.#lastError;
      if (isAuthError(cause)) {
        throw new BusError(
          'BUSBAR_ERR_AUTH',
          `Redis at ${where} refused the credentials: ${message(cause)}: check username and password`,
          {
            cause,
          },
        );
      }
      throw new BusError(
        'BUSBAR_ERR_CONNECTION',
        `cannot connect to Redis at ${where}: ${message(cause)}: check that Redis runs there and the URL is right`,
        { cause },
      );
    }
  }

  /** A new connection with the same settings (for a blocking read that must not stall other commands). */
  duplicate(): Promise<RedisConnection> {
    return RedisConnection.open(this.settings);
  }

  get isReady(): boolean {
    return this.#raw.isReady;
  }

  /** Sends a command; bulk-string replies come back as strings. */
  send<T>(args: readonly Arg[], options: { timeout?: number } = {}): Promise<T> {
    return this.#send(args, this.#timed(options)) as Promise<T>;
  }

  /** Sends a command; bulk-string replies come back as Buffers. */
  sendBinary<T>(args: readonly Arg[], options: { timeout?: number } = {}): Promise<T> {
    return this.#send(args, this.#timed({ ...BINARY, ...options })) as Promise<T>;
  }

  /** A command with its own timeout keeps node-redis's timer; the others get the shared deadline. */
  #timed<O extends { timeout?: number }>(options: O): O & { abortSignal?: AbortSignal } {
    return options.timeout === undefined ? { ...options, abortSignal: this.#deadline() } : options;
  }

  /**
   * commandTimeoutMs for commands without their own: node-redis arms an AbortSignal.timeout per command, whose timer
   * fires (and builds a DOMException) long after the command is done; a profile of a consumer awaiting each ack put
   * 12% of its CPU there. Commands sent within one tenth of the timeout (at most a second) share one signal instead,
   * so each is given between commandTimeoutMs and that much longer. node-redis applies either only until the command
   * is written to the socket: the signal fails a command the client could not send in time (while reconnecting).
   */
  #deadline(): AbortSignal {
    const now = Date.now();
    const timeoutMs = this.settings.commandTimeoutMs;
    if (this.#shared === undefined || now > this.#shared.until) {
      const slack = Math.min(1000, Math.ceil(timeoutMs / 10));
      this.#shared = { signal: AbortSignal.timeout(timeoutMs + slack), until: now + slack };
    }
    return this.#shared.signal;
  }

  /** Runs a script by SHA, loading it with EVAL when the server does not know it (e.g. after a restart). */
  async run<T>(script: Script, keys: readonly string[], args: readonly Arg[], binary = false): Promise<T> {
    const tail = [String(keys.length), ...keys, ...args];
    const send = binary ? this.sendBinary.bind(this) : this.send.bind(this);
    try {
      return await send<T>(['EVALSHA', script.sha, ...tail]);
    } catch (error) {
      if (error instanceof ErrorReply && error.message.startsWith('NOSCRIPT')) {
        return send<T>(['EVAL', script.source, ...tail]);
      }
      throw error;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#raw.close();
    } catch {
      this.#raw.destroy();
    }
  }

  /** Closes at once, failing whatever is in flight (used to end a blocked read). */
  destroy(): void {
    this.#closed = true;
    this.#raw.destroy();
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A refusal of the credentials or of a command for this user (node-redis may wrap it, e.g. after a reconnect). */
export function isAuthError(error: unknown): boolean {
  for (let e = error; e instanceof Error; e = e.cause) {
    if (/^(NOAUTH|WRONGPASS|NOPERM)/.test(e.message)) return true;
  }
  return false;
}

/** True for a reply saying a stream or group is missing (after a type was deleted or an unpersisted restart). */
export function isNoGroup(error: unknown): boolean {
  return error instanceof ErrorReply && error.message.startsWith('NOGROUP');
}

const TRANSIENT_REPLY = /^(LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN|OOM|NOREPLICAS)/;

/** A node-redis failure as a BusError: server refusals are final, lost connections and timeouts retryable. */
export function redisError(error: unknown, code: ErrorCode, context: string): BusError {
  if (error instanceof BusError) return error;
  if (isAuthError(error)) {
    return new BusError('BUSBAR_ERR_AUTH', `${context}: ${message(error)}: check the Redis user's password and ACL`, {
      cause: error,
    });
  }
  if (error instanceof ErrorReply) {
    const retryable = TRANSIENT_REPLY.test(error.message);
    return new BusError(
      retryable ? code : 'BUSBAR_ERR_BROKER',
      `${context}: Redis replied ${message(error)}${retryable ? ': retry shortly' : ''}`,
      { cause: error, retryable },
    );
  }
  if (error instanceof AbortError || error instanceof TimeoutError) {
    // The shared deadline (#deadline) or a command's own timeout: the client could not send it in time.
    return new BusError(
      code,
      `${context}: Redis was unreachable for longer than the command timeout (option commandTimeoutMs); retry`,
      {
        cause: error,
        retryable: true,
      },
    );
  }
  if (error instanceof Error && error.name === 'ClientClosedError') {
    return new BusError('BUSBAR_ERR_CLOSED', `${context}: the Redis connection is closed`, { cause: error });
  }
  return new BusError(code, `${context}: ${message(error)}: Redis may be restarting; retry`, {
    cause: error,
    retryable: true,
  });
}
