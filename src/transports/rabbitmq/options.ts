/**
 * Connection settings for the RabbitMQ transport, validated once from the TransportConfig and then frozen.
 * Query-string / config `options`: heartbeat (s), frameMax, channelMax, connectTimeoutMs, publishTimeoutMs,
 * replayMaxAge (RabbitMQ duration such as `7D`, `12h`; how long a type's replay log keeps messages), connectionName
 * (shown by RabbitMQ tools; default `busbar <host> <pid>`), sasl (PLAIN, the default: the URL's user and password;
 * EXTERNAL: the TLS client certificate is the login, as PDC's Kombu settings logged in; RabbitMQ needs the
 * rabbitmq_auth_mechanism_ssl plugin and takes the user name from the certificate, see docs/transports.md).
 */
import { hostname } from 'node:os';
import amqp, { type Options, type SocketOptions } from 'amqplib';
import { BusError } from '../../errors.ts';
import type { TransportConfig } from '../../transport/contract.ts';
import { OptionReader, parseEndpoint, readTlsFiles } from '../../transport/options.ts';

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
  /** How the connection logs in: the URL's user and password, or the TLS client certificate. */
  readonly sasl: 'PLAIN' | 'EXTERNAL';
}

const KNOWN = [
  'heartbeat',
  'frameMax',
  'channelMax',
  'connectTimeoutMs',
  'publishTimeoutMs',
  'replayMaxAge',
  'connectionName',
  'sasl',
];

/** The vhost is the URL path after the host list: `amqp://h1,h2/my-vhost`; none or `/` means the default `/`. */
function vhostOf(url: string): string {
  const afterScheme = url.replace(/^[a-z0-9+.-]+:\/\//i, '');
  const slash = afterScheme.indexOf('/');
  if (slash < 0) return '/';
  const path = afterScheme.slice(slash + 1).split('?')[0]!;
  return path === '' ? '/' : decodeURIComponent(path);
}

export function rabbitOptions(config: TransportConfig): RabbitOptions {
  const options = new OptionReader('RabbitMQ', config.options, KNOWN);
  const secure = /^amqps:/i.test(config.url) || config.tls !== undefined;
  const defaultPort = secure ? 5671 : 5672;
  const heartbeat = options.integer('heartbeat', DEFAULT_HEARTBEAT_S);
  const frameMax = options.integer('frameMax', 131_072, { min: 4096 });
  const channelMax = options.integer('channelMax', 0, { max: 65_535 });
  const vhost = vhostOf(config.url);
  const sasl = options.oneOf<'PLAIN' | 'EXTERNAL'>('sasl', ['PLAIN', 'EXTERNAL'], 'PLAIN');
  if (sasl === 'EXTERNAL' && (!secure || config.tls?.cert === undefined || config.tls.key === undefined)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      'SASL EXTERNAL logs in with a TLS client certificate: use amqps:// with tls.cert and tls.key (and tls.ca for a private CA)',
    );
  }
  const endpoints = config.endpoints.length > 0 ? config.endpoints : [`127.0.0.1:${defaultPort}`];
  const targets = endpoints.map((endpoint): Options.Connect => {
    const { host, port } = parseEndpoint('RabbitMQ', endpoint, defaultPort);
    return Object.freeze({
      protocol: secure ? 'amqps' : 'amqp',
      hostname: host,
      port,
      username: config.username ?? 'guest',
      password: config.password ?? 'guest',
      vhost,
      heartbeat,
      frameMax,
      channelMax,
    });
  });
  const connectionName = options.string('connectionName', `busbar ${hostname()} ${process.pid}`);
  const socket: SocketOptions = {
    clientProperties: { connection_name: connectionName },
    noDelay: true,
    timeout: options.integer('connectTimeoutMs', DEFAULT_CONNECT_TIMEOUT_MS, { min: 1 }),
  };
  // amqplib takes the mechanism from the socket options; without it, PLAIN with the target's user and password.
  if (sasl === 'EXTERNAL') socket.credentials = amqp.credentials.external();
  if (config.tls) Object.assign(socket, readTlsFiles(config.tls));
  const replayMaxAge = options.string('replayMaxAge', DEFAULT_REPLAY_MAX_AGE);
  if (!/^\d+(Y|M|D|h|m|s)$/.test(replayMaxAge)) {
    throw options.invalid('replayMaxAge', 'a RabbitMQ duration such as 7D, 12h, 30m');
  }
  return Object.freeze({
    targets: Object.freeze(targets),
    socket: Object.freeze(socket),
    connectTimeoutMs: options.integer('connectTimeoutMs', DEFAULT_CONNECT_TIMEOUT_MS, { min: 1 }),
    publishTimeoutMs: options.integer('publishTimeoutMs', DEFAULT_PUBLISH_TIMEOUT_MS, { min: 1 }),
    replayMaxAge,
    sasl,
  });
}
