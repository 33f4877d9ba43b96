/**
 * `busbar serve`: the REST gateway. startServer() connects (or borrows) a bus, builds the Fastify app, listens, and
 * returns the URL and an idempotent close() that ends streams, returns leased messages to their groups, closes the
 * gateway's consumers, stops listening, and then closes the bus if it opened it.
 */
import type { AddressInfo } from 'node:net';
import type { FastifyServerOptions } from 'fastify';
import { MessageBus } from '../bus/bus.ts';
import { type BusOptions, isResolvedConfig, type ResolvedConfig, resolveConfig } from '../config/index.ts';
import { BusError } from '../errors.ts';
import { buildApp } from './app.ts';
import { banner, describeBroker } from './banner.ts';
import { Gateway } from './gateway.ts';
import { openSharedStore } from './idempotency-store.ts';
import {
  isLoopback,
  type Limits,
  resolveServerSettings,
  type ServerSection,
  type ServerTls,
  type TokenConfig,
  validateServerSection,
} from './options.ts';

export { banner, describeBroker } from './banner.ts';
export {
  DEFAULT_HOST,
  DEFAULT_LIMITS,
  DEFAULT_PORT,
  type Limits,
  type ServerSection,
  type ServerTls,
  type TokenConfig,
} from './options.ts';

export interface StartServerOptions {
  /** A connected bus to serve; it stays open after close(). Without it, the gateway connects from `config`. */
  bus?: MessageBus;
  /** Broker and `server` section: a resolved config, options (`broker`, `config` file...), or a broker URL. */
  config?: ResolvedConfig | BusOptions | string;
  /** These override the config file's `server` section (the CLI's --host, --port, --insecure). */
  host?: string;
  port?: number;
  /** Allows listening beyond loopback with no tokens configured. */
  insecure?: boolean;
  tls?: ServerTls;
  tokens?: TokenConfig[];
  limits?: Partial<Limits>;
  receiptSecret?: string;
  consumerIdleMs?: number;
  prefetch?: number;
  /** Replicas: where the others reach this one, where Idempotency-Key answers are shared, how long SIGTERM drains. */
  advertiseUrl?: string;
  idempotencyStore?: string;
  drainMs?: number;
  /** Close on SIGINT / SIGTERM (the CLI sets it). */
  handleSignals?: boolean;
  /** Called once listening with the banner: where it listens and a curl line to try. */
  print?: (text: string) => void;
  /** Fastify's logger option (default off). */
  logger?: FastifyServerOptions['logger'];
}

export interface RunningServer {
  /** e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Resolves once close() finished. */
  readonly closed: Promise<void>;
  /** This replica's id (the Busbar-Replica header of its answers). */
  readonly replicaId: string;
  /** Ends streams, returns leased messages to their groups, closes the consumers, stops listening. */
  close(): Promise<void>;
  /**
   * What SIGTERM does: stops taking pulls and streams, waits up to server.drainMs (never past the last lease) for
   * clients to settle what this replica leased, through it or through other replicas, then closes.
   */
  drain(): Promise<void>;
}

/** Settings replicas share, from the environment: they sit between the config file and explicit options. */
function fromEnvironment(env: NodeJS.ProcessEnv): ServerSection {
  const pick = (name: string) => (env[name] === undefined || env[name] === '' ? undefined : env[name]);
  return validateServerSection(
    {
      receiptSecret: pick('BUSBAR_RECEIPT_SECRET'),
      advertiseUrl: pick('BUSBAR_ADVERTISE_URL'),
      idempotencyStore: pick('BUSBAR_IDEMPOTENCY_STORE'),
    },
    'environment (BUSBAR_RECEIPT_SECRET, BUSBAR_ADVERTISE_URL, BUSBAR_IDEMPOTENCY_STORE)',
  );
}

export async function startServer(options: StartServerOptions = {}): Promise<RunningServer> {
  const config = isResolvedConfig(options.config)
    ? options.config
    : options.bus?.config && options.config === undefined
      ? options.bus.config
      : resolveConfig(options.config ?? {});
  const section = validateServerSection(config.server, config.file ?? 'options');
  const overrides: ServerSection = validateServerSection(
    {
      host: options.host,
      port: options.port,
      insecure: options.insecure,
      tls: options.tls,
      tokens: options.tokens,
      limits: options.limits,
      receiptSecret: options.receiptSecret,
      consumerIdleMs: options.consumerIdleMs,
      prefetch: options.prefetch,
      advertiseUrl: options.advertiseUrl,
      idempotencyStore: options.idempotencyStore,
      drainMs: options.drainMs,
    },
    'startServer options',
  );
  const environment = Object.fromEntries(
    Object.entries(fromEnvironment(process.env)).filter(([, v]) => v !== undefined),
  ) as ServerSection;
  const settings = resolveServerSettings({ ...section, ...environment }, overrides);
  if (!isLoopback(settings.host) && settings.tokens.length === 0 && !settings.insecure) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      `refusing to listen on ${settings.host} with no bearer tokens: anyone who reaches it could read and delete ` +
        'messages. Add server.tokens to the config file, listen on 127.0.0.1, or pass --insecure',
    );
  }

  const ownsBus = options.bus === undefined;
  const bus = options.bus ?? (await MessageBus.connect(config));
  const gateway = new Gateway(bus, settings);
  let app: Awaited<ReturnType<typeof buildApp>>;
  try {
    const store = await openSharedStore(settings.idempotencyStore, config);
    if (store) gateway.idempotency.share(store);
  } catch (error) {
    await gateway.shutdown();
    if (ownsBus) await bus.close().catch(() => {});
    throw error;
  }
  try {
    app = await buildApp(gateway, { logger: options.logger });
    await app.listen({ host: settings.host, port: settings.port });
  } catch (error) {
    await gateway.shutdown();
    await gateway.idempotency.close();
    if (ownsBus) await bus.close().catch(() => {});
    const reason =
      (error as NodeJS.ErrnoException).code === 'EADDRINUSE'
        ? 'the port is in use: pick another with --port'
        : (error as Error).message;
    throw new BusError('BUSBAR_ERR_INVALID_CONFIG', `cannot listen on ${settings.host}:${settings.port}: ${reason}`, {
      cause: error,
    });
  }
  const address = app.server.address() as AddressInfo;
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  const url = `${settings.tls ? 'https' : 'http'}://${host}:${address.port}`;
  const wildcard = ['0.0.0.0', '::', '[::]', ''].includes(settings.host);
  gateway.replica.listening(url, wildcard, address.port, settings.tls !== undefined);

  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => {
    resolveClosed = resolve;
  });
  let closing: Promise<void> | undefined;
  const onSignal = () => void drain();
  const drain = (): Promise<void> => close(settings.drainMs);
  const close = (drainMs = 0): Promise<void> => {
    closing ??= (async () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      try {
        // Replicas behind a load balancer: stop taking pulls, let clients settle what they hold, then return the rest.
        if (drainMs > 0) await gateway.drain(drainMs);
        await gateway.shutdown();
        await app.close();
      } finally {
        // After the last request (a publish still answering may need the store).
        await gateway.idempotency.close();
        if (ownsBus) await bus.close();
        resolveClosed();
      }
    })();
    return closing;
  };
  if (options.handleSignals) {
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }
  options.print?.(banner(url, bus.transportName, settings.tokens.length > 0, describeBroker(config)));
  return {
    url,
    host: settings.host,
    port: address.port,
    closed,
    close: () => close(),
    drain,
    replicaId: gateway.replica.id,
  };
}
