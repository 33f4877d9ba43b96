/**
 * Gateway replicas: three real `busbar serve` processes on one broker behind a round-robin load balancer
 * (test/helpers/replicas.ts). Messages pulled through one replica are acked, nacked and extended through the
 * others; one replica is killed with SIGKILL mid-stream and every published message is still consumed, duplicates
 * only for leases the dead replica held; Idempotency-Key holds across replicas (concurrent retries) and restarts;
 * SIGTERM drains; replicas with different receipt secrets say so.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { MessageBus } from '../../src/index.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { type Cluster, startCluster, startReplica, stopReplica } from '../helpers/replicas.ts';

const SECRET = 'a-shared-receipt-secret-of-at-least-32-characters';
/** Short leases so a dead replica's messages come back soon: the gateway's ack timeout is 4000 + 1000 ms. */
const MAX_LEASE_MS = 4000;

interface Setup {
  name: string;
  url(dir: string): string;
  /** The server section's idempotencyStore (undefined: the broker's default). */
  store?(dir: string): string;
  skip(): Promise<string | undefined>;
}

const reachable = (name: 'redis' | 'rabbitmq' | 'nats' | 'kafka', port: number) => () =>
  brokerSkipReason(name, () => {
    const { host, port: p } = hostPort(BROKERS[name], port);
    return tcpReachable(host, p);
  });

const SETUPS: Setup[] = [
  { name: 'embedded', url: (dir) => `embedded:${join(dir, 'bus.db')}`, skip: async () => undefined },
  { name: 'redis', url: () => BROKERS.redis, skip: reachable('redis', 6379) },
  {
    name: 'rabbitmq',
    url: () => BROKERS.rabbitmq,
    store: (dir) => `sqlite:${join(dir, 'idempotency.db')}`,
    skip: reachable('rabbitmq', 5672),
  },
  {
    name: 'nats',
    url: () => BROKERS.nats,
    store: (dir) => `sqlite:${join(dir, 'idempotency.db')}`,
    skip: reachable('nats', 4222),
  },
  {
    name: 'kafka',
    url: () => BROKERS.kafka,
    store: (dir) => `sqlite:${join(dir, 'idempotency.db')}`,
    skip: reachable('kafka', 9092),
  },
];

interface Answer {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON answers
  json: any;
  replica: string | null;
}

async function call(
  base: string,
  path: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const response = await fetch(`${base}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: { ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: response.status, json, replica: response.headers.get('busbar-replica') };
}

/** Calls through the proxy until a non-502 answer (a replica just killed answers 502 once per dropped socket). */
async function retrying(base: string, path: string, init: Parameters<typeof call>[2] = {}): Promise<Answer> {
  for (let i = 0; ; i++) {
    const answer = await call(base, path, init).catch(() => undefined);
    if (answer && answer.status !== 502 && !(answer.status === 503 && i < 20)) return answer;
    if (i >= 20) throw new Error(`no answer but ${answer?.status} after 20 tries: ${JSON.stringify(answer?.json)}`);
  }
}

for (const setup of SETUPS) {
  describe(`gateway replicas on ${setup.name}`, { timeout: 480_000 }, async () => {
    const skip = await setup.skip();
    const dir = mkdtempSync(join(tmpdir(), 'busbar-replicas-'));
    const types: string[] = [];
    const clusters: Cluster[] = [];
    const fresh = (prefix: string) => {
      const type = `${prefix}-${randomUUID().slice(0, 8)}`;
      types.push(type);
      return type;
    };
    const cluster = async (server: Record<string, unknown> = {}) => {
      const c = await startCluster(dir, {
        broker: setup.url(dir),
        server: {
          receiptSecret: SECRET,
          limits: { maxLeaseMs: MAX_LEASE_MS },
          drainMs: 5000,
          ...(setup.store ? { idempotencyStore: setup.store(dir) } : {}),
          ...server,
        },
      });
      clusters.push(c);
      return c;
    };

    test.after(async () => {
      await Promise.all(clusters.map((c) => c.stop()));
      if (!skip && setup.name !== 'embedded' && types.length > 0) {
        const bus = await MessageBus.connect(setup.url(dir));
        try {
          for (const type of types)
            await bus
              .admin()
              .deregisterMessageType(type)
              .catch(() => {});
        } finally {
          await bus.close();
        }
      }
      rmSync(dir, { recursive: true, force: true });
    });

    test('pulled through one replica, acked through another; kill -9 one mid-stream: every message consumed, duplicates only from its leases', {
      skip,
      timeout: 180_000,
    }, async (t) => {
      const c = await cluster();
      const proxy = c.proxy.url;
      const type = fresh('rr');
      const total = 300;
      const published = new Set<string>();
      for (let start = 0; start < total; start += 25) {
        const messages = Array.from({ length: 25 }, (_, i) => ({ body: { seq: start + i } }));
        const answer = await retrying(proxy, `/v1/types/${type}/messages`, {
          body: { messages },
          headers: { 'idempotency-key': `${type}-${start}` },
        });
        assert.equal(answer.status, 200, JSON.stringify(answer.json));
        for (const id of answer.json.ids) published.add(id);
      }
      assert.equal(published.size, total);

      const victim = c.replicas[1]!;
      const deliveries = new Map<string, string[]>(); // id -> replica ids that leased it
      const forwarded = { count: 0 };
      const settleFailures = new Map<number, number>();
      const notes = new Map<string, string[]>();
      /** Messages whose ack failed at the broker (503 naming them): the broker may rightly deliver them again. */
      const uncertain = new Set<string>();
      let killed = false;
      let killedAt = 0;
      let consumedAtKill = 0;
      let lastDelivery = Date.now();
      // Once all arrived, keep pulling until nothing came for longer than the gateway's ack timeout, so late
      // redeliveries (duplicates) are seen too.
      const quietMs = MAX_LEASE_MS + 1000 + 1500;
      const deadline = Date.now() + 150_000;
      const worker = async () => {
        while ((deliveries.size < total || Date.now() - lastDelivery < quietMs) && Date.now() < deadline) {
          if (!killed && deliveries.size >= total / 3) {
            killed = true;
            killedAt = Date.now();
            consumedAtKill = deliveries.size;
            await stopReplica(victim, 'SIGKILL');
          }
          const pulled = await call(proxy, `/v1/types/${type}/messages?group=g&max=5&wait=500&lease=3000`).catch(
            () => undefined,
          );
          if (pulled?.status !== 200) continue;
          const messages = pulled.json.messages as { id: string; receipt: string; leaseExpiresAt: string }[];
          if (messages.length === 0) continue;
          lastDelivery = Date.now();
          for (const m of messages) {
            deliveries.set(m.id, [...(deliveries.get(m.id) ?? []), pulled.replica!]);
            notes.set(m.id, [...(notes.get(m.id) ?? []), `lease ${Date.parse(m.leaseExpiresAt) - Date.now()} ms`]);
          }
          // An ack whose answer was lost (502: the replica that took it died) is retried: a repeat answers 200 again.
          let ack: Answer | undefined;
          for (let i = 0; i < 10; i++) {
            ack = await call(proxy, '/v1/acks', { body: { receipts: messages.map((m) => m.receipt) } }).catch(
              () => undefined,
            );
            if (ack && ack.status !== 502 && !(ack.status === 503 && !ack.json.error?.failed)) break;
          }
          if (!ack || ack.status === 502 || (ack.status === 503 && !ack.json.error?.failed)) {
            for (const m of messages) uncertain.add(m.id);
            continue;
          }
          if (ack.replica !== pulled.replica) forwarded.count++;
          if (ack.status === 200) continue;
          settleFailures.set(ack.status, (settleFailures.get(ack.status) ?? 0) + 1);
          for (const f of (ack.json.error?.failed ?? []) as { index: number; reason: string }[]) {
            const m = messages[f.index]!;
            notes.get(m.id)?.push(`ack ${ack.status}: ${f.reason}`);
            if (ack.status === 503) uncertain.add(m.id);
          }
        }
      };
      await Promise.all(Array.from({ length: 4 }, worker));
      const twice = [...deliveries].filter(([, list]) => list.length > 1);
      t.diagnostic(
        `${setup.name}: killed after ${consumedAtKill} of ${total} consumed; the rest took ` +
          `${lastDelivery - killedAt} ms (gateway ack timeout ${MAX_LEASE_MS + 1000} ms); ${twice.length} ` +
          `delivered twice (${twice.filter(([, l]) => l.includes(victim.id)).length} leased by the dead replica, ` +
          `${uncertain.size} with a failed ack); settle failures by status: ${[...settleFailures]}`,
      );
      assert.ok(killed, 'a replica was killed mid-stream');
      assert.equal(deliveries.size, total, 'every published message consumed');
      for (const id of deliveries.keys()) assert.ok(published.has(id), 'only published messages arrive');
      assert.ok(forwarded.count > 0, 'some acks went through another replica than the pull');
      // Duplicates: a message delivered twice had a lease on the dead replica (or an ack the broker failed).
      for (const [id, leasedBy] of twice) {
        assert.ok(
          leasedBy.includes(victim.id) || uncertain.has(id),
          `${id} came twice (${leasedBy.join(', ')}) without a dead lease: ${notes.get(id)?.join('; ')}`,
        );
      }
      // Nothing is left for the group.
      const rest = await retrying(proxy, `/v1/types/${type}/messages?group=g&max=10&wait=1000`);
      assert.deepEqual(rest.json.messages, []);
    });

    test('Idempotency-Key holds across replicas (concurrent retries) and restarts', {
      skip,
      timeout: 120_000,
    }, async () => {
      const c = await cluster();
      const proxy = c.proxy.url;
      const type = fresh('idem');
      const keys = Array.from({ length: 5 }, () => randomUUID());
      const answers = await Promise.all(
        keys.flatMap((key) =>
          Array.from({ length: 6 }, () =>
            retrying(proxy, `/v1/types/${type}/messages`, {
              body: { messages: [{ body: { key } }] },
              headers: { 'idempotency-key': key },
            }),
          ),
        ),
      );
      const replicasSeen = new Set(answers.map((a) => a.replica));
      assert.ok(replicasSeen.size >= 2, 'the retries spread over replicas');
      const idsByKey = new Map<string, string>();
      answers.forEach((a, i) => {
        assert.equal(a.status, 200, JSON.stringify(a.json));
        const key = keys[Math.floor(i / 6)]!;
        const id = a.json.ids[0] as string;
        if (idsByKey.has(key)) assert.equal(id, idsByKey.get(key), 'every retry gets the first answer');
        idsByKey.set(key, id);
      });
      const other = await retrying(proxy, `/v1/types/${type}/messages`, {
        body: { messages: [{ body: 'something else' }] },
        headers: { 'idempotency-key': keys[0]! },
      });
      assert.equal(other.status, 422, 'the same key for another request is refused');

      // A replica restarted (a new process) still knows the key.
      await stopReplica(c.replicas[0]!, 'SIGTERM');
      const restarted = await startReplica(c.configFile);
      c.replicas.push(restarted);
      const again = await call(restarted.url, `/v1/types/${type}/messages`, {
        body: { messages: [{ body: { key: keys[1] } }] },
        headers: { 'idempotency-key': keys[1]! },
      });
      assert.equal(again.status, 200);
      assert.deepEqual(again.json.ids, [idsByKey.get(keys[1]!)]);

      // The broker holds exactly one message per key.
      const seen: string[] = [];
      for (;;) {
        const pulled = await call(
          restarted.url,
          `/v1/types/${type}/messages?group=count&max=100&wait=1000&autoAck=true`,
        );
        assert.equal(pulled.status, 200);
        if (pulled.json.messages.length === 0) break;
        seen.push(...pulled.json.messages.map((m: { id: string }) => m.id));
      }
      assert.deepEqual(seen.sort(), [...idsByKey.values()].sort());
    });

    test("a lease extended through another replica keeps a slow worker's message; SIGTERM drains; a different secret is named", {
      skip,
      timeout: 180_000,
    }, async () => {
      const c = await cluster();
      const [a, b, third] = c.replicas as [(typeof c.replicas)[0], (typeof c.replicas)[0], (typeof c.replicas)[0]];
      const type = fresh('lease');
      assert.equal(
        (await call(a.url, `/v1/types/${type}/messages`, { body: { messages: [{ body: 1 }, { body: 2 }] } })).status,
        200,
      );
      const first = await call(a.url, `/v1/types/${type}/messages?group=g&max=1&wait=3000&lease=2000`);
      assert.equal(first.json.messages.length, 1);
      const [m] = first.json.messages as { id: string; receipt: string; leaseExpiresAt: string }[];
      const extended = await call(b.url, '/v1/leases', { body: { receipts: [m!.receipt], leaseMs: MAX_LEASE_MS } });
      assert.equal(extended.status, 200, JSON.stringify(extended.json));
      assert.equal(extended.replica, b.id);
      const until = Date.parse(extended.json.leases[0].leaseExpiresAt);
      assert.ok(until > Date.parse(m!.leaseExpiresAt) + 1000, 'the lease moved');
      // Past the first lease, the message is still held: a pull through another replica does not get it.
      const firstEnd = Date.parse(m!.leaseExpiresAt);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstEnd + 200 - Date.now())));
      const other = await call(third.url, `/v1/types/${type}/messages?group=g&max=5&wait=500&lease=3000`);
      assert.ok(!other.json.messages.some((x: { id: string }) => x.id === m!.id), 'the extended message stays held');
      // The slow worker acks through a third replica.
      const acked = await call(third.url, '/v1/acks', {
        body: { receipts: [m!.receipt, ...other.json.messages.map((x: { receipt: string }) => x.receipt)] },
      });
      assert.equal(acked.status, 200, JSON.stringify(acked.json));
      const again = await call(b.url, '/v1/acks', { body: { receipts: [m!.receipt] } });
      assert.equal(again.status, 200, 'a retried ack (its answer lost) succeeds through any replica');

      // A nack through another replica than the pull returns the message, after its delay, with attempt 2.
      const nackType = fresh('nack');
      const proxy = c.proxy.url;
      assert.equal(
        (await call(proxy, `/v1/types/${nackType}/messages`, { body: { messages: [{ body: 'n' }] } })).status,
        200,
      );
      const pullOne = async (what: string) => {
        const until = Date.now() + 30_000;
        while (Date.now() < until) {
          const got = await call(proxy, `/v1/types/${nackType}/messages?group=g&max=1&wait=500&lease=3000`);
          if (got.status === 200 && got.json.messages.length === 1) return got;
        }
        throw new Error(`${what} did not arrive within 30 s`);
      };
      const n1 = await pullOne('the message');
      const elsewhere = c.replicas.find((r) => r.id !== n1.replica && r !== a)!;
      const nacked = await call(elsewhere.url, '/v1/nacks', {
        body: { receipts: [n1.json.messages[0].receipt], delayMs: 300 },
      });
      assert.equal(nacked.status, 200, JSON.stringify(nacked.json));
      assert.equal(nacked.json.nacked, 1);
      const n2 = await pullOne('the nacked message');
      assert.equal(n2.json.messages[0].id, n1.json.messages[0].id);
      assert.equal(n2.json.messages[0].attempt, 2);
      assert.equal((await call(proxy, '/v1/acks', { body: { receipts: [n2.json.messages[0].receipt] } })).status, 200);

      // SIGTERM on a replica holding a lease: it refuses pulls, still settles what it leased (forwarded from
      // another replica), then exits.
      assert.equal(
        (await call(a.url, `/v1/types/${type}/messages`, { body: { messages: [{ body: 3 }] } })).status,
        200,
      );
      const held = await call(a.url, `/v1/types/${type}/messages?group=g&max=1&wait=3000&lease=3500`);
      assert.equal(held.json.messages.length, 1);
      assert.equal(held.replica, a.id);
      a.child.kill('SIGTERM');
      let pullAnswer: Answer | undefined;
      // Until the replica reports draining, bounded by a deadline (not a count of 20 ms naps a busy machine outruns).
      for (const deadline = Date.now() + 15_000; Date.now() < deadline; ) {
        pullAnswer = await call(a.url, `/v1/types/${type}/messages?group=g&wait=0`).catch(() => undefined);
        if (pullAnswer?.status === 503) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(pullAnswer?.status, 503, 'a draining replica takes no pulls');
      const ack = await call(third.url, '/v1/acks', { body: { receipts: [held.json.messages[0].receipt] } });
      assert.equal(ack.status, 200, JSON.stringify(ack.json));
      const exit = await a.exited;
      assert.ok(exit.code === 0 || exit.code === 143 || exit.signal === 'SIGTERM', `exit ${JSON.stringify(exit)}`);
      // The acked messages never come back (others, buffered by the replica that drained, may).
      const after = await call(b.url, `/v1/types/${type}/messages?group=g&max=5&wait=1000`);
      assert.equal(after.status, 200);
      const gone = [m!.id, held.json.messages[0].id];
      assert.ok(!after.json.messages.some((x: { id: string }) => gone.includes(x.id)), 'acked messages are gone');

      // A replica with another secret names the mismatch instead of calling the receipt forged.
      const stranger = await startReplica(c.configFile, {
        BUSBAR_RECEIPT_SECRET: 'another-secret-another-secret-another-secret',
      });
      c.replicas.push(stranger);
      const refused = await call(stranger.url, '/v1/acks', { body: { receipts: [m!.receipt] } });
      assert.equal(refused.status, 400);
      assert.match(refused.json.error.message, /another receipt secret.*same server\.receiptSecret/);
    });

    // The forwarding path is the same on every broker: one run is enough.
    if (setup.name === 'embedded')
      test("with bearer tokens, a forwarded settle carries the caller's token and its scopes", {
        skip,
        timeout: 120_000,
      }, async () => {
        const worker = 'worker-token-0123456789';
        const writer = 'writer-token-0123456789';
        const c = await cluster({
          tokens: [
            { name: 'worker', token: worker, publish: ['*'], consume: ['*'] },
            { name: 'writer', token: writer, publish: ['*'] },
          ],
        });
        const [a, b] = c.replicas as [(typeof c.replicas)[0], (typeof c.replicas)[0]];
        const type = fresh('auth');
        const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
        const sent = await call(a.url, `/v1/types/${type}/messages`, {
          body: { messages: [{ body: 1 }] },
          headers: bearer(worker),
        });
        assert.equal(sent.status, 200, JSON.stringify(sent.json));
        const got = await call(a.url, `/v1/types/${type}/messages?group=g&wait=3000`, { headers: bearer(worker) });
        assert.equal(got.json.messages.length, 1);
        const receipts = [got.json.messages[0].receipt];
        assert.equal((await call(b.url, '/v1/acks', { body: { receipts } })).status, 401);
        assert.equal((await call(b.url, '/v1/acks', { body: { receipts }, headers: bearer(writer) })).status, 403);
        // Straight at the owner's replica route, the scopes hold as well.
        const direct = await call(a.url, '/v1/replicas/settle', {
          body: { action: 'ack', receipts },
          headers: bearer(writer),
        });
        assert.equal(direct.status, 403);
        const ok = await call(b.url, '/v1/acks', { body: { receipts }, headers: bearer(worker) });
        assert.equal(ok.status, 200, JSON.stringify(ok.json));
        assert.equal(ok.replica, b.id);
      });
  });
}
