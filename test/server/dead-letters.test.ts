/**
 * The gateway's dead-letter and peek routes over real brokers. Dead letters are made by a failing handler of the bus
 * the gateway serves; the REST API lists them (reason, attempts, original type and group), reads one by id, redrives
 * one and then all (consumed again by the fixed handler) and purges. Scopes: consume to look, admin to change. Peek
 * pages by position without consuming, and answers 422 BUSBAR_ERR_UNSUPPORTED where the transport cannot browse.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { MessageBus } from '../../src/index.ts';
import { type RunningServer, startServer } from '../../src/server/index.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { call } from './helpers.ts';

const ADMIN = 'admin-token-0123456789abcdef';
const READER = 'reader-token-0123456789abcdef';
const tokens = [
  { name: 'ops', token: ADMIN, admin: ['*'], publish: ['*'], consume: ['*'] },
  { name: 'reader', token: READER, consume: ['*'] },
];

interface Target {
  name: string;
  url(t: TestContext): string;
  check?: { url: string; port: number };
}

const targets: Target[] = [
  {
    name: 'embedded',
    url(t) {
      const dir = mkdtempSync(join(tmpdir(), 'busbar-rest-dlq-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      return `embedded:${join(dir, 'bus.db')}`;
    },
  },
  { name: 'redis', url: () => BROKERS.redis, check: { url: BROKERS.redis, port: 6379 } },
  { name: 'rabbitmq', url: () => BROKERS.rabbitmq, check: { url: BROKERS.rabbitmq, port: 5672 } },
];

async function serve(
  t: TestContext,
  target: Target,
): Promise<{ bus: MessageBus; server: RunningServer; type: string }> {
  const bus = await MessageBus.connect(target.url(t));
  const server = await startServer({ bus, port: 0, tokens });
  const type = `rest-dlq-${randomUUID().slice(0, 8)}`;
  t.after(async () => {
    await server.close();
    for (const name of [type, `${type}.dlq`])
      await bus
        .admin()
        .deregisterMessageType(name)
        .catch(() => {});
    await bus.close();
  });
  return { bus, server, type };
}

async function skipped(target: Target): Promise<string | undefined> {
  if (!target.check) return undefined;
  const { host, port } = hostPort(target.check.url, target.check.port);
  return brokerSkipReason(target.name, () => tcpReachable(host, port));
}

for (const target of targets) {
  describe(`dead letters and peek over REST on ${target.name}`, { timeout: 120_000 }, () => {
    it('list, read one, redrive one then all, purge; consume scope looks, admin scope changes', async (t) => {
      const skip = await skipped(target);
      if (skip) return t.skip(skip);
      const { bus, server, type } = await serve(t, target);
      const url = server.url;
      await bus.admin().registerMessageType(type);

      const empty = await call(url, `/v1/types/${type}/dead-letters`, { token: READER });
      assert.equal(empty.status, 200, empty.text);
      assert.deepEqual(empty.json.deadLetters, []);
      const ghost = await call(url, `/v1/types/${type}-ghost/dead-letters`, { token: READER });
      assert.equal(ghost.status, 404, ghost.text);
      assert.equal(ghost.json.error.code, 'BUSBAR_ERR_UNKNOWN_TYPE');

      const failing = bus.handle(type, { group: 'rest-g', maxAttempts: 1 }, async () => {
        throw new Error('refused <script>');
      });
      await failing.ready;
      const sent = await call(url, `/v1/types/${type}/messages`, {
        token: ADMIN,
        body: { messages: [{ body: 'text body' }, { body: { n: 2 } }, { body: 'AAEC', encoding: 'base64' }] },
      });
      assert.equal(sent.status, 200, sent.text);
      const ids: string[] = sent.json.ids;
      let list = await call(url, `/v1/types/${type}/dead-letters`, { token: READER });
      const deadline = Date.now() + 30_000;
      while (list.json.deadLetters.length < 3 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        list = await call(url, `/v1/types/${type}/dead-letters`, { token: READER });
      }
      await failing.close();
      assert.deepEqual(list.json.deadLetters.map((d: { id: string }) => d.id).sort(), [...ids].sort());
      const byId = new Map(list.json.deadLetters.map((d: { id: string }) => [d.id, d]));
      // biome-ignore lint/suspicious/noExplicitAny: wire JSON
      const first: any = byId.get(ids[0]!);
      assert.equal(first.originalType, type);
      assert.equal(first.group, 'rest-g');
      assert.equal(first.attempts, 1);
      assert.match(first.reason, /refused <script>/);
      assert.equal(first.body, 'text body');
      // biome-ignore lint/suspicious/noExplicitAny: wire JSON
      assert.deepEqual((byId.get(ids[1]!) as any).body, { n: 2 });
      // biome-ignore lint/suspicious/noExplicitAny: wire JSON
      assert.equal((byId.get(ids[2]!) as any).encoding, 'base64');

      const one = await call(url, `/v1/types/${type}/dead-letters/messages/${ids[1]}`, { token: READER });
      assert.equal(one.status, 200, one.text);
      assert.deepEqual(one.json.body, { n: 2 });
      const none = await call(url, `/v1/types/${type}/dead-letters/messages/no-such-id`, { token: READER });
      assert.equal(none.status, 404);

      // Changing needs the admin scope.
      const refused = await call(url, `/v1/types/${type}/dead-letters/redrive`, { token: READER, body: {} });
      assert.equal(refused.status, 403, refused.text);
      const refusedPurge = await call(url, `/v1/types/${type}/dead-letters/purge`, { token: READER, body: {} });
      assert.equal(refusedPurge.status, 403, refusedPurge.text);

      const back = new Set<string>();
      const fixed = bus.handle(type, { group: 'rest-g' }, async (m) => {
        back.add(m.headers['busbar-redriven-from'] ?? m.id);
      });
      await fixed.ready;
      const redriveOne = await call(url, `/v1/types/${type}/dead-letters/redrive`, {
        token: ADMIN,
        body: { ids: [ids[0]] },
      });
      assert.equal(redriveOne.status, 200, redriveOne.text);
      assert.deepEqual(redriveOne.json.redriven, [ids[0]]);
      assert.deepEqual(redriveOne.json.missing, []);
      const redriveAll = await call(url, `/v1/types/${type}/dead-letters/redrive`, { token: ADMIN, body: {} });
      assert.equal(redriveAll.status, 200, redriveAll.text);
      assert.deepEqual([...redriveAll.json.redriven].sort(), ids.slice(1).sort());
      const until = Date.now() + 30_000;
      while (back.size < 3 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
      await fixed.close();
      assert.deepEqual([...back].sort(), [...ids].sort(), 'every redriven message was consumed');

      const again = bus.handle(type, { group: 'rest-g', maxAttempts: 1 }, async () => {
        throw new Error('again');
      });
      await again.ready;
      await bus.send(type, 'four');
      const wait = Date.now() + 30_000;
      while ((await bus.admin().deadLetters(type, { idleMs: 300 })).length < 1 && Date.now() < wait) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await again.close();
      const purged = await call(url, `/v1/types/${type}/dead-letters/purge`, { token: ADMIN, body: {} });
      assert.equal(purged.status, 200, purged.text);
      const after = await call(url, `/v1/types/${type}/dead-letters`, { token: READER });
      assert.deepEqual(after.json.deadLetters, []);
    });

    it('stats name the consumers of a group where the broker tells (the console shows them)', async (t) => {
      const skip = await skipped(target);
      if (skip) return t.skip(skip);
      const { bus, server, type } = await serve(t, target);
      const consumer = bus.consumer({ consumerGroup: 'counted', messageTypes: type });
      await consumer.ready;
      t.after(() => consumer.close());
      const stats = await call(server.url, `/v1/types/${type}/stats`, { token: READER });
      assert.equal(stats.status, 200, stats.text);
      const group = stats.json.groups.find((g: { group: string }) => g.group === 'counted');
      assert.ok(group, stats.text);
      if (target.name === 'rabbitmq') assert.equal(group.consumers, 1);
      else assert.equal(group.consumers, undefined, 'absent where the broker cannot tell');
    });

    it('peek pages by position without consuming, or answers 422 where the transport cannot', async (t) => {
      const skip = await skipped(target);
      if (skip) return t.skip(skip);
      const { bus, server, type } = await serve(t, target);
      await bus.sendBatch(type, ['p1', 'p2', 'p3']);
      const first = await call(server.url, `/v1/types/${type}/peek?count=2`, { token: READER });
      if (bus.capabilities.peek === undefined) {
        assert.equal(first.status, 422, first.text);
        assert.equal(first.json.error.code, 'BUSBAR_ERR_UNSUPPORTED');
        assert.match(first.json.error.message, /cannot browse messages without consuming them/);
        return;
      }
      assert.equal(first.status, 200, first.text);
      assert.deepEqual(
        first.json.messages.map((m: { body: string }) => m.body),
        ['p1', 'p2'],
      );
      const next = await call(
        server.url,
        `/v1/types/${type}/peek?count=5&from=${encodeURIComponent(first.json.messages[1].position)}`,
        { token: READER },
      );
      assert.deepEqual(
        next.json.messages.map((m: { body: string }) => m.body),
        ['p2', 'p3'],
      );
      const bad = await call(server.url, `/v1/types/${type}/peek?count=0`, { token: READER });
      assert.equal(bad.status, 400, bad.text);
      const ghost = await call(server.url, `/v1/types/${type}-ghost/peek`, { token: READER });
      assert.equal(ghost.status, 404, ghost.text);
    });
  });
}
