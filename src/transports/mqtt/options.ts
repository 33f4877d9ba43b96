/**
 * MQTT transport settings: the validated TransportConfig turned into MQTT.js client options plus busbar's own
 * knobs (topic prefix, session expiry, publish timeout). Validated once, then frozen.
 */
import { readFileSync } from 'node:fs';
import type { IClientOptions } from 'mqtt';
import { BusError } from '../../errors.ts';
import type { TransportConfig } from '../../transport/contract.ts';

export const DEFAULT_TOPIC_PREFIX = 'busbar';
/** How long the broker keeps a consumer's session (its subscriptions and unacked messages) while it is away. */
export const DEFAULT_SESSION_EXPIRY_SEC = 7 * 24 * 3600;
/** A consumer that drops off for longer than this is declared gone, and a live member of its group adopts its session. */
export const DEFAULT_WILL_DELAY_SEC = 5;
/** A publish not confirmed (PUBACK) within this time fails with a retryable BusError. */
export const DEFAULT_PUBLISH_TIMEOUT_MS = 30_000;
export const DEFAULT_KEEPALIVE_SEC = 30;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export interface MqttSettings {
  readonly topicPrefix: string;
  readonly sessionExpirySec: number;
  readonly willDelaySec: number;
  readonly publishTimeoutMs: number;
  /** Everything an MQTT.js client of this transport shares: servers, TLS, credentials, timers. */
  readonly client: Readonly<IClientOptions>;
}

function integer(options: TransportConfig['options'], name: string, fallback: number, min: number): number {
  const raw = options[name];
  if (raw === undefined) return fallback;
  const value = typeof raw === 'string' ? Number(raw) : raw;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      `options.${name} must be an integer >= ${min} for the mqtt transport, not ${JSON.stringify(raw)}`,
    );
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
      `cannot read the TLS ${what} file ${path}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}

function parseEndpoint(endpoint: string, defaultPort: number): { host: string; port: number } {
  const match = /^\[?([^\]]*?)\]?(?::(\d+))?$/.exec(endpoint.trim());
  const host = match?.[1];
  const port = match?.[2] === undefined ? defaultPort : Number(match[2]);
  if (!host || !(port > 0 && port < 65536)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_URL',
      `invalid MQTT endpoint '${endpoint}': use host:port, e.g. 127.0.0.1:1883`,
    );
  }
  return { host, port };
}

const KNOWN_OPTIONS = [
  'topicPrefix',
  'sessionExpirySec',
  'willDelaySec',
  'publishTimeoutMs',
  'keepaliveSec',
  'connectTimeoutMs',
  'reconnectPeriodMs',
];

export function resolveSettings(config: TransportConfig): MqttSettings {
  for (const name of Object.keys(config.options)) {
    if (!KNOWN_OPTIONS.includes(name)) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_CONFIG',
        `unknown option '${name}' for the mqtt transport: use one of ${KNOWN_OPTIONS.join(', ')}`,
      );
    }
  }
  // Not `new URL()`: a host list (mqtt://h1:1883,h2:1883) is no WHATWG URL. The config layer parsed endpoints.
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(config.url)?.[1]?.toLowerCase();
  const secure = scheme === 'mqtts';
  if (!secure && scheme !== 'mqtt') {
    throw new BusError(
      'BUSBAR_ERR_INVALID_URL',
      `the mqtt transport takes mqtt:// or mqtts:// URLs, not ${scheme ?? config.url}`,
    );
  }
  const userinfo = /^[a-z0-9+.-]+:\/\/([^@/?#]*)@/i.exec(config.url)?.[1];
  const [urlUser, urlPassword] = userinfo === undefined ? [] : userinfo.split(':');
  const defaultPort = secure ? 8883 : 1883;
  const endpoints = config.endpoints.length ? config.endpoints : [`127.0.0.1:${defaultPort}`];
  const servers = endpoints.map(
    (e) => ({ ...parseEndpoint(e, defaultPort), protocol: secure ? 'mqtts' : 'mqtt' }) as const,
  );

  const topicPrefix = String(config.options.topicPrefix ?? DEFAULT_TOPIC_PREFIX);
  if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(topicPrefix)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      `options.topicPrefix ${JSON.stringify(topicPrefix)} is not a plain MQTT topic: use levels of A-Z a-z 0-9 . _ - separated by '/'`,
    );
  }
  const username = config.username ?? (urlUser ? decodeURIComponent(urlUser) : undefined);
  const password = config.password ?? (urlPassword ? decodeURIComponent(urlPassword) : undefined);
  const tls = config.tls;
  const client: IClientOptions = {
    servers: [...servers],
    host: servers[0]!.host,
    port: servers[0]!.port,
    protocol: secure ? 'mqtts' : 'mqtt',
    protocolVersion: 5,
    keepalive: integer(config.options, 'keepaliveSec', DEFAULT_KEEPALIVE_SEC, 0),
    connectTimeout: integer(config.options, 'connectTimeoutMs', DEFAULT_CONNECT_TIMEOUT_MS, 1),
    reconnectPeriod: integer(config.options, 'reconnectPeriodMs', 1000, 1),
    // QoS 0 is never used; QoS 1 publishes made while disconnected wait in the outgoing store until reconnect.
    queueQoSZero: false,
    resubscribe: false,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(tls?.ca ? { ca: readPem(tls.ca, 'CA') } : {}),
    ...(tls?.cert ? { cert: readPem(tls.cert, 'certificate') } : {}),
    ...(tls?.key ? { key: readPem(tls.key, 'key') } : {}),
    ...(tls?.rejectUnauthorized !== undefined ? { rejectUnauthorized: tls.rejectUnauthorized } : {}),
  };
  return Object.freeze({
    topicPrefix,
    sessionExpirySec: integer(config.options, 'sessionExpirySec', DEFAULT_SESSION_EXPIRY_SEC, 1),
    willDelaySec: integer(config.options, 'willDelaySec', DEFAULT_WILL_DELAY_SEC, 0),
    publishTimeoutMs: integer(config.options, 'publishTimeoutMs', DEFAULT_PUBLISH_TIMEOUT_MS, 1),
    client: Object.freeze(client),
  });
}
