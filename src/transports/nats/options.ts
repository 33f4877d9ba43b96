/** TransportConfig -> NATS connection options and the transport's own settings, checked once and frozen. */
import type { NodeConnectionOptions } from '@nats-io/transport-node';
import { BusError } from '../../errors.ts';
import type { TransportConfig } from '../../transport/contract.ts';

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

function positiveInt(options: TransportConfig['options'], key: string, fallback: number): number {
  const raw = options[key];
  if (raw === undefined) return fallback;
  const value = typeof raw === 'string' ? Number(raw) : raw;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      `options.${key} for the nats transport must be a positive integer, got ${JSON.stringify(raw)}`,
    );
  }
  return value;
}

export function parseSettings(config: TransportConfig): NatsSettings {
  const options = config.options;
  for (const key of Object.keys(options)) {
    if (!(KNOWN as readonly string[]).includes(key)) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_CONFIG',
        `unknown option '${key}' for the nats transport: use one of ${KNOWN.join(', ')}`,
      );
    }
  }
  const storage = options.storage ?? DEFAULT_SETTINGS.storage;
  if (storage !== 'file' && storage !== 'memory') {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      `options.storage for the nats transport must be 'file' or 'memory', got ${JSON.stringify(storage)}`,
    );
  }
  const replicas = positiveInt(options, 'replicas', DEFAULT_SETTINGS.replicas);
  if (replicas > 5) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      `options.replicas for the nats transport must be 1-5, got ${replicas}`,
    );
  }
  return Object.freeze({
    requestTimeoutMs: positiveInt(options, 'requestTimeoutMs', DEFAULT_SETTINGS.requestTimeoutMs),
    replicas,
    duplicateWindowMs: positiveInt(options, 'duplicateWindowMs', DEFAULT_SETTINGS.duplicateWindowMs),
    storage,
  });
}

function flag(value: string | number | boolean | undefined): boolean {
  return value === true || value === 'true' || value === '1' || value === 1;
}

export function connectionOptions(config: TransportConfig): NodeConnectionOptions {
  const options = config.options;
  const servers = config.endpoints.length > 0 ? [...config.endpoints] : [DEFAULT_SERVER];
  const secure = config.tls !== undefined || flag(options.tls);
  const token = options.token;
  if (token !== undefined && typeof token !== 'string') {
    throw new BusError('BUSBAR_ERR_INVALID_CONFIG', 'options.token for the nats transport must be a string');
  }
  if (token !== undefined && config.username !== undefined) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      'the nats transport takes either a token (options.token) or a username and password, not both',
    );
  }
  return {
    servers,
    name: typeof options.name === 'string' ? options.name : 'busbar',
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
    timeout: positiveInt(options, 'connectTimeoutMs', CONNECTION_DEFAULTS.connectTimeoutMs),
    // Never give up: a broker restart or a network cut must heal without the application doing anything.
    maxReconnectAttempts: -1,
    reconnectTimeWait: positiveInt(options, 'reconnectTimeWaitMs', CONNECTION_DEFAULTS.reconnectTimeWaitMs),
    pingInterval: positiveInt(options, 'pingIntervalMs', CONNECTION_DEFAULTS.pingIntervalMs),
    // Every request (PubAck, ack confirmation) would otherwise capture a stack trace; busbar's errors say where.
    noAsyncTraces: true,
  };
}
