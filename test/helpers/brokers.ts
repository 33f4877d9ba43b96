/**
 * Broker availability for tests: a suite whose broker is unreachable is skipped with the reason, unless
 * BUSBAR_REQUIRE_BROKERS names it (or is `all`), in which case that is a failure.
 */
import { connect } from 'node:net';

export const BROKERS = {
  rabbitmq: process.env.BUSBAR_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  kafka: process.env.BUSBAR_TEST_KAFKA_URL ?? 'kafka://127.0.0.1:9092',
  nats: process.env.BUSBAR_TEST_NATS_URL ?? 'nats://127.0.0.1:4222',
  redis: process.env.BUSBAR_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
  mqtt: process.env.BUSBAR_TEST_MQTT_URL ?? 'mqtt://127.0.0.1:1883',
  amqp10: process.env.BUSBAR_TEST_AMQP10_URL ?? 'amqp10://busbar:busbar@127.0.0.1:5682',
  stomp: process.env.BUSBAR_TEST_STOMP_URL ?? 'stomp://busbar:busbar@127.0.0.1:61613',
} as const;

export function brokerRequired(name: string): boolean {
  const required = (process.env.BUSBAR_REQUIRE_BROKERS ?? '').split(',').map((s) => s.trim());
  return required.includes('all') || required.includes(name);
}

/** Resolves when host:port accepts a TCP connection, rejects after `timeoutMs`. */
export function tcpReachable(host: string, port: number, timeoutMs = 2000): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from ${host}:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.end();
      resolve();
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/**
 * Returns undefined when the broker answers, or the reason to skip. Throws (failing the run) when the broker is
 * required by BUSBAR_REQUIRE_BROKERS.
 */
export async function brokerSkipReason(name: string, check: () => Promise<void>): Promise<string | undefined> {
  try {
    await check();
    return undefined;
  } catch (error) {
    const reason = `${name} broker unreachable: ${(error as Error).message}`;
    if (brokerRequired(name)) throw new Error(`${reason} (required by BUSBAR_REQUIRE_BROKERS)`);
    return reason;
  }
}

export function hostPort(url: string, defaultPort: number): { host: string; port: number } {
  const authority = url.replace(/^[a-z0-9+.-]+:\/\//i, '').split(/[/?,]/)[0]!;
  const hostPart = authority.includes('@') ? authority.slice(authority.lastIndexOf('@') + 1) : authority;
  const [host, port] = hostPart.split(':');
  return { host: host || '127.0.0.1', port: port ? Number(port) : defaultPort };
}
