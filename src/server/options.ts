/**
 * The gateway's settings: the config file's `server` section, overridden by startServer() options (the CLI's flags).
 * Validated once, with errors that name the key by path, then frozen.
 */
import { BusError } from '../errors.ts';

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8080;

export const DEFAULT_LIMITS = Object.freeze({
  /** Largest request body (a single message, or a whole batch as JSON). */
  bodyBytes: 4 * 1024 * 1024,
  /** Most messages in one publish batch. */
  batchMessages: 1000,
  /** Largest request head (request line + headers); beyond it the answer is 431. */
  headerBytes: 16 * 1024,
  /** Longest long-poll `wait`. */
  maxWaitMs: 30_000,
  /** Most messages one pull returns (`max`), and most receipts in one ack / nack. */
  maxPull: 1000,
  /** Longest lease a pull or stream may ask for (`lease`). */
  maxLeaseMs: 10 * 60_000,
  /** Longest nack delay. */
  maxNackDelayMs: 24 * 60 * 60_000,
  /** Server-Sent Event streams open at once. */
  streams: 64,
  /** Long polls waiting at once. */
  longPolls: 256,
  /** Unacked leases one stream may hold before it waits for acks (`inflight` may lower it). */
  streamInflight: 100,
  /** Idempotency keys remembered at once. */
  idempotencyKeys: 100_000,
  /** How long an Idempotency-Key is remembered. */
  idempotencyTtlMs: 60 * 60_000,
  /** A broker call (publish, ack, admin) that takes longer answers 503 (retry with the same Idempotency-Key). */
  brokerTimeoutMs: 15_000,
});

export type Limits = { -readonly [K in keyof typeof DEFAULT_LIMITS]: number };

export type Scope = 'publish' | 'consume' | 'admin';
export const SCOPES: readonly Scope[] = ['publish', 'consume', 'admin'];

export interface TokenConfig {
  /** Shown in logs and used as the CloudEvents source of what the token publishes. */
  name: string;
  /** The bearer token itself, or `sha256` (hex) of it so the file holds no secret. */
  token?: string;
  sha256?: string;
  /** Type patterns: an exact name, a prefix ending in `*` (`orders.*`), or `*` for every type. */
  publish?: string[];
  consume?: string[];
  admin?: string[];
}

export interface ServerTls {
  /** Paths to PEM files. */
  cert: string;
  key: string;
  ca?: string;
}

/** The config file's `server` section. */
export interface ServerSection {
  host?: string;
  port?: number;
  insecure?: boolean;
  tls?: ServerTls;
  tokens?: TokenConfig[];
  /** HMAC key for receipts (>= 32 characters); random per start when absent. */
  receiptSecret?: string;
  limits?: Partial<Limits>;
  /** A (type, group) consumer with no pulls, streams or leases for this long is closed. */
  consumerIdleMs?: number;
  /**
   * Messages the gateway's consumer of a (type, group) may hold, ready ahead of pulls or leased (default 1000): so
   * also the most leases one group has out through this gateway; pulls beyond it queue for up to their wait.
   */
  prefetch?: number;
  /** The URL the other replicas reach this one at (written into its receipts); default: where it listens. */
  advertiseUrl?: string;
  /**
   * Where Idempotency-Key answers are kept: `memory` (this process), `broker` (the broker itself: Redis), `sqlite:<path>`
   * (a file every replica opens), or a `redis://` / `rediss://` URL. Default: `broker` on Redis, a file beside the
   * database on the embedded broker, else `memory`.
   */
  idempotencyStore?: string;
  /** On SIGTERM: how long the gateway waits for clients to settle its leases before it returns the rest and exits. */
  drainMs?: number;
}

export interface ServerSettings {
  readonly host: string;
  readonly port: number;
  readonly insecure: boolean;
  readonly tls: ServerTls | undefined;
  readonly tokens: readonly TokenConfig[];
  readonly receiptSecret: string | undefined;
  readonly limits: Readonly<Limits>;
  readonly consumerIdleMs: number;
  readonly prefetch: number;
  readonly advertiseUrl: string | undefined;
  readonly idempotencyStore: string | undefined;
  readonly drainMs: number;
}

const SECTION_KEYS: Record<string, string> = {
  host: 'a host name or IP address',
  port: 'a port number 0-65535',
  insecure: 'true or false',
  tls: 'an object with cert and key (paths to PEM files) and optionally ca',
  tokens: 'a list of { name, token | sha256, publish, consume, admin }',
  receiptSecret: 'a string of at least 32 characters',
  limits: `an object with any of ${Object.keys(DEFAULT_LIMITS).join(', ')}`,
  consumerIdleMs: 'a number of milliseconds > 0',
  prefetch: 'a whole number >= 1',
  advertiseUrl: 'an http:// or https:// URL (where the other replicas reach this one)',
  idempotencyStore: "'memory', 'broker', 'sqlite:<path>' or a redis:// / rediss:// URL",
  drainMs: 'a whole number of milliseconds >= 0',
};

const PATTERN = /^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,199}\*?)$/;

function invalid(where: string, path: string, message: string): BusError {
  return new BusError('BUSBAR_ERR_INVALID_CONFIG', `${where}: server.${path}: ${message}`);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function wholeNumber(value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

function checkTokens(value: unknown, where: string): TokenConfig[] {
  if (!Array.isArray(value)) throw invalid(where, 'tokens', `expected ${SECTION_KEYS.tokens}; got ${describe(value)}`);
  const names = new Set<string>();
  return value.map((entry, i) => {
    const at = `tokens[${i}]`;
    if (!isObject(entry)) throw invalid(where, at, `expected an object; got ${describe(entry)}`);
    for (const key of Object.keys(entry)) {
      if (!['name', 'token', 'sha256', ...SCOPES].includes(key)) {
        throw invalid(where, `${at}.${key}`, 'unknown key; expected name, token, sha256, publish, consume, admin');
      }
    }
    if (typeof entry.name !== 'string' || entry.name === '') {
      throw invalid(where, `${at}.name`, `expected a non-empty string; got ${describe(entry.name)}`);
    }
    if (names.has(entry.name)) throw invalid(where, `${at}.name`, `duplicate token name ${JSON.stringify(entry.name)}`);
    names.add(entry.name);
    const hasToken = entry.token !== undefined;
    const hasHash = entry.sha256 !== undefined;
    if (hasToken === hasHash)
      throw invalid(where, at, 'give exactly one of token (the secret) or sha256 (its hex digest)');
    if (hasToken && (typeof entry.token !== 'string' || entry.token.length < 16)) {
      throw invalid(where, `${at}.token`, 'expected a string of at least 16 characters');
    }
    if (hasHash && (typeof entry.sha256 !== 'string' || !/^[0-9a-f]{64}$/i.test(entry.sha256))) {
      throw invalid(where, `${at}.sha256`, 'expected 64 hex digits (sha256 of the token)');
    }
    const token: TokenConfig = { name: entry.name };
    if (hasToken) token.token = entry.token as string;
    if (hasHash) token.sha256 = (entry.sha256 as string).toLowerCase();
    for (const scope of SCOPES) {
      const patterns = entry[scope];
      if (patterns === undefined) continue;
      if (!Array.isArray(patterns)) {
        throw invalid(where, `${at}.${scope}`, `expected a list of type patterns; got ${describe(patterns)}`);
      }
      patterns.forEach((p, j) => {
        if (typeof p !== 'string' || !PATTERN.test(p)) {
          throw invalid(
            where,
            `${at}.${scope}[${j}]`,
            `expected a type name, a prefix ending in '*', or '*'; got ${describe(p)}`,
          );
        }
      });
      token[scope] = [...patterns];
    }
    return token;
  });
}

function checkLimits(value: unknown, where: string): Partial<Limits> {
  if (!isObject(value)) throw invalid(where, 'limits', `expected ${SECTION_KEYS.limits}; got ${describe(value)}`);
  const out: Partial<Limits> = {};
  for (const [key, v] of Object.entries(value)) {
    if (!(key in DEFAULT_LIMITS)) {
      throw invalid(where, `limits.${key}`, `unknown limit; expected one of ${Object.keys(DEFAULT_LIMITS).join(', ')}`);
    }
    if (!wholeNumber(v, 1)) throw invalid(where, `limits.${key}`, `expected a whole number >= 1; got ${describe(v)}`);
    out[key as keyof Limits] = v;
  }
  return out;
}

/** Checks the config file's `server` section; `where` names the file in errors. */
export function validateServerSection(input: unknown, where = 'config'): ServerSection {
  if (input === undefined) return {};
  if (!isObject(input)) throw invalid(where, '(section)', `expected an object; got ${describe(input)}`);
  const out: ServerSection = {};
  for (const [key, value] of Object.entries(input)) {
    if (value === undefined) continue;
    const expected = SECTION_KEYS[key];
    if (!expected) throw invalid(where, key, `unknown key; expected one of ${Object.keys(SECTION_KEYS).join(', ')}`);
    const bad = () => invalid(where, key, `expected ${expected}; got ${describe(value)}`);
    switch (key) {
      case 'host':
        if (typeof value !== 'string' || value === '') throw bad();
        out.host = value;
        break;
      case 'port':
        if (!wholeNumber(value, 0, 65535)) throw bad();
        out.port = value;
        break;
      case 'insecure':
        if (typeof value !== 'boolean') throw bad();
        out.insecure = value;
        break;
      case 'tls':
        if (!isObject(value) || typeof value.cert !== 'string' || typeof value.key !== 'string') throw bad();
        if (value.ca !== undefined && typeof value.ca !== 'string') throw invalid(where, 'tls.ca', 'expected a path');
        for (const k of Object.keys(value)) {
          if (!['cert', 'key', 'ca'].includes(k))
            throw invalid(where, `tls.${k}`, 'unknown key; expected cert, key, ca');
        }
        out.tls = { cert: value.cert, key: value.key, ...(value.ca ? { ca: value.ca as string } : {}) };
        break;
      case 'tokens':
        out.tokens = checkTokens(value, where);
        break;
      case 'receiptSecret':
        if (typeof value !== 'string' || value.length < 32) throw bad();
        out.receiptSecret = value;
        break;
      case 'limits':
        out.limits = checkLimits(value, where);
        break;
      case 'consumerIdleMs':
        if (!wholeNumber(value, 1)) throw bad();
        out.consumerIdleMs = value;
        break;
      case 'prefetch':
        if (!wholeNumber(value, 1, 10_000)) throw bad();
        out.prefetch = value;
        break;
      case 'advertiseUrl':
        if (typeof value !== 'string' || !/^https?:\/\/[^/?#\s]+\/?$/i.test(value)) throw bad();
        out.advertiseUrl = value;
        break;
      case 'idempotencyStore':
        if (typeof value !== 'string' || !/^(memory|broker|sqlite:.+|rediss?:\/\/.+)$/i.test(value)) throw bad();
        out.idempotencyStore = value;
        break;
      case 'drainMs':
        if (!wholeNumber(value, 0, 2 ** 31 - 1)) throw bad();
        out.drainMs = value;
        break;
    }
  }
  return out;
}

/** Merges the file's section with explicit overrides (which win) and fills defaults. */
export function resolveServerSettings(section: ServerSection, overrides: ServerSection): ServerSettings {
  const merged: ServerSection = { ...section };
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
  }
  const limits = Object.freeze({ ...DEFAULT_LIMITS, ...section.limits, ...overrides.limits });
  return Object.freeze({
    host: merged.host ?? DEFAULT_HOST,
    port: merged.port ?? DEFAULT_PORT,
    insecure: merged.insecure ?? false,
    tls: merged.tls ? Object.freeze({ ...merged.tls }) : undefined,
    tokens: Object.freeze([...(merged.tokens ?? [])]),
    receiptSecret: merged.receiptSecret,
    limits,
    consumerIdleMs: merged.consumerIdleMs ?? 60_000,
    prefetch: merged.prefetch ?? 1000,
    advertiseUrl: merged.advertiseUrl,
    idempotencyStore: merged.idempotencyStore,
    drainMs: merged.drainMs ?? 10_000,
  });
}

/** 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h) || h === '::ffff:127.0.0.1';
}
