/** Shared by the nats transport tests: the real server (env BUSBAR_TEST_NATS_URL), or skip with the reason. */
import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import { parseBrokerUrl } from '../../src/config/url.ts';
import { buildMessage } from '../../src/message/envelope.ts';
import type { Transport, TransportConfig, TransportMessage } from '../../src/transport/contract.ts';
import createNatsTransport from '../../src/transports/nats/index.ts';
import { BROKERS, brokerSkipReason } from '../helpers/brokers.ts';

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
