/**
 * Configuration: explicit options, then env BUSBAR_BROKER, then a config file (JSON, YAML or CORTX's
 * message_bus.conf), then the embedded default. Validated once, with errors that name the key by path, then frozen.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_ACK_TIMEOUT_MS } from '../defaults.ts';
import { BusError } from '../errors.ts';
import type { TlsConfig, TransportConfig } from '../transport/contract.ts';
import { knownSchemes, transportNameFor } from '../transport/registry.ts';
import { parseBrokerUrl, redactUrl } from './url.ts';

export const DEFAULT_BROKER = 'embedded:';
export const DEFAULT_CONFIG_FILES = ['busbar.config.json', 'busbar.config.yaml', 'busbar.config.yml'];
export const CORTX_CONFIG_FILE = '/etc/busbar/message_bus.conf';

export type OptionValue = string | number | boolean;

export interface BusOptions {
  /** Broker URL, e.g. `embedded:./bus.db`, `amqp://guest:guest@localhost`, `kafka://h1:9092,h2:9092`. */
  broker?: string;
  /** Further `host:port` endpoints of the same cluster. */
  endpoints?: string[];
  username?: string;
  password?: string;
  tls?: TlsConfig;
  /** Transport-specific settings (see docs/transports.md). */
  options?: Record<string, OptionValue>;
  /** Default ack timeout of consumers and handlers. */
  ackTimeoutMs?: number;
  /** How long consumer.receive() waits when called without a timeout; 0 (the default) waits for a message. */
  receiveTimeoutMs?: number;
  /** A send the broker has not confirmed within this time fails with a retryable BUSBAR_ERR_TIMEOUT. Default: none. */
  sendTimeoutMs?: number;
  /** An admin call the broker has not answered within this time fails with BUSBAR_ERR_TIMEOUT. Default: none. */
  adminTimeoutMs?: number;
  /** CloudEvents `source` of messages sent with bus.send(). */
  producerId?: string;
  /** A config file to read (JSON, YAML, or CORTX message_bus.conf). */
  config?: string;
  /** The REST gateway's section; validated by `busbar serve`. */
  server?: Record<string, unknown>;
}

export interface ResolvedConfig {
  readonly scheme: string;
  readonly transportName: string;
  readonly transport: TransportConfig;
  readonly ackTimeoutMs: number;
  readonly receiveTimeoutMs: number;
  readonly sendTimeoutMs: number | undefined;
  readonly adminTimeoutMs: number | undefined;
  readonly producerId: string | undefined;
  readonly server: Readonly<Record<string, unknown>> | undefined;
  /** Where the broker setting came from, for `busbar` diagnostics. */
  readonly origin: string;
  /** The config file read, if any. */
  readonly file: string | undefined;
}

/** Node's timers fire at once beyond this (with a TimeoutOverflowWarning), so no bus timeout may exceed it. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function isTimeout(value: unknown, min: number): value is number {
  return typeof value === 'number' && value >= min && value <= MAX_TIMER_MS;
}

const KEYS: Record<string, string> = {
  broker: 'a broker URL string',
  endpoints: 'a list of "host:port" strings',
  username: 'a string',
  password: 'a string',
  tls: 'an object with ca, cert, key (paths to PEM files) and rejectUnauthorized (boolean)',
  options: 'an object of string, number or boolean values',
  ackTimeoutMs: `a whole number of milliseconds from 1 to ${MAX_TIMER_MS}`,
  receiveTimeoutMs: `a number of milliseconds from 0 (waits for a message) to ${MAX_TIMER_MS}`,
  sendTimeoutMs: `a number of milliseconds from 1 to ${MAX_TIMER_MS}`,
  adminTimeoutMs: `a number of milliseconds from 1 to ${MAX_TIMER_MS}`,
  producerId: 'a string',
  config: 'a path to a config file',
  server: 'an object (the REST gateway settings)',
};

const CORTX_TYPES: Record<string, string> = {
  kafka: 'kafka',
  rabbitmq: 'amqp',
  amqp: 'amqp',
  amqp10: 'amqp10',
  nats: 'nats',
  redis: 'redis',
  mqtt: 'mqtt',
  stomp: 'stomp',
  embedded: 'embedded',
  memory: 'memory',
};

function invalid(where: string, path: string, message: string): BusError {
  return new BusError('BUSBAR_ERR_INVALID_CONFIG', `${where}: ${path}: ${message}`);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}

/** Checks an options object key by key; `where` names its origin in errors (a file, or "options"). */
export function validateOptions(input: unknown, where: string): BusOptions {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw invalid(
      where,
      '(top level)',
      `expected an object with keys ${Object.keys(KEYS).join(', ')}; got ${describe(input)}`,
    );
  }
  const out: BusOptions = {};
  for (const [key, value] of Object.entries(input)) {
    if (value === undefined) continue;
    const expected = KEYS[key];
    if (!expected) {
      throw invalid(where, key, `unknown key; expected one of ${Object.keys(KEYS).join(', ')}`);
    }
    const bad = () => invalid(where, key, `expected ${expected}; got ${describe(value)}`);
    switch (key) {
      case 'broker':
      case 'username':
      case 'password':
      case 'producerId':
      case 'config':
        if (typeof value !== 'string' || value === '') throw bad();
        break;
      case 'ackTimeoutMs':
        // The same bound the bus checks on every consumer (contract rule 2): a whole number of ms a timer can hold.
        if (!isTimeout(value, 1) || !Number.isInteger(value)) throw bad();
        break;
      case 'receiveTimeoutMs':
      case 'sendTimeoutMs':
      case 'adminTimeoutMs':
        if (!isTimeout(value, key === 'receiveTimeoutMs' ? 0 : 1)) throw bad();
        break;
      case 'endpoints':
        if (!Array.isArray(value)) throw bad();
        value.forEach((e, i) => {
          if (typeof e !== 'string' || !/^[^\s:,/]+:\d{1,5}$/.test(e)) {
            throw invalid(where, `endpoints[${i}]`, `expected "host:port"; got ${describe(e)}`);
          }
        });
        break;
      case 'tls':
        if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad();
        for (const [k, v] of Object.entries(value)) {
          if (['ca', 'cert', 'key'].includes(k)) {
            if (typeof v !== 'string')
              throw invalid(where, `tls.${k}`, `expected a path to a PEM file; got ${describe(v)}`);
          } else if (k === 'rejectUnauthorized') {
            if (typeof v !== 'boolean')
              throw invalid(where, 'tls.rejectUnauthorized', `expected true or false; got ${describe(v)}`);
          } else {
            throw invalid(where, `tls.${k}`, 'unknown key; expected one of ca, cert, key, rejectUnauthorized');
          }
        }
        break;
      case 'options':
      case 'server':
        if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad();
        if (key === 'options') {
          for (const [k, v] of Object.entries(value)) {
            if (!['string', 'number', 'boolean'].includes(typeof v)) {
              throw invalid(where, `options.${k}`, `expected a string, number or boolean; got ${describe(v)}`);
            }
          }
        }
        break;
    }
    (out as Record<string, unknown>)[key] = value;
  }
  return out;
}

/** CORTX's `message_bus` timeouts (seconds) and the busbar option each becomes. */
const CORTX_TIMEOUTS: Record<string, 'receiveTimeoutMs' | 'sendTimeoutMs' | 'adminTimeoutMs' | 'connectTimeoutMs'> = {
  receive_timeout: 'receiveTimeoutMs',
  send_timeout: 'sendTimeoutMs',
  socket_timeout: 'connectTimeoutMs',
  admin_api_timeout: 'adminTimeoutMs',
};

/** Transports with a connection timeout (their `connectTimeoutMs` option); embedded and memory have none. */
const CONNECT_TIMEOUT_SCHEMES = new Set(['amqp', 'amqp10', 'kafka', 'nats', 'redis', 'mqtt', 'stomp']);

/**
 * CORTX's `message_bus` section: timeouts in seconds, as a number or a numeric string (CORTX writes its ports so).
 * receive_timeout may be 0, which means "wait for a message" in CORTX too.
 */
function cortxTimeouts(section: unknown, scheme: string, where: string): BusOptions {
  if (section === undefined) return {};
  if (section === null || typeof section !== 'object' || Array.isArray(section)) {
    throw invalid(where, 'message_bus', `expected an object of timeouts in seconds; got ${describe(section)}`);
  }
  const out: BusOptions = {};
  for (const [key, value] of Object.entries(section)) {
    const option = CORTX_TIMEOUTS[key];
    if (!option) {
      throw invalid(
        where,
        `message_bus.${key}`,
        `unknown key; expected one of ${Object.keys(CORTX_TIMEOUTS).join(', ')}`,
      );
    }
    const seconds = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
    const ms = typeof seconds === 'number' ? Math.ceil(seconds * 1000) : Number.NaN;
    const min = option === 'receiveTimeoutMs' ? 0 : 1;
    if (!isTimeout(ms, min)) {
      const range = `${min === 0 ? 'from 0 (waits for a message)' : 'above 0'} to ${MAX_TIMER_MS / 1000}`;
      throw invalid(where, `message_bus.${key}`, `expected a number of seconds ${range}; got ${describe(value)}`);
    }
    if (option !== 'connectTimeoutMs') out[option] = ms;
    else if (CONNECT_TIMEOUT_SCHEMES.has(scheme)) out.options = { connectTimeoutMs: ms };
  }
  return out;
}

/**
 * Reads CORTX's `{"message_broker": {"type": "kafka", "cluster": [{"server", "port"}]}, "message_bus": {...}}` as is.
 */
function fromCortx(data: Record<string, unknown>, where: string): BusOptions {
  const broker = data.message_broker as Record<string, unknown> | undefined;
  if (broker === null || typeof broker !== 'object' || Array.isArray(broker)) {
    throw invalid(where, 'message_broker', `expected an object with type and cluster; got ${describe(broker)}`);
  }
  const type = String(broker.type ?? '').toLowerCase();
  const scheme = CORTX_TYPES[type];
  if (!scheme) {
    throw invalid(
      where,
      'message_broker.type',
      `unknown broker type ${JSON.stringify(broker.type)}; expected one of ${Object.keys(CORTX_TYPES).join(', ')}`,
    );
  }
  const cluster = broker.cluster ?? [];
  if (!Array.isArray(cluster))
    throw invalid(where, 'message_broker.cluster', `expected a list of {server, port}; got ${describe(cluster)}`);
  const hosts = cluster.map((node: unknown, i: number) => {
    const n = node as Record<string, unknown> | null;
    if (n === null || typeof n !== 'object' || typeof n.server !== 'string' || n.server === '') {
      throw invalid(
        where,
        `message_broker.cluster[${i}].server`,
        `expected a host name string; got ${describe(n?.server)}`,
      );
    }
    if (n.port === undefined) return n.server;
    const port = Number(n.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw invalid(
        where,
        `message_broker.cluster[${i}].port`,
        `expected a port number 1-65535; got ${describe(n.port)}`,
      );
    }
    return `${n.server}:${port}`;
  });
  if (hosts.length === 0 && scheme !== 'embedded' && scheme !== 'memory') {
    throw invalid(where, 'message_broker.cluster', 'expected at least one {server, port}');
  }
  // Every listed node is kept (CORTX's own parser kept only the last one).
  const url = hosts.length ? `${scheme}://${hosts.join(',')}` : `${scheme}:`;
  return { broker: url, ...cortxTimeouts(data.message_bus, scheme, where) };
}

export function readConfigFile(path: string): BusOptions {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new BusError(
      'BUSBAR_ERR_CONFIG_FILE',
      `cannot read config file ${path}: ${reason}; check the path given to --config or BUSBAR_CONFIG`,
      {
        cause: error,
      },
    );
  }
  let data: unknown;
  try {
    data = /\.ya?ml$/i.test(path) ? parseYaml(text) : JSON.parse(text);
  } catch (error) {
    const kind = /\.ya?ml$/i.test(path) ? 'YAML' : 'JSON';
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      `config file ${path} is not valid ${kind}: ${(error as Error).message.split('\n')[0]}`,
      {
        cause: error,
      },
    );
  }
  if (data !== null && typeof data === 'object' && 'message_broker' in data) {
    return fromCortx(data as Record<string, unknown>, path);
  }
  return validateOptions(data ?? {}, path);
}

function findConfigFile(explicit: string | undefined, env: NodeJS.ProcessEnv, cwd: string): string | undefined {
  if (explicit) return resolve(cwd, explicit);
  if (env.BUSBAR_CONFIG) return resolve(cwd, env.BUSBAR_CONFIG);
  for (const name of DEFAULT_CONFIG_FILES) {
    const path = resolve(cwd, name);
    if (existsSync(path)) return path;
  }
  return existsSync(CORTX_CONFIG_FILE) ? CORTX_CONFIG_FILE : undefined;
}

export function resolveConfig(
  input: string | BusOptions = {},
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): ResolvedConfig {
  const explicit = validateOptions(typeof input === 'string' ? { broker: input } : input, 'options');
  const file = findConfigFile(explicit.config, env, cwd);
  const fromFile = file ? readConfigFile(file) : {};
  const fromEnv: BusOptions = env.BUSBAR_BROKER ? { broker: env.BUSBAR_BROKER } : {};
  const merged: BusOptions = { ...fromFile, ...fromEnv, ...explicit };
  const origin = explicit.broker
    ? 'options'
    : fromEnv.broker
      ? 'BUSBAR_BROKER'
      : fromFile.broker
        ? (file ?? '')
        : 'default';
  const broker = merged.broker ?? DEFAULT_BROKER;
  const url = parseBrokerUrl(broker);
  const transportName = transportNameFor(url.scheme);
  if (!transportName) {
    throw new BusError(
      'BUSBAR_ERR_UNKNOWN_SCHEME',
      `no transport for URL scheme '${url.scheme}' in broker ${JSON.stringify(redactUrl(broker))} (from ${origin}): use one of ${knownSchemes().join(' ')}`,
    );
  }
  const endpoints = [...new Set([...url.hosts, ...(merged.endpoints ?? [])])];
  const transport: TransportConfig = Object.freeze({
    url: broker,
    endpoints: Object.freeze(endpoints),
    username: merged.username ?? url.username,
    password: merged.password ?? url.password,
    tls: merged.tls ? Object.freeze({ ...merged.tls }) : undefined,
    options: Object.freeze({ ...url.query, ...merged.options }),
  });
  return Object.freeze({
    scheme: url.scheme,
    transportName,
    transport,
    ackTimeoutMs: merged.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS,
    receiveTimeoutMs: merged.receiveTimeoutMs ?? 0,
    sendTimeoutMs: merged.sendTimeoutMs,
    adminTimeoutMs: merged.adminTimeoutMs,
    producerId: merged.producerId,
    server: merged.server ? Object.freeze({ ...merged.server }) : undefined,
    origin,
    file,
  });
}

/** Whether `value` is what resolveConfig() returns (options never have `scheme`), so it is used as it is. */
export function isResolvedConfig(value: unknown): value is ResolvedConfig {
  return typeof value === 'object' && value !== null && 'scheme' in value && 'transport' in value;
}
