/**
 * Connection settings for the AMQP 1.0 transport, validated once from the TransportConfig and then frozen.
 * `amqp10://user:pass@h1:5682,h2:5692` (plain) or `amqps10://...` (TLS). Query-string / config `options`:
 * sasl (PLAIN | ANONYMOUS | EXTERNAL; default PLAIN with a password, ANONYMOUS without credentials),
 * connectTimeoutMs, publishTimeoutMs, idleTimeoutMs (AMQP idle-time-out, i.e. heart-beats), containerId.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { BusError } from '../../errors.ts';
import type { TransportConfig } from '../../transport/contract.ts';

export const DEFAULT_PORT = 5672;
export const DEFAULT_TLS_PORT = 5671;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_PUBLISH_TIMEOUT_MS = 30_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 20_000;

export type SaslMechanism = 'PLAIN' | 'ANONYMOUS' | 'EXTERNAL';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface Amqp10Options {
  /** Tried in order on connect, then the next one after each loss (see connection.ts). */
  readonly endpoints: readonly Endpoint[];
  readonly tls: boolean;
  readonly ca?: Buffer | undefined;
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
  readonly rejectUnauthorized: boolean;
  readonly sasl: SaslMechanism;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly connectTimeoutMs: number;
  readonly publishTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly containerId: string;
}

const KNOWN = ['sasl', 'connectTimeoutMs', 'publishTimeoutMs', 'idleTimeoutMs', 'containerId'];

function invalid(key: string, expected: string, got: unknown): BusError {
  return new BusError(
    'BUSBAR_ERR_INVALID_CONFIG',
    `invalid AMQP 1.0 option '${key}': expected ${expected}; got ${JSON.stringify(got)}`,
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
      { cause: error },
    );
  }
}

export function amqp10Options(config: TransportConfig): Amqp10Options {
  for (const key of Object.keys(config.options)) {
    if (!KNOWN.includes(key)) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_CONFIG',
        `unknown AMQP 1.0 option '${key}': use one of ${KNOWN.join(', ')}`,
      );
    }
  }
  const tls = /^amqps10:/i.test(config.url) || config.tls !== undefined;
  const defaultPort = tls ? DEFAULT_TLS_PORT : DEFAULT_PORT;
  const listed = config.endpoints.length > 0 ? config.endpoints : [`127.0.0.1:${defaultPort}`];
  const endpoints = listed.map((endpoint): Endpoint => {
    const match = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(endpoint);
    if (!match) throw invalid('endpoints', '"host:port"', endpoint);
    return Object.freeze({ host: match[1]!, port: match[2] ? Number(match[2]) : defaultPort });
  });
  const raw = config.options.sasl;
  const sasl = (
    raw === undefined ? (config.password !== undefined ? 'PLAIN' : 'ANONYMOUS') : String(raw).toUpperCase()
  ) as SaslMechanism;
  if (!['PLAIN', 'ANONYMOUS', 'EXTERNAL'].includes(sasl)) throw invalid('sasl', 'PLAIN, ANONYMOUS or EXTERNAL', raw);
  if (sasl === 'PLAIN' && (config.username === undefined || config.password === undefined)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      'SASL PLAIN needs a user name and a password: put them in the URL (amqp10://user:pass@host) or the config',
    );
  }
  if (sasl === 'EXTERNAL' && (!tls || config.tls?.cert === undefined || config.tls.key === undefined)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      'SASL EXTERNAL logs in with a TLS client certificate: use amqps10:// with tls.cert and tls.key',
    );
  }
  return Object.freeze({
    endpoints: Object.freeze(endpoints),
    tls,
    ca: readPem(config.tls?.ca, 'ca'),
    cert: readPem(config.tls?.cert, 'cert'),
    key: readPem(config.tls?.key, 'key'),
    rejectUnauthorized: config.tls?.rejectUnauthorized ?? true,
    sasl,
    username: config.username,
    password: config.password,
    connectTimeoutMs: integer(config.options, 'connectTimeoutMs', DEFAULT_CONNECT_TIMEOUT_MS, 1),
    publishTimeoutMs: integer(config.options, 'publishTimeoutMs', DEFAULT_PUBLISH_TIMEOUT_MS, 1),
    idleTimeoutMs: integer(config.options, 'idleTimeoutMs', DEFAULT_IDLE_TIMEOUT_MS, 0),
    containerId: String(config.options.containerId ?? `busbar-${hostname()}-${process.pid}`),
  });
}
