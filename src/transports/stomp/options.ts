/**
 * Connection settings for the STOMP transport, validated once from the TransportConfig and then frozen.
 * Query-string / config `options`: heartbeatMs (both directions; 0 turns heart-beats off), connectTimeoutMs,
 * publishTimeoutMs, reconnectDelayMs and maxReconnectDelayMs (the backoff between endpoints), windowBytesPerMessage
 * (how many bytes of Artemis's consumer-window-size one unit of prefetch buys).
 */
import type { TransportConfig } from '../../transport/contract.ts';
import { OptionReader, parseEndpoint, readPem } from '../../transport/options.ts';

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

const LABEL = 'STOMP';
const KNOWN = [
  'heartbeatMs',
  'connectTimeoutMs',
  'publishTimeoutMs',
  'reconnectDelayMs',
  'maxReconnectDelayMs',
  'windowBytesPerMessage',
];

export function stompOptions(config: TransportConfig): StompOptions {
  const o = new OptionReader(LABEL, config.options, KNOWN);
  const secure = /^(stomps|stomp\+ssl):/i.test(config.url) || config.tls !== undefined;
  const defaultPort = secure ? 61614 : 61613;
  const listed = config.endpoints.length > 0 ? config.endpoints : [`127.0.0.1:${defaultPort}`];
  const endpoints = listed.map((endpoint): Endpoint => Object.freeze(parseEndpoint(LABEL, endpoint, defaultPort)));
  const tls = secure
    ? Object.freeze({
        ca: readPem(config.tls?.ca, 'ca'),
        cert: readPem(config.tls?.cert, 'cert'),
        key: readPem(config.tls?.key, 'key'),
        rejectUnauthorized: config.tls?.rejectUnauthorized,
      })
    : undefined;
  const reconnectDelayMs = o.integer('reconnectDelayMs', DEFAULT_RECONNECT_DELAY_MS, { min: 1 });
  const maxReconnectDelayMs = o.integer('maxReconnectDelayMs', DEFAULT_MAX_RECONNECT_DELAY_MS, { min: 1 });
  if (maxReconnectDelayMs < reconnectDelayMs) {
    throw o.invalid('maxReconnectDelayMs', `at least reconnectDelayMs (${reconnectDelayMs})`, maxReconnectDelayMs);
  }
  return Object.freeze({
    endpoints: Object.freeze(endpoints),
    login: config.username,
    passcode: config.password,
    tls,
    heartbeatMs: o.integer('heartbeatMs', DEFAULT_HEARTBEAT_MS),
    connectTimeoutMs: o.integer('connectTimeoutMs', DEFAULT_CONNECT_TIMEOUT_MS, { min: 1 }),
    publishTimeoutMs: o.integer('publishTimeoutMs', DEFAULT_PUBLISH_TIMEOUT_MS, { min: 1 }),
    reconnectDelayMs,
    maxReconnectDelayMs,
    windowBytesPerMessage: o.integer('windowBytesPerMessage', DEFAULT_WINDOW_BYTES_PER_MESSAGE, { min: 1 }),
  });
}
