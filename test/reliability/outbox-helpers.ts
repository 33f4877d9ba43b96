/** Shared by the outbox tests: the PostgreSQL under test, fresh names, and reading what the relay delivered. */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Message, MessageBus } from '../../src/index.ts';
import { brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

export const PG_URL = process.env.BUSBAR_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export function pgSkipReason(): Promise<string | undefined> {
  const { host, port } = hostPort(PG_URL, 5432);
  return brokerSkipReason('postgres', () => tcpReachable(host, port));
}

/** A table name no other test (or run) uses. */
export function freshTable(prefix = 'outbox'): string {
  return `${prefix}_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
}

/**
 * A temp dir and a `defer(close)` whose closers run last-registered first after the test, then the dir is removed
 * (node:test runs after hooks first-registered first, which would remove files still open).
 */
export function scratch(t: { after(fn: () => Promise<void>): void }, prefix: string) {
  const dir = mkdtempSync(join(tmpdir(), `busbar-${prefix}-`));
  const closers: Array<() => unknown> = [];
  t.after(async () => {
    for (const close of closers.reverse()) await close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, defer: (close: () => unknown) => closers.push(close) };
}

/** Reads `type` from a new group until `done(received)` is true; acks each message. */
export async function readUntil(
  bus: MessageBus,
  type: string,
  done: (received: Message[]) => boolean,
  onMessage?: (message: Message) => void,
): Promise<Message[]> {
  const consumer = bus.consumer({ consumerGroup: `g-${randomUUID()}`, messageTypes: [type], offset: 'earliest' });
  const received: Message[] = [];
  try {
    while (!done(received)) {
      const m = await consumer.receive({ timeout: 60_000 });
      if (!m) throw new Error(`no message of ${type} for 60 s after ${received.length}`);
      received.push(m);
      onMessage?.(m);
      await m.ack();
    }
    return received;
  } finally {
    await consumer.close();
  }
}

/** Checks that every key's `n` goes 0, 1, 2... with nothing missing or repeated. */
export function checkOrderPerKey(messages: readonly Message[]): void {
  const next = new Map<string, number>();
  for (const m of messages) {
    const { key, n } = m.body as { key: string; n: number };
    const expected = next.get(key) ?? 0;
    if (n !== expected) throw new Error(`key ${key}: got n=${n}, expected ${expected}`);
    next.set(key, expected + 1);
  }
}
