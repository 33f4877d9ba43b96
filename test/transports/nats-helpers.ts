/** Shared by the nats transport tests: the real server (env BUSBAR_TEST_NATS_URL), or skip with the reason. */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import { parseBrokerUrl } from '../../src/config/url.ts';
import { buildMessage } from '../../src/message/envelope.ts';
import type { Transport, TransportConfig, TransportMessage } from '../../src/transport/contract.ts';
import createNatsTransport from '../../src/transports/nats/index.ts';
import { BROKERS, brokerSkipReason, tcpReachable } from '../helpers/brokers.ts';

const run = promisify(execFile);

export const NATS_URL = BROKERS.nats;

export function natsConfig(url = NATS_URL, options: TransportConfig['options'] = {}): TransportConfig {
  const parsed = parseBrokerUrl(url);
  return { url, endpoints: parsed.hosts, username: parsed.username, password: parsed.password, options };
}

/** A skip reason, or undefined; when BUSBAR_REQUIRE_BROKERS names nats (or is `all`), unreachable fails instead. */
export function skipReason(): Promise<string | undefined> {
  return brokerSkipReason('nats', async () => {
    const transport = await createNatsTransport(natsConfig(NATS_URL, { connectTimeoutMs: 2000 }));
    await transport.close();
  });
}

const temporary = new WeakMap<Transport, string[]>();

/** A transport closed after the test, once the types made with tempType() are deleted. */
export async function open(t: TestContext, options: TransportConfig['options'] = {}): Promise<Transport> {
  const transport = await createNatsTransport(natsConfig(NATS_URL, options));
  temporary.set(transport, []);
  t.after(async () => {
    const cleaner = await createNatsTransport(natsConfig());
    await Promise.all((temporary.get(transport) ?? []).map((type) => cleaner.admin.deleteType(type)));
    await Promise.all([cleaner.close(), transport.close()]);
  });
  return transport;
}

export function freshType(): string {
  return `t-${randomUUID()}`;
}

export function freshGroup(): string {
  return `g-${randomUUID()}`;
}

/** A fresh type, deleted again after the test. */
export function tempType(transport: Transport, type = freshType()): string {
  temporary.get(transport)?.push(type);
  return type;
}

export function message(
  type: string,
  body: string | Uint8Array,
  extra: Partial<TransportMessage> = {},
): TransportMessage {
  return { ...buildMessage(type, 'test', body), ...extra };
}

export { take } from '../helpers/deliveries.ts';

export function consumeOptions(type: string | string[], group: string, extra: Record<string, unknown> = {}) {
  return {
    types: Array.isArray(type) ? type : [type],
    group,
    consumerId: `c-${randomUUID()}`,
    offset: 'earliest' as const,
    prefetch: 16,
    ackTimeoutMs: 30_000,
    ...extra,
  };
}

const NATS_SERVER = '/usr/sbin/nats-server';
/** The house command that starts the machine's nats-server (JetStream data under /var/lib/nats-server). */
const START = [
  '--start',
  '--oknodo',
  '--background',
  '--exec',
  NATS_SERVER,
  '--',
  '-a',
  '127.0.0.1',
  '-p',
  '4222',
  '-js',
  '-sd',
  '/var/lib/nats-server',
  '-l',
  '/var/log/nats-server.log',
];

/** Stops the local nats-server, starts it again with the house command, and waits until it answers. */
export async function restartNatsServer(port = 4222): Promise<void> {
  try {
    await run('start-stop-daemon', ['--stop', '--oknodo', '--retry', '10', '--exec', NATS_SERVER], { timeout: 30_000 });
  } finally {
    // Whatever happened, leave the server running.
    await run('start-stop-daemon', START, { timeout: 30_000 });
  }
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await tcpReachable('127.0.0.1', port, 1000);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
