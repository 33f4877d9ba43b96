/** Shared by the redis transport tests: real servers only, fresh names, everything opened is closed. */
import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import { createClient } from 'redis';
import { parseBrokerUrl } from '../../src/config/url.ts';
import { buildMessage } from '../../src/message/envelope.ts';
import type { Transport, TransportConfig, TransportMessage } from '../../src/transport/contract.ts';
import createRedisTransport from '../../src/transports/redis/index.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { checkRedisServerBinary } from '../helpers/redis-aof.ts';

export const REDIS_URL = BROKERS.redis;

export function redisConfig(url = REDIS_URL, options: TransportConfig['options'] = {}): TransportConfig {
  const parsed = parseBrokerUrl(url);
  return { url, endpoints: parsed.hosts, username: parsed.username, password: parsed.password, options };
}

export function skipReason(): Promise<string | undefined> {
  const { host, port } = hostPort(REDIS_URL, 6379);
  return brokerSkipReason('redis', () => tcpReachable(host, port));
}

/** For the tests that start private redis-servers: skip (or fail when required) without the binary. */
export function privateServerSkipReason(): Promise<string | undefined> {
  return brokerSkipReason('redis', async () => checkRedisServerBinary());
}

const temporaryTypes = new WeakMap<Transport, string[]>();

/** A transport closed after the test, once the types made with tempType() on it are deleted. */
export async function open(
  t: TestContext,
  url = REDIS_URL,
  options: TransportConfig['options'] = {},
): Promise<Transport> {
  const transport = await createRedisTransport(redisConfig(url, options));
  temporaryTypes.set(transport, []);
  t.after(async () => {
    for (const type of temporaryTypes.get(transport) ?? []) await transport.admin.deleteType(type).catch(() => {});
    await transport.close();
  });
  return transport;
}

/** A plain node-redis client, as a program that knows only docs/wire/redis.md would use. */
export async function rawClient(t: TestContext, url = REDIS_URL) {
  const client = createClient({ url, RESP: 2 });
  client.on('error', () => undefined);
  await client.connect();
  t.after(() => client.destroy());
  return client;
}

/** A fresh type, deleted again after the test (by open()'s cleanup). */
export function tempType(transport: Transport): string {
  const type = `t-${randomUUID()}`;
  temporaryTypes.get(transport)?.push(type);
  return type;
}

export function freshGroup(): string {
  return `g-${randomUUID()}`;
}

export function message(
  type: string,
  body: string | Uint8Array,
  extra: Partial<TransportMessage> = {},
): TransportMessage {
  return { ...buildMessage(type, 'test', body), ...extra };
}

export function consumeOptions(type: string | string[], group: string, extra: Record<string, unknown> = {}) {
  return {
    types: Array.isArray(type) ? type : [type],
    group,
    consumerId: `c-${randomUUID().slice(0, 8)}`,
    offset: 'earliest' as const,
    prefetch: 16,
    ackTimeoutMs: 30_000,
    ...extra,
  };
}

export { take } from '../helpers/deliveries.ts';
