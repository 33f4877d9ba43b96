/**
 * The request-scoped messaging scenarios every framework adapter passes, over a real socket (fetch) and a real
 * broker (embedded, and Redis as the network broker). Each framework's test file starts its real server with the
 * routes below, written with that framework's own handler style around the shared route logic here.
 */

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import { describe, test } from 'node:test';
import { type BusError, MessageBus, type Producer, SqliteOutbox } from '../../src/index.ts';
import { broker, type Delivery, outbox, producers } from '../../src/web/delivery.ts';
import type { DiscardReason, RequestMessages } from '../../src/web/scope.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

export interface StartOptions {
  onError: (error: BusError) => void;
  onDiscard: (reason: DiscardReason) => void;
  /** The app's own database (for the /outbox route's transaction). */
  db: DatabaseSync;
  /** The /abort route calls this once it queued its message and waits for the client to go away. */
  abortWaiting: () => void;
}

export interface RunningApp {
  url: string;
  close(): Promise<void>;
}

export interface Framework {
  name: string;
  /** The discard reason a handler's thrown error gets (default 'error'). */
  thrownErrorSeenAs?: DiscardReason;
  /** Starts the framework's real server on 127.0.0.1:0 with busbar's middleware over `via` and the routes below. */
  start(via: Delivery, options: StartOptions): Promise<RunningApp>;
}

export const USER_HEADER = 'x-user';

/** The answer a route gives: what its framework writes. */
export interface RouteAnswer {
  status: number;
  body: unknown;
}

/**
 * POST /send?type=T&n=N&status=S&throw=1: queues N messages (key `k`, body { i }), then throws when asked, else
 * answers S (default 201) with the ids.
 */
export function sendRoute(bus: RequestMessages, query: URLSearchParams): RouteAnswer {
  const type = query.get('type')!;
  const ids: string[] = [];
  for (let i = 0; i < Number(query.get('n') ?? 1); i++) {
    ids.push(bus.send(type, { i }, { key: 'k', headers: { app: 'yes' } }));
  }
  if (query.get('throw')) throw new Error('the handler failed after queuing');
  return { status: Number(query.get('status') ?? 201), body: { ids, requestId: bus.requestId } };
}

/**
 * POST /outbox?type=T&status=S: one app transaction on the app's database: an order row and the queued message
 * written into the outbox through it; committed when S < 400, rolled back otherwise.
 */
export async function outboxRoute(
  bus: RequestMessages,
  query: URLSearchParams,
  db: DatabaseSync,
): Promise<RouteAnswer> {
  const status = Number(query.get('status') ?? 201);
  const id = bus.send(query.get('type')!, { order: 1 });
  db.exec('BEGIN IMMEDIATE');
  db.prepare('INSERT INTO orders (message_id) VALUES (?)').run(id);
  await bus.writeTo(db);
  db.exec(status < 400 ? 'COMMIT' : 'ROLLBACK');
  return { status, body: { id } };
}

/** POST /abort?type=T: queues one message, waits for the client to go away (`closed`), then answers 200. */
export async function abortRoute(
  bus: RequestMessages,
  query: URLSearchParams,
  closed: Promise<void>,
  options: StartOptions,
): Promise<RouteAnswer> {
  bus.send(query.get('type')!, 'from an aborted request');
  options.abortWaiting();
  await closed;
  return { status: 200, body: { late: true } };
}

interface BrokerCase {
  name: string;
  url(dir: string): string;
  skip(): Promise<string | undefined>;
}

const BROKER_CASES: BrokerCase[] = [
  { name: 'embedded', url: (dir) => `embedded:${join(dir, 'bus.db')}`, skip: async () => undefined },
  {
    name: 'redis',
    url: () => BROKERS.redis,
    skip: () => {
      const { host, port } = hostPort(BROKERS.redis, 6379);
      return brokerSkipReason('redis', () => tcpReachable(host, port));
    },
  },
];

// biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON answers
async function post(url: string, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const response = await fetch(url, { method: 'POST', headers, signal: AbortSignal.timeout(30_000) });
  const text = await response.text();
  const isJson = response.headers.get('content-type')?.includes('json');
  return { status: response.status, json: isJson && text ? JSON.parse(text) : text };
}

/** Reads `count` messages of `type` from a new group at earliest. */
async function readAll(bus: MessageBus, type: string, count: number) {
  const consumer = bus.consumer({ consumerGroup: `g-${randomUUID()}`, messageTypes: [type], offset: 'earliest' });
  try {
    const got = [];
    while (got.length < count) {
      const m = await consumer.receive({ timeout: 20_000 });
      assert.ok(m, `expected ${count} messages of ${type}, got ${got.length}`);
      await m.ack();
      got.push(m);
    }
    return got;
  } finally {
    await consumer.close();
  }
}

export function runWebScenarios(framework: Framework): void {
  for (const brokerCase of BROKER_CASES) {
    describe(`${framework.name} over ${brokerCase.name}`, { timeout: 120_000 }, async () => {
      const skip = await brokerCase.skip();
      const dir = mkdtempSync(join(tmpdir(), `busbar-web-${framework.name}-`));
      const types: string[] = [];
      const fresh = () => {
        const type = `web-${framework.name}-${randomUUID()}`;
        types.push(type);
        return type;
      };

      async function withApp(
        via: (bus: MessageBus, appDbPath: string) => Delivery,
        body: (ctx: {
          app: RunningApp;
          bus: MessageBus;
          errors: BusError[];
          discards: DiscardReason[];
          db: DatabaseSync;
          abortWaiting: () => boolean;
        }) => Promise<void>,
      ): Promise<void> {
        const bus = await MessageBus.connect(brokerCase.url(dir));
        const { DatabaseSync } = process.getBuiltinModule('node:sqlite') as typeof import('node:sqlite');
        const appDbPath = join(dir, `app-${randomUUID()}.db`);
        const db = new DatabaseSync(appDbPath);
        db.exec('CREATE TABLE orders (message_id TEXT NOT NULL)');
        const errors: BusError[] = [];
        const discards: DiscardReason[] = [];
        let waiting = false;
        const app = await framework.start(via(bus, appDbPath), {
          db,
          onError: (e) => errors.push(e),
          onDiscard: (r) => discards.push(r),
          abortWaiting: () => {
            waiting = true;
          },
        });
        try {
          await body({ app, bus, errors, discards, db, abortWaiting: () => waiting });
        } finally {
          await app.close();
          for (const type of types.splice(0))
            await bus
              .admin()
              .deregisterMessageType(type)
              .catch(() => {});
          await bus.close();
          db.close();
        }
      }

      test.after(() => rmSync(dir, { recursive: true, force: true }));

      test('a successful response sends its messages, confirmed before it answers, with the request context', {
        skip,
      }, async () => {
        await withApp(broker, async ({ app, bus }) => {
          const type = fresh();
          const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
          const answer = await post(`${app.url}/send?type=${type}&n=3`, {
            'x-request-id': 'req-42',
            traceparent,
            [USER_HEADER]: 'alice',
          });
          assert.equal(answer.status, 201);
          assert.equal(answer.json.ids.length, 3);
          // The response waited for the broker: the messages are there the moment it arrives.
          const [stats] = await bus.admin().stats(type);
          assert.equal(stats!.depth, 3);
          const got = await readAll(bus, type, 3);
          assert.deepEqual(
            got.map((m) => m.id),
            answer.json.ids,
          );
          assert.deepEqual(
            got.map((m) => m.body),
            [{ i: 0 }, { i: 1 }, { i: 2 }],
          );
          for (const m of got) {
            assert.equal(m.key, 'k');
            assert.equal(m.headers.correlationid, 'req-42');
            assert.equal(m.headers.traceparent, traceparent);
            assert.equal(m.headers.userid, 'alice');
            assert.equal(m.headers.app, 'yes');
          }
        });
      });

      test('a request id is made when the client sends none; no user, no traceparent: no such headers', {
        skip,
      }, async () => {
        await withApp(broker, async ({ app, bus }) => {
          const type = fresh();
          const answer = await post(`${app.url}/send?type=${type}`);
          assert.equal(answer.status, 201);
          const [m] = await readAll(bus, type, 1);
          assert.ok(m!.headers.correlationid);
          assert.equal(m!.headers.correlationid, answer.json.requestId);
          assert.equal(m!.headers.userid, undefined);
          assert.equal(m!.headers.traceparent, undefined);
        });
      });

      test('an error status, a thrown error and an aborted client discard the messages', { skip }, async () => {
        await withApp(broker, async ({ app, bus, discards, abortWaiting }) => {
          const type = fresh();
          assert.equal((await post(`${app.url}/send?type=${type}&n=2&status=422`)).status, 422);
          assert.equal((await post(`${app.url}/send?type=${type}&n=2&throw=1`)).status, 500);

          const controller = new AbortController();
          const aborted = fetch(`${app.url}/abort?type=${type}`, { method: 'POST', signal: controller.signal });
          // Abort once the server has the request (its handler queued the message and waits for the close).
          await waitFor(abortWaiting);
          controller.abort();
          await aborted.catch(() => {});
          await waitFor(() => discards.includes('aborted'));

          // A fence: a later successful request's message is the first (and only) message of the type.
          const fence = await post(`${app.url}/send?type=${type}`);
          assert.equal(fence.status, 201);
          const [first] = await readAll(bus, type, 1);
          assert.equal(first!.id, fence.json.ids[0]);
          const [stats] = await bus.admin().stats(type);
          assert.equal(stats!.depth, 1);
          // Express turns a thrown error into a 500 before any middleware of busbar's sees it: 'status' there.
          const thrown = framework.thrownErrorSeenAs ?? 'error';
          assert.deepEqual([...discards].sort(), ['aborted', thrown, 'status'].sort());
        });
      });

      test('a delivery that fails turns the response into a 503 and is reported', { skip }, async () => {
        const closed = await MessageBus.connect(brokerCase.url(dir));
        await closed.close();
        await withApp(
          () => broker(closed),
          async ({ app, errors }) => {
            const type = fresh();
            const answer = await post(`${app.url}/send?type=${type}&n=2`, { 'x-request-id': 'req-fail' });
            assert.equal(answer.status, 503);
            assert.equal(answer.json.error.code, 'BUSBAR_ERR_PUBLISH');
            assert.equal(answer.json.error.requestId, 'req-fail');
            assert.equal(errors.length, 1);
            assert.equal((errors[0]!.details!.messages as unknown[]).length, 2);
          },
        );
      });

      test('via producers: handed to a producer per type (an async one here, as a spooling one would be)', {
        skip,
      }, async () => {
        const made = new Map<string, Producer>();
        await withApp(
          (bus) =>
            producers((type) => {
              let producer = made.get(type);
              if (!producer) {
                producer = bus.producer({ messageType: type, method: 'async' });
                made.set(type, producer);
              }
              return producer;
            }),
          async ({ app, bus }) => {
            const type = fresh();
            const answer = await post(`${app.url}/send?type=${type}&n=3`, { 'x-request-id': 'req-p' });
            assert.equal(answer.status, 201);
            await made.get(type)!.flush();
            const got = await readAll(bus, type, 3);
            assert.deepEqual(
              got.map((m) => m.id),
              answer.json.ids,
            );
            assert.equal(got[0]!.headers.correlationid, 'req-p');
          },
        );
      });

      test('via outbox: the messages go into the outbox, or into the app transaction with writeTo()', {
        skip,
      }, async () => {
        const store = new SqliteOutbox({ path: join(dir, `outbox-${randomUUID()}.db`) });
        let appOutbox: SqliteOutbox | undefined;
        try {
          store.install();
          await withApp(
            () => outbox(store),
            async ({ app }) => {
              const type = fresh();
              assert.equal((await post(`${app.url}/send?type=${type}&n=2`)).status, 201);
              assert.equal(store.pending(), 2);
              assert.equal((await post(`${app.url}/send?type=${type}&n=2&status=500`)).status, 500);
              assert.equal(store.pending(), 2);
            },
          );
          // The app's own database holds the outbox table, so the message commits with the order row.
          await withApp(
            (_bus, appDbPath) => {
              appOutbox = new SqliteOutbox({ path: appDbPath });
              return outbox(appOutbox);
            },
            async ({ app, db }) => {
              appOutbox!.install(db);
              const type = fresh();
              const ok = await post(`${app.url}/outbox?type=${type}`);
              assert.equal(ok.status, 201);
              const failed = await post(`${app.url}/outbox?type=${type}&status=409`);
              assert.equal(failed.status, 409);
              const orders = db.prepare('SELECT message_id FROM orders').all();
              assert.deepEqual(
                orders.map((r) => r.message_id),
                [ok.json.id],
              );
              assert.equal(appOutbox!.pending(db), 1);
            },
          );
        } finally {
          store.close();
          appOutbox?.close();
        }
      });
    });
  }
}

/** Waits for a condition that an event makes true; bounded by the test's timeout. */
export async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}
