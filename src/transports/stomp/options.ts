/**
 * Connection settings for the STOMP transport, validated once from the TransportConfig and then frozen.
 * Query-string / config `options`: heartbeatMs (both directions; 0 turns heart-beats off), connectTimeoutMs,
 * publishTimeoutMs, reconnectDelayMs and maxReconnectDelayMs (the backoff between endpoints), windowBytesPerMessage
 * (how many bytes of Artemis's consumer-window-size one unit of prefetch buys).
 */
import { readFileSync } from 'node:fs';
import { BusError } from '../../errors.ts';
import type { TransportConfig } from '../../transport/contract.ts';

export const DEFAULT_HEARTBEAT_MS = 10_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_PUBLISH_TIMEOUT_MS = 30_000;
export const DEFAULT_RECONNECT_DELAY_MS = 100;
export const DEFAULT_MAX_RECONNECT_DELAY_MS = 5_000;
/** Artemis counts its consumer window in bytes of encoded message (headers included), not in messages. */
export const DEFAULT_WINDOW_BYTES_PER_MESSAGE = 2048;

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface StompTls {
  readonly ca?: Buffer | undefined;
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
  readonly rejectUnauthorized?: boolean | undefined;
}

export interface StompOptions {
  /** Tried in order on connect, then round robin on every reconnect. */
  readonly endpoints: readonly Endpoint[];
  readonly login: string | undefined;
  readonly passcode: string | undefined;
  /** Set for `stomps://` (or a config with `tls`): every endpoint is reached over TLS. */
  readonly tls: StompTls | undefined;
  readonly heartbeatMs: number;
  readonly connectTimeoutMs: number;
  readonly publishTimeoutMs: number;
  readonly reconnectDelayMs: number;
  readonly maxReconnectDelayMs: number;
  readonly windowBytesPerMessage: number;
}

const KNOWN = [
  'heartbeatMs',
  'connectTimeoutMs',
  'publishTimeoutMs',
  'reconnectDelayMs',
  'maxReconnectDelayMs',
  'windowBytesPerMessage',
];

function invalid(key: string, expected: string, got: unknown): BusError {
  return new BusError(
    'BUSBAR_ERR_INVALID_CONFIG',
    `invalid STOMP option '${key}': expected ${expected}; got ${JSON.stringify(got)}`,
  );
}

function integer(options: TransportConfig['options'], key: string, fallback: number, min: number): number {
  const raw = options[key];
  if (raw === undefined) return fallback;
  const value = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw invalid(key, `an integer >= ${min}`, raw);
  }
  return value;
}

function readPem(path: string | undefined, what: string): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (error) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      `cannot read tls.${what} file ${path}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}

export function stompOptions(config: TransportConfig): StompOptions {
  for (const key of Object.keys(config.options)) {
    if (!KNOWN.includes(key)) {
      throw new BusError('BUSBAR_ERR_INVALID_CONFIG', `unknown STOMP option '${key}': use one of ${KNOWN.join(', ')}`);
    }
  }
  const secure = /^(stomps|stomp\+ssl):/i.test(config.url) || config.tls !== undefined;
  const defaultPort = secure ? 61614 : 61613;
  const listed = config.endpoints.length > 0 ? config.endpoints : [`127.0.0.1:${defaultPort}`];
  const endpoints = listed.map((endpoint): Endpoint => {
    const match = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(endpoint);
    if (!match) throw invalid('endpoints', '"host:port"', endpoint);
    return Object.freeze({ host: match[1]!, port: match[2] ? Number(match[2]) : defaultPort });
  });
  const tls = secure
    ? Object.freeze({
        ca: readPem(config.tls?.ca, 'ca'),
        cert: readPem(config.tls?.cert, 'cert'),
        key: readPem(config.tls?.key, 'key'),
        rejectUnauthorized: config.tls?.rejectUnauthorized,
      })
    : undefined;
  const reconnectDelayMs = integer(config.options, 'reconnectDelayMs', DEFAULT_RECONNECT_DELAY_MS, 1);
  const maxReconnectDelayMs = integer(config.options, 'maxReconnectDelayMs', DEFAULT_MAX_RECONNECT_DELAY_MS, 1);
  if (maxReconnectDelayMs < reconnectDelayMs) {
    throw invalid('maxReconnectDelayMs', `at least reconnectDelayMs (${reconnectDelayMs})`, maxReconnectDelayMs);
  }
  return Object.freeze({
    endpoints: Object.freeze(endpoints),
    login: config.username,
    passcode: config.password,
    tls,
    heartbeatMs: integer(config.options, 'heartbeatMs', DEFAULT_HEARTBEAT_MS, 0),
    connectTimeoutMs: integer(config.options, 'connectTimeoutMs', DEFAULT_CONNECT_TIMEOUT_MS, 1),
    publishTimeoutMs: integer(config.options, 'publishTimeoutMs', DEFAULT_PUBLISH_TIMEOUT_MS, 1),
    reconnectDelayMs,
    maxReconnectDelayMs,
    windowBytesPerMessage: integer(config.options, 'windowBytesPerMessage', DEFAULT_WINDOW_BYTES_PER_MESSAGE, 1),
  });
}
