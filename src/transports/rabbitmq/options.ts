/**
 * Connection settings for the RabbitMQ transport, validated once from the TransportConfig and then frozen.
 * Query-string / config `options`: heartbeat (s), frameMax, channelMax, connectTimeoutMs, publishTimeoutMs,
 * replayMaxAge (RabbitMQ duration such as `7D`, `12h`; how long a type's replay log keeps messages), connectionName
 * (shown by RabbitMQ tools; default `busbar <host> <pid>`).
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Options, SocketOptions } from 'amqplib';
import { BusError } from '../../errors.ts';
import type { TransportConfig } from '../../transport/contract.ts';

export const DEFAULT_HEARTBEAT_S = 10;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_PUBLISH_TIMEOUT_MS = 30_000;
export const DEFAULT_REPLAY_MAX_AGE = '7D';

export interface RabbitOptions {
  /** One amqplib connect target per endpoint, tried in order (then round robin) on connect and reconnect. */
  readonly targets: readonly Options.Connect[];
  readonly socket: SocketOptions;
  /** How long connect() tries every endpoint before failing. */
  readonly connectTimeoutMs: number;
  /** How long publish() waits through an outage before failing with a retryable BusError. */
  readonly publishTimeoutMs: number;
  readonly replayMaxAge: string;
}

const KNOWN = [
  'heartbeat',
  'frameMax',
  'channelMax',
  'connectTimeoutMs',
  'publishTimeoutMs',
  'replayMaxAge',
  'connectionName',
];

function invalid(key: string, expected: string, got: unknown): BusError {
  return new BusError(
    'BUSBAR_ERR_INVALID_CONFIG',
    `invalid RabbitMQ option '${key}': expected ${expected}; got ${JSON.stringify(got)}`,
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

/** The vhost is the URL path after the host list: `amqp://h1,h2/my-vhost`; none or `/` means the default `/`. */
function vhostOf(url: string): string {
  const afterScheme = url.replace(/^[a-z0-9+.-]+:\/\//i, '');
  const slash = afterScheme.indexOf('/');
  if (slash < 0) return '/';
  const path = afterScheme.slice(slash + 1).split('?')[0]!;
  return path === '' ? '/' : decodeURIComponent(path);
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

export function rabbitOptions(config: TransportConfig): RabbitOptions {
  for (const key of Object.keys(config.options)) {
    if (!KNOWN.includes(key)) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_CONFIG',
        `unknown RabbitMQ option '${key}': use one of ${KNOWN.join(', ')}`,
      );
    }
  }
  const secure = /^amqps:/i.test(config.url) || config.tls !== undefined;
  const defaultPort = secure ? 5671 : 5672;
  const heartbeat = integer(config.options, 'heartbeat', DEFAULT_HEARTBEAT_S, 0);
  const frameMax = integer(config.options, 'frameMax', 131_072, 4096);
  const channelMax = integer(config.options, 'channelMax', 0, 0);
  const vhost = vhostOf(config.url);
  const endpoints = config.endpoints.length > 0 ? config.endpoints : [`127.0.0.1:${defaultPort}`];
  const targets = endpoints.map((endpoint): Options.Connect => {
    const match = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(endpoint);
    if (!match) throw invalid('endpoints', '"host:port"', endpoint);
    return Object.freeze({
      protocol: secure ? 'amqps' : 'amqp',
      hostname: match[1]!,
      port: match[2] ? Number(match[2]) : defaultPort,
      username: config.username ?? 'guest',
      password: config.password ?? 'guest',
      vhost,
      heartbeat,
      frameMax,
      channelMax,
    });
  });
  const connectionName = String(config.options.connectionName ?? `busbar ${hostname()} ${process.pid}`);
  const socket: SocketOptions = {
    clientProperties: { connection_name: connectionName },
    noDelay: true,
    timeout: integer(config.options, 'connectTimeoutMs', DEFAULT_CONNECT_TIMEOUT_MS, 1),
  };
  if (config.tls) {
    const ca = readPem(config.tls.ca, 'ca');
    const cert = readPem(config.tls.cert, 'cert');
    const key = readPem(config.tls.key, 'key');
    if (ca) socket.ca = ca;
    if (cert) socket.cert = cert;
    if (key) socket.key = key;
    if (config.tls.rejectUnauthorized !== undefined) socket.rejectUnauthorized = config.tls.rejectUnauthorized;
  }
  const replayMaxAge = String(config.options.replayMaxAge ?? DEFAULT_REPLAY_MAX_AGE);
  if (!/^\d+(Y|M|D|h|m|s)$/.test(replayMaxAge)) {
    throw invalid('replayMaxAge', 'a RabbitMQ duration such as 7D, 12h, 30m', replayMaxAge);
  }
  return Object.freeze({
    targets: Object.freeze(targets),
    socket: Object.freeze(socket),
    connectTimeoutMs: integer(config.options, 'connectTimeoutMs', DEFAULT_CONNECT_TIMEOUT_MS, 1),
    publishTimeoutMs: integer(config.options, 'publishTimeoutMs', DEFAULT_PUBLISH_TIMEOUT_MS, 1),
    replayMaxAge,
  });
}
