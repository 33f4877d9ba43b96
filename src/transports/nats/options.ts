/** TransportConfig -> NATS connection options and the transport's own settings, checked once and frozen. */
import type { NodeConnectionOptions } from '@nats-io/transport-node';
import { BusError } from '../../errors.ts';
import type { TransportConfig } from '../../transport/contract.ts';
import { OptionReader } from '../../transport/options.ts';

export const DEFAULT_SERVER = '127.0.0.1:4222';

export interface NatsSettings {
  /** Timeout of JetStream API calls, PubAcks and ack confirmations. */
  readonly requestTimeoutMs: number;
  /** Stream replicas for new types (a clustered JetStream allows up to 5). */
  readonly replicas: number;
  /** Window in which JetStream drops a re-published message id. */
  readonly duplicateWindowMs: number;
  readonly storage: 'file' | 'memory';
}

export const DEFAULT_SETTINGS: NatsSettings = Object.freeze({
  requestTimeoutMs: 10_000,
  replicas: 1,
  duplicateWindowMs: 120_000,
  storage: 'file',
});

const CONNECTION_DEFAULTS = {
  connectTimeoutMs: 10_000,
  reconnectTimeWaitMs: 1_000,
  pingIntervalMs: 15_000,
};

const KNOWN = [
  'requestTimeoutMs',
  'replicas',
  'duplicateWindowMs',
  'storage',
  'connectTimeoutMs',
  'reconnectTimeWaitMs',
  'pingIntervalMs',
  'token',
  'tls',
  'name',
] as const;

export function parseSettings(config: TransportConfig): NatsSettings {
  const options = new OptionReader('nats', config.options, KNOWN);
  const storage = options.oneOf('storage', ['file', 'memory'], DEFAULT_SETTINGS.storage);
  const replicas = options.integer('replicas', DEFAULT_SETTINGS.replicas, { min: 1, max: 5 });
  return Object.freeze({
    requestTimeoutMs: options.integer('requestTimeoutMs', DEFAULT_SETTINGS.requestTimeoutMs, { min: 1 }),
    replicas,
    duplicateWindowMs: options.integer('duplicateWindowMs', DEFAULT_SETTINGS.duplicateWindowMs, { min: 1 }),
    storage,
  });
}

export function connectionOptions(config: TransportConfig): NodeConnectionOptions {
  const options = new OptionReader('nats', config.options, KNOWN);
  const servers = config.endpoints.length > 0 ? [...config.endpoints] : [DEFAULT_SERVER];
  const secure = config.tls !== undefined || options.flag('tls', false);
  const token = options.raw('token');
  if (token !== undefined && typeof token !== 'string') throw options.invalid('token', 'a string');
  if (token !== undefined && config.username !== undefined) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      "invalid nats option 'token': give either a token or a username and password, not both",
    );
  }
  return {
    servers,
    name: options.string('name', 'busbar'),
    ...(config.username !== undefined ? { user: config.username, pass: config.password ?? '' } : {}),
    ...(token !== undefined ? { token } : {}),
    ...(secure
      ? {
          tls: {
            ...(config.tls?.ca ? { caFile: config.tls.ca } : {}),
            ...(config.tls?.cert ? { certFile: config.tls.cert } : {}),
            ...(config.tls?.key ? { keyFile: config.tls.key } : {}),
            ...(config.tls?.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
          },
        }
      : {}),
    timeout: options.integer('connectTimeoutMs', CONNECTION_DEFAULTS.connectTimeoutMs, { min: 1 }),
    // Never give up: a broker restart or a network cut must heal without the application doing anything.
    maxReconnectAttempts: -1,
    reconnectTimeWait: options.integer('reconnectTimeWaitMs', CONNECTION_DEFAULTS.reconnectTimeWaitMs, { min: 1 }),
    pingInterval: options.integer('pingIntervalMs', CONNECTION_DEFAULTS.pingIntervalMs, { min: 1 }),
    // Every request (PubAck, ack confirmation) would otherwise capture a stack trace; busbar's errors say where.
    noAsyncTraces: true,
  };
}
