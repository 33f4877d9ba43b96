/**
 * Connection settings for the AMQP 1.0 transport, validated once from the TransportConfig and then frozen.
 * `amqp10://user:pass@h1:5682,h2:5692` (plain) or `amqps10://...` (TLS). Query-string / config `options`:
 * sasl (PLAIN | ANONYMOUS | EXTERNAL; default PLAIN with a password, ANONYMOUS without credentials),
 * connectTimeoutMs, publishTimeoutMs, idleTimeoutMs (AMQP idle-time-out, i.e. heart-beats), containerId.
 */
import { hostname } from 'node:os';
import { BusError } from '../../errors.ts';
import type { TransportConfig } from '../../transport/contract.ts';
import { OptionReader, parseEndpoint, readPem } from '../../transport/options.ts';

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

const LABEL = 'AMQP 1.0';
const KNOWN = ['sasl', 'connectTimeoutMs', 'publishTimeoutMs', 'idleTimeoutMs', 'containerId'];

export function amqp10Options(config: TransportConfig): Amqp10Options {
  const o = new OptionReader(LABEL, config.options, KNOWN);
  const tls = /^amqps10:/i.test(config.url) || config.tls !== undefined;
  const defaultPort = tls ? DEFAULT_TLS_PORT : DEFAULT_PORT;
  const listed = config.endpoints.length > 0 ? config.endpoints : [`127.0.0.1:${defaultPort}`];
  const endpoints = listed.map((endpoint): Endpoint => Object.freeze(parseEndpoint(LABEL, endpoint, defaultPort)));
  const sasl = o.oneOf<SaslMechanism>(
    'sasl',
    ['PLAIN', 'ANONYMOUS', 'EXTERNAL'],
    config.password !== undefined ? 'PLAIN' : 'ANONYMOUS',
  );
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
    connectTimeoutMs: o.integer('connectTimeoutMs', DEFAULT_CONNECT_TIMEOUT_MS, { min: 1 }),
    publishTimeoutMs: o.integer('publishTimeoutMs', DEFAULT_PUBLISH_TIMEOUT_MS, { min: 1 }),
    idleTimeoutMs: o.integer('idleTimeoutMs', DEFAULT_IDLE_TIMEOUT_MS),
    containerId: o.string('containerId', `busbar-${hostname()}-${process.pid}`),
  });
}
