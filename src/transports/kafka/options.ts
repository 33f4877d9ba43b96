/**
 * TransportConfig -> the settings of busbar's Kafka clients, checked once and frozen.
 * URL: `kafka://h1:9092,h2:9092[?clientId=...&partitions=3&sasl=scram-sha-256]`; every endpoint is a bootstrap broker.
 */
import type { ConnectionOptions as TlsOptions } from 'node:tls';
import type { SASLOptions } from '@platformatic/kafka';
import type { TransportConfig } from '../../transport/contract.ts';
import { OptionReader, parseEndpoint, readTlsFiles } from '../../transport/options.ts';

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
/**
 * How often a group's leader looks for new partitions of its topics (the Java client's metadata.max.age.ms is 5
 * minutes; one metadata request per group every 5 s is cheap, and new partitions then get readers within seconds).
 */
export const DEFAULT_PARTITION_CHECK_MS = 5000;
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
  /** How often a consumer group's leader checks its topics for new partitions (then rebalances the group). */
  readonly partitionCheckMs: number;
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
  'partitionCheckMs',
  'sasl',
  'tls',
];

function endpoint(raw: string): string {
  const { host, port } = parseEndpoint('kafka', raw, DEFAULT_PORT);
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export function kafkaSettings(config: TransportConfig): KafkaSettings {
  const options = new OptionReader('kafka', config.options, KNOWN);
  const endpoints = config.endpoints.length > 0 ? config.endpoints.map(endpoint) : [DEFAULT_ENDPOINT];
  const secureUrl = /^kafkas:/i.test(config.url) || options.flag('tls', false);
  const tls = config.tls || secureUrl ? { rejectUnauthorized: true, ...readTlsFiles(config.tls) } : undefined;
  let sasl: SASLOptions | undefined;
  if (config.username !== undefined) {
    const mechanism = SASL_MECHANISMS[options.oneOf('sasl', Object.keys(SASL_MECHANISMS), 'plain')]!;
    sasl = { mechanism, username: config.username, password: config.password ?? '' };
  }
  const sessionTimeoutMs = options.integer('sessionTimeoutMs', DEFAULT_SESSION_TIMEOUT_MS, { min: 1000 });
  const heartbeatIntervalMs = options.integer('heartbeatIntervalMs', DEFAULT_HEARTBEAT_INTERVAL_MS, { min: 100 });
  if (heartbeatIntervalMs >= sessionTimeoutMs) {
    throw options.invalid('heartbeatIntervalMs', `a number of ms below sessionTimeoutMs (${sessionTimeoutMs})`);
  }
  return Object.freeze({
    bootstrapBrokers: Object.freeze(endpoints),
    clientId: options.string('clientId', 'busbar'),
    partitions: options.integer('partitions', -1, { min: 1 }),
    replicas: options.integer('replicas', -1, { min: 1 }),
    maxMessageBytes: options.integer('maxMessageBytes', DEFAULT_MAX_MESSAGE_BYTES, { min: 1024 }),
    sessionTimeoutMs,
    heartbeatIntervalMs,
    fetchMaxBytes: options.integer('fetchMaxBytes', DEFAULT_FETCH_MAX_BYTES, { min: 1024 }),
    connectTimeoutMs: options.integer('connectTimeoutMs', DEFAULT_CONNECT_TIMEOUT_MS, { min: 1 }),
    partitionCheckMs: options.integer('partitionCheckMs', DEFAULT_PARTITION_CHECK_MS, { min: 100, max: 3_600_000 }),
    tls,
    sasl,
  });
}
