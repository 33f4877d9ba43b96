/**
 * Settings of the ZeroMQ transport (docs/wire/zeromq.md), validated once from the TransportConfig and then frozen.
 * The URL's hosts are the endpoints to subscribe to (fedmsg's `endpoints`); `bind` (fedmsg's own endpoint, passive
 * mode) or `relay` (fedmsg-relay's inbound endpoint, active mode) says how to publish.
 */
import { BusError } from '../../errors.ts';
import type { TransportConfig } from '../../transport/contract.ts';

/** fedmsg's own defaults (fedmsg/config.py): a stock fedmsg set-up and busbar agree without configuration. */
export const DEFAULT_TOPIC_PREFIX = 'com.example';
export const DEFAULT_ENVIRONMENT = 'dev';
/** fedmsg's default is 0 (no limit); busbar bounds every queue. */
export const DEFAULT_HIGH_WATER_MARK = 10_000;
export const DEFAULT_SEND_WAIT_MS = 5_000;
export const DEFAULT_GROUP_BUFFER = 10_000;
export const DEFAULT_READY_TIMEOUT_MS = 5_000;
/** fedmsg's `zmq_linger`. */
export const DEFAULT_LINGER_MS = 1_000;

export interface ZeromqOptions {
  /** ZeroMQ endpoints the SUB socket connects to, e.g. `tcp://host:3000`. */
  readonly subscribe: readonly string[];
  /** Endpoints the publisher binds (fedmsg passive mode); empty when it connects to a relay or does not publish. */
  readonly bind: readonly string[];
  /** Relay inbound endpoints the publisher connects to (fedmsg active mode, `relay_inbound`). */
  readonly relay: readonly string[];
  readonly topicPrefix: string;
  readonly environment: string;
  readonly highWaterMark: number;
  readonly sendWaitMs: number;
  readonly groupBuffer: number;
  readonly readyTimeoutMs: number;
  readonly lingerMs: number;
}

const KNOWN = [
  'bind',
  'relay',
  'topicPrefix',
  'environment',
  'highWaterMark',
  'sendWaitMs',
  'groupBuffer',
  'readyTimeoutMs',
  'lingerMs',
];

function invalid(key: string, expected: string, got: unknown): BusError {
  return new BusError(
    'BUSBAR_ERR_INVALID_CONFIG',
    `invalid zeromq option '${key}': expected ${expected}; got ${JSON.stringify(got)}`,
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

const ENDPOINT = /^(tcp|ipc|inproc|pgm|epgm|ws|wss):\/\/\S+$/;

function endpoints(options: TransportConfig['options'], key: string): string[] {
  const raw = options[key];
  if (raw === undefined) return [];
  if (typeof raw !== 'string') throw invalid(key, 'ZeroMQ endpoints separated by commas', raw);
  const list = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  for (const endpoint of list) {
    if (!ENDPOINT.test(endpoint)) throw invalid(key, 'ZeroMQ endpoints such as tcp://127.0.0.1:3000', endpoint);
  }
  return list;
}

function topicPart(options: TransportConfig['options'], key: string, fallback: string): string {
  const raw = options[key] ?? fallback;
  if (typeof raw !== 'string' || !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(raw)) {
    throw invalid(key, 'dot-separated words of A-Z a-z 0-9 _ -, e.g. org.fedoraproject', raw);
  }
  return raw;
}

export function zeromqOptions(config: TransportConfig): ZeromqOptions {
  for (const key of Object.keys(config.options)) {
    if (!KNOWN.includes(key)) {
      throw new BusError('BUSBAR_ERR_INVALID_CONFIG', `unknown zeromq option '${key}': use one of ${KNOWN.join(', ')}`);
    }
  }
  if (config.username !== undefined || config.password !== undefined || config.tls !== undefined) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      'the zeromq transport takes no credentials or TLS settings (fedmsg has neither; it signs messages instead): ' +
        'remove them, and protect the endpoints by network (a VPN, an SSH tunnel, stunnel)',
    );
  }
  const subscribe = config.endpoints.map((hostPort) => {
    if (!/:\d+$/.test(hostPort)) throw invalid('endpoints', '"host:port" (ZeroMQ has no default port)', hostPort);
    return `tcp://${hostPort}`;
  });
  const bind = endpoints(config.options, 'bind');
  const relay = endpoints(config.options, 'relay');
  if (bind.length > 0 && relay.length > 0) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      "zeromq options 'bind' and 'relay' are mutually exclusive: publish either on your own endpoint (bind) or " +
        "through a fedmsg-relay's inbound endpoint (relay)",
    );
  }
  if (subscribe.length === 0 && bind.length === 0 && relay.length === 0) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      'a zeromq broker URL needs endpoints to subscribe to (zeromq://host:port,...) or a way to publish ' +
        '(?bind=tcp://*:3000 or ?relay=tcp://relay:2001)',
    );
  }
  return Object.freeze({
    subscribe: Object.freeze(subscribe),
    bind: Object.freeze(bind),
    relay: Object.freeze(relay),
    topicPrefix: topicPart(config.options, 'topicPrefix', DEFAULT_TOPIC_PREFIX),
    environment: topicPart(config.options, 'environment', DEFAULT_ENVIRONMENT),
    highWaterMark: integer(config.options, 'highWaterMark', DEFAULT_HIGH_WATER_MARK, 1),
    sendWaitMs: integer(config.options, 'sendWaitMs', DEFAULT_SEND_WAIT_MS, 0),
    groupBuffer: integer(config.options, 'groupBuffer', DEFAULT_GROUP_BUFFER, 1),
    readyTimeoutMs: integer(config.options, 'readyTimeoutMs', DEFAULT_READY_TIMEOUT_MS, 1),
    lingerMs: integer(config.options, 'lingerMs', DEFAULT_LINGER_MS, 0),
  });
}
