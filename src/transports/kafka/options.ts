/**
 * TransportConfig -> the settings of busbar's Kafka clients, checked once and frozen.
 * URL: `kafka://h1:9092,h2:9092[?clientId=...&partitions=3&sasl=scram-sha-256]`; every endpoint is a bootstrap broker.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions as TlsOptions } from 'node:tls';
import type { SASLOptions } from '@platformatic/kafka';
import { BusError } from '../../errors.ts';
import type { TransportConfig } from '../../transport/contract.ts';

export const DEFAULT_PORT = 9092;
export const DEFAULT_ENDPOINT = `127.0.0.1:${DEFAULT_PORT}`;
/** Topics busbar creates accept records this large (the broker default is ~1 MiB, too small for a 1 MiB body). */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** Classic group protocol timings: a dead member's partitions move after the session timeout. */
export const DEFAULT_SESSION_TIMEOUT_MS = 10_000;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 500;
/**
 * Most bytes one Fetch asks for. The client's 10 MiB default returns tens of thousands of small records at once:
 * the first delivery waits for all of them to be parsed, and a member holds far more than its buffer needs. 256 KiB
 * (about a thousand 100-byte messages) measured fastest for consume+ack here (bench/kafka.ts). A record larger than
 * this still arrives: Kafka returns the first record batch whatever its size.
 */
export const DEFAULT_FETCH_MAX_BYTES = 256 * 1024;
/** @platformatic/kafka's own default. */
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;

export interface KafkaSettings {
  readonly bootstrapBrokers: readonly string[];
  readonly clientId: string;
  /** Partitions of a type busbar creates without being told; -1 = the broker's num.partitions. */
  readonly partitions: number;
  /** Replication factor of the topics busbar creates; -1 = the broker's default.replication.factor. */
  readonly replicas: number;
  readonly maxMessageBytes: number;
  readonly sessionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  readonly fetchMaxBytes: number;
  /** How long one connection attempt to a broker may take (the client's connectTimeout). */
  readonly connectTimeoutMs: number;
  readonly tls: TlsOptions | undefined;
  readonly sasl: SASLOptions | undefined;
}

const SASL_MECHANISMS: Record<string, SASLOptions['mechanism']> = {
  plain: 'PLAIN',
  'scram-sha-256': 'SCRAM-SHA-256',
  'scram-sha-512': 'SCRAM-SHA-512',
};

const KNOWN = [
  'clientId',
  'partitions',
  'replicas',
  'maxMessageBytes',
  'sessionTimeoutMs',
  'heartbeatIntervalMs',
  'fetchMaxBytes',
  'connectTimeoutMs',
  'sasl',
  'tls',
];

function integer(config: TransportConfig, name: string, fallback: number, min: number): number {
  const raw = config.options[name];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      `kafka option '${name}' must be an integer >= ${min}, not ${JSON.stringify(raw)}`,
    );
  }
  return value;
}

function endpoint(raw: string): string {
  const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(raw.trim());
  if (!match || (match[2] !== undefined && (Number(match[2]) < 1 || Number(match[2]) > 65535))) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      `kafka endpoint ${JSON.stringify(raw)} is not host:port: write e.g. kafka://broker1:9092,broker2:9092`,
    );
  }
  return `${match[1]}:${match[2] ?? DEFAULT_PORT}`;
}

function readPem(path: string | undefined, what: string): string | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path, 'utf8');
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

export function kafkaSettings(config: TransportConfig): KafkaSettings {
  for (const key of Object.keys(config.options)) {
    if (!KNOWN.includes(key)) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_CONFIG',
        `unknown option '${key}' for the kafka transport: use one of ${KNOWN.join(', ')} (see docs/wire/kafka.md)`,
      );
    }
  }
  const endpoints = config.endpoints.length > 0 ? config.endpoints.map(endpoint) : [DEFAULT_ENDPOINT];
  const secureUrl = /^kafkas:/i.test(config.url) || config.options.tls === true || config.options.tls === 'true';
  const tls =
    config.tls || secureUrl
      ? {
          ca: readPem(config.tls?.ca, 'CA'),
          cert: readPem(config.tls?.cert, 'certificate'),
          key: readPem(config.tls?.key, 'key'),
          rejectUnauthorized: config.tls?.rejectUnauthorized ?? true,
        }
      : undefined;
  let sasl: SASLOptions | undefined;
  if (config.username !== undefined) {
    const name = String(config.options.sasl ?? 'plain').toLowerCase();
    const mechanism = SASL_MECHANISMS[name];
    if (!mechanism) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_CONFIG',
        `kafka option 'sasl' must be one of ${Object.keys(SASL_MECHANISMS).join(', ')}, not ${JSON.stringify(config.options.sasl)}`,
      );
    }
    sasl = { mechanism, username: config.username, password: config.password ?? '' };
  }
  const sessionTimeoutMs = integer(config, 'sessionTimeoutMs', DEFAULT_SESSION_TIMEOUT_MS, 1000);
  const heartbeatIntervalMs = integer(config, 'heartbeatIntervalMs', DEFAULT_HEARTBEAT_INTERVAL_MS, 100);
  if (heartbeatIntervalMs >= sessionTimeoutMs) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      `kafka option 'heartbeatIntervalMs' (${heartbeatIntervalMs}) must be below 'sessionTimeoutMs' (${sessionTimeoutMs})`,
    );
  }
  return Object.freeze({
    bootstrapBrokers: Object.freeze(endpoints),
    clientId: String(config.options.clientId ?? 'busbar'),
    partitions: integer(config, 'partitions', -1, 1),
    replicas: integer(config, 'replicas', -1, 1),
    maxMessageBytes: integer(config, 'maxMessageBytes', DEFAULT_MAX_MESSAGE_BYTES, 1024),
    sessionTimeoutMs,
    heartbeatIntervalMs,
    fetchMaxBytes: integer(config, 'fetchMaxBytes', DEFAULT_FETCH_MAX_BYTES, 1024),
    connectTimeoutMs: integer(config, 'connectTimeoutMs', DEFAULT_CONNECT_TIMEOUT_MS, 1),
    tls,
    sasl,
  });
}
