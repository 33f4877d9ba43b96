/**
 * Gateway test helpers: start a real gateway on a random loopback port over a real broker, and talk to it with
 * fetch. Every gateway is closed (and its bus, and its embedded file removed) after the test.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { type RunningServer, type StartServerOptions, startServer } from '../../src/server/index.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

export interface BrokerUnderTest {
  name: string;
  /** A broker URL for one gateway (a fresh embedded file each time). */
  url(): string;
  /** Undefined when reachable, else why the suite is skipped. */
  skip(): Promise<string | undefined>;
}

export const EMBEDDED: BrokerUnderTest = {
  name: 'embedded',
  url() {
    const dir = mkdtempSync(join(tmpdir(), 'busbar-gateway-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return `embedded:${join(dir, 'bus.db')}`;
  },
  skip: async () => undefined,
};

export const REDIS: BrokerUnderTest = {
  name: 'redis',
  url: () => BROKERS.redis,
  skip: () => {
    const { host, port } = hostPort(BROKERS.redis, 6379);
    return brokerSkipReason('redis', () => tcpReachable(host, port));
  },
};

const cleanups: (() => void)[] = [];
process.once('exit', () => {
  for (const cleanup of cleanups) cleanup();
});

/** Names made by fresh() since the last gateway closed: deregistered then, so shared brokers do not fill up. */
const made = new Set<string>();

export function fresh(prefix: string): string {
  const name = `${prefix}-${randomUUID()}`;
  made.add(name);
  return name;
}

export async function gateway(
  t: TestContext,
  broker: BrokerUnderTest = EMBEDDED,
  options: StartServerOptions = {},
): Promise<RunningServer> {
  const server = await startServer({ config: { broker: broker.url() }, port: 0, ...options });
  const token = options.tokens?.find((x) => x.admin?.includes('*'))?.token;
  t.after(async () => {
    for (const type of made) {
      await call(server.url, `/v1/types/${type}`, { method: 'DELETE', token }).catch(() => {});
    }
    made.clear();
    await server.close();
  });
  return server;
}

export interface Answer {
  status: number;
  headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON answers
  json: any;
  text: string;
}

export interface CallOptions {
  method?: string;
  /** An object is sent as JSON; a string or bytes as is (set content-type in headers). */
  body?: unknown;
  headers?: Record<string, string>;
  token?: string;
}

export async function call(base: string, path: string, options: CallOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  let body: string | Uint8Array | undefined;
  if (typeof options.body === 'string' || options.body instanceof Uint8Array) body = options.body;
  else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const response = await fetch(`${base}${path}`, {
    method: options.method ?? (body === undefined ? 'GET' : 'POST'),
    headers,
    body,
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, json, text };
}

/** Pulls until `count` messages arrived (or `rounds` empty polls), returning them all. */
// biome-ignore lint/suspicious/noExplicitAny: wire messages
export async function pullAll(base: string, path: string, count: number, rounds = 10, token?: string): Promise<any[]> {
  // biome-ignore lint/suspicious/noExplicitAny: wire messages
  const got: any[] = [];
  let empty = 0;
  while (got.length < count && empty < rounds) {
    const answer = await call(base, path, { token });
    if (answer.status !== 200) throw new Error(`pull answered ${answer.status}: ${answer.text}`);
    if (answer.json.messages.length === 0) empty++;
    got.push(...answer.json.messages);
  }
  return got;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
