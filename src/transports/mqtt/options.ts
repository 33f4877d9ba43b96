/**
 * MQTT transport settings: the validated TransportConfig turned into MQTT.js client options plus busbar's own
 * knobs (topic prefix, session expiry, publish timeout). Validated once, then frozen.
 */
import type { IClientOptions } from 'mqtt';
import { BusError } from '../../errors.ts';
import type { TransportConfig } from '../../transport/contract.ts';
import { OptionReader, parseEndpoint, readTlsFiles } from '../../transport/options.ts';

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
  const options = new OptionReader('mqtt', config.options, KNOWN_OPTIONS);
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
    (e) => ({ ...parseEndpoint('mqtt', e, defaultPort), protocol: secure ? 'mqtts' : 'mqtt' }) as const,
  );

  const topicPrefix = options.string('topicPrefix', DEFAULT_TOPIC_PREFIX);
  if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(topicPrefix)) {
    throw options.invalid('topicPrefix', "a plain MQTT topic: levels of A-Z a-z 0-9 . _ - separated by '/'");
  }
  const username = config.username ?? (urlUser ? decodeURIComponent(urlUser) : undefined);
  const password = config.password ?? (urlPassword ? decodeURIComponent(urlPassword) : undefined);
  const client: IClientOptions = {
    servers: [...servers],
    host: servers[0]!.host,
    port: servers[0]!.port,
    protocol: secure ? 'mqtts' : 'mqtt',
    protocolVersion: 5,
    keepalive: options.integer('keepaliveSec', DEFAULT_KEEPALIVE_SEC),
    connectTimeout: options.integer('connectTimeoutMs', DEFAULT_CONNECT_TIMEOUT_MS, { min: 1 }),
    reconnectPeriod: options.integer('reconnectPeriodMs', 1000, { min: 1 }),
    // QoS 0 is never used; QoS 1 publishes made while disconnected wait in the outgoing store until reconnect.
    queueQoSZero: false,
    resubscribe: false,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...readTlsFiles(config.tls),
  };
  return Object.freeze({
    topicPrefix,
    sessionExpirySec: options.integer('sessionExpirySec', DEFAULT_SESSION_EXPIRY_SEC, { min: 1 }),
    willDelaySec: options.integer('willDelaySec', DEFAULT_WILL_DELAY_SEC),
    publishTimeoutMs: options.integer('publishTimeoutMs', DEFAULT_PUBLISH_TIMEOUT_MS, { min: 1 }),
    client: Object.freeze(client),
  });
}
