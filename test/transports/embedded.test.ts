import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import { isBusError } from '../../src/errors.ts';
import type {
  ConsumeOptions,
  Delivery,
  Subscription,
  Transport,
  TransportMessage,
} from '../../src/transport/contract.ts';
import createEmbeddedTransport from '../../src/transports/embedded/index.ts';
import { defaultDatabasePath, parseEmbeddedOptions } from '../../src/transports/embedded/options.ts';

type TestContext = { after(fn: () => unknown): void };

const dir = mkdtempSync(join(tmpdir(), 'busbar-embedded-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function freshPath(): string {
  return join(dir, `${randomUUID()}.db`);
}

async function open(t: TestContext, path = freshPath(), query = ''): Promise<Transport> {
  const transport = await createEmbeddedTransport({ url: `embedded:${path}${query}`, endpoints: [], options: {} });
  t.after(() => transport.close());
  return transport;
}

function message(type: string, body: string | Uint8Array, extra: Partial<TransportMessage> = {}): TransportMessage {
  return {
    id: randomUUID(),
    type,
    source: 'test',
    time: new Date().toISOString(),
    contentType: 'text/plain',
    headers: {},
    body: typeof body === 'string' ? new TextEncoder().encode(body) : body,
    ...extra,
  };
}

function text(delivery: Delivery): string {
  return new TextDecoder().decode(delivery.message.body);
}

function consume(t: TestContext, transport: Transport, options: Partial<ConsumeOptions> & { types: string[] }) {
  const subscription = transport.consume({
    group: `g-${randomUUID()}`,
    consumerId: `c-${randomUUID()}`,
    offset: 'earliest',
    prefetch: 100,
    ackTimeoutMs: 30_000,
    ...options,
  });
  t.after(() => subscription.close());
  return subscription;
}

/** Reads deliveries from one iterator until `count` arrived or `timeoutMs` passed. */
function reader(subscription: Subscription) {
  const iterator = subscription[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<Delivery>> | undefined;
  return async (count: number, timeoutMs = 3000): Promise<Delivery[]> => {
    const got: Delivery[] = [];
    const deadline = Date.now() + timeoutMs;
    while (got.length < count) {
      pending ??= iterator.next();
      const left = deadline - Date.now();
      if (left <= 0) break;
      let timer: NodeJS.Timeout | undefined;
      const result = await Promise.race([
        pending,
        new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), left);
        }),
      ]);
      clearTimeout(timer);
      if (result === 'timeout') break;
      pending = undefined;
      if (result.done) break;
      got.push(result.value);
    }
    return got;
  };
}

const type = () => `t-${randomUUID()}`;

test('round trip keeps body bytes, attributes, key and headers exactly', async (t) => {
  const transport = await open(t);
  const ty = type();
  const binary = new Uint8Array(256).map((_, i) => i);
  const large = new Uint8Array(1024 * 1024).map((_, i) => (i * 31) % 256);
  const sent = [
    message(ty, binary, { contentType: 'application/octet-stream', key: 'k1', headers: { a: '1', 'x-ü': 'é ✓' } }),
    message(ty, 'héllo wörld ✓ 🚀'),
    message(ty, new Uint8Array(0)),
    message(ty, large),
  ];
  await transport.publish(ty, sent);
  const read = reader(consume(t, transport, { types: [ty] }));
  const got = await read(4);
  assert.equal(got.length, 4);
  for (const [i, delivery] of got.entries()) {
    const expected = sent[i]!;
    const m = delivery.message;
    assert.equal(delivery.attempt, 1);
    assert.deepEqual(
      {
        id: m.id,
        type: m.type,
        source: m.source,
        time: m.time,
        contentType: m.contentType,
        key: m.key,
        headers: m.headers,
      },
      {
        id: expected.id,
        type: ty,
        source: 'test',
        time: expected.time,
        contentType: expected.contentType,
        key: expected.key,
        headers: expected.headers,
      },
    );
    assert.deepEqual(Buffer.from(m.body), Buffer.from(expected.body));
    await delivery.ack();
  }
});

test('every group gets every message; within a group each goes to one consumer', async (t) => {
  const transport = await open(t);
  const ty = type();
  const groupA = `g-${randomUUID()}`;
  const groupB = `g-${randomUUID()}`;
  const a1 = reader(consume(t, transport, { types: [ty], group: groupA, prefetch: 5 }));
  const a2 = reader(consume(t, transport, { types: [ty], group: groupA, prefetch: 5 }));
  const b = reader(consume(t, transport, { types: [ty], group: groupB }));
  await Promise.all(
    Array.from({ length: 10 }, (_, i) => transport.publish(ty, [message(ty, `m${i}`), message(ty, `n${i}`)])),
  );
  const seen: string[] = [];
  const drain = async (read: (n: number, ms: number) => Promise<Delivery[]>) => {
    for (;;) {
      const got = await read(1, 500);
      if (got.length === 0) return;
      seen.push(text(got[0]!));
      await got[0]!.ack();
    }
  };
  await Promise.all([drain(a1), drain(a2)]);
  assert.equal(seen.length, 20);
  assert.equal(new Set(seen).size, 20);
  const fromB = await b(20);
  assert.deepEqual(new Set(fromB.map(text)), new Set(seen));
});

test('nack redelivers with attempt + 1, and a nack delay is honoured', async (t) => {
  const transport = await open(t);
  const ty = type();
  await transport.publish(ty, [message(ty, 'again')]);
  const read = reader(consume(t, transport, { types: [ty] }));
  const [first] = await read(1);
  assert.equal(first!.attempt, 1);
  await first!.nack();
  await first!.nack();
  const [second] = await read(1);
  assert.equal(second!.attempt, 2);
  assert.equal(second!.message.id, first!.message.id);
  const nackedAt = Date.now();
  await second!.nack({ delayMs: 300 });
  const [third] = await read(1);
  assert.ok(Date.now() - nackedAt >= 295, `redelivered after ${Date.now() - nackedAt} ms`);
  assert.equal(third!.attempt, 3);
  await third!.ack();
  await third!.nack();
  assert.deepEqual(await read(1, 300), []);
});

test('an unacked message returns after the ack timeout, and at once when its consumer closes', async (t) => {
  const transport = await open(t);
  const ty = type();
  const group = `g-${randomUUID()}`;
  await transport.publish(ty, [message(ty, 'slow'), message(ty, 'done')]);
  const first = consume(t, transport, { types: [ty], group, ackTimeoutMs: 300 });
  const read = reader(first);
  const [slow, done] = await read(2);
  await done!.ack();
  const start = Date.now();
  const [again] = await read(1);
  assert.ok(Date.now() - start >= 250);
  assert.equal(text(again!), 'slow');
  assert.equal(again!.attempt, 2);
  assert.equal(slow!.message.id, again!.message.id);
  await first.close();
  const second = reader(consume(t, transport, { types: [ty], group }));
  const closedAt = Date.now();
  const back = await second(1, 1000);
  assert.ok(Date.now() - closedAt < 250, `returned after ${Date.now() - closedAt} ms`);
  assert.deepEqual(back.map(text), ['slow']);
  assert.equal(back[0]!.attempt, 3);
  assert.deepEqual(await second(1, 300), [], 'the acked message does not return');
});

test('prefetch bounds the unacked deliveries of one consumer', async (t) => {
  const transport = await open(t);
  const ty = type();
  await transport.publish(
    ty,
    Array.from({ length: 10 }, (_, i) => message(ty, `m${i}`)),
  );
  const read = reader(consume(t, transport, { types: [ty], prefetch: 3 }));
  const firstThree = await read(10, 300);
  assert.equal(firstThree.length, 3);
  await firstThree[0]!.ack();
  const next = await read(10, 300);
  assert.equal(next.length, 1);
  assert.equal(text(next[0]!), 'm3');
});

test('offset earliest reads history; latest starts after ready', async (t) => {
  const transport = await open(t);
  const ty = type();
  await transport.publish(ty, [message(ty, 'old')]);
  const earliest = consume(t, transport, { types: [ty], offset: 'earliest' });
  const latest = consume(t, transport, { types: [ty], offset: 'latest' });
  await Promise.all([earliest.ready, latest.ready]);
  await transport.publish(ty, [message(ty, 'new')]);
  assert.deepEqual((await reader(earliest)(2)).map(text), ['old', 'new']);
  assert.deepEqual((await reader(latest)(2, 300)).map(text), ['new']);
});

test('per-key order: a held key waits, other keys keep flowing', async (t) => {
  const transport = await open(t);
  const ty = type();
  const group = `g-${randomUUID()}`;
  await transport.publish(ty, [
    message(ty, 'a1', { key: 'A' }),
    message(ty, 'a2', { key: 'A' }),
    message(ty, 'b1', { key: 'B' }),
    message(ty, 'b2', { key: 'B' }),
    message(ty, 'free'),
  ]);
  const one = reader(consume(t, transport, { types: [ty], group }));
  const two = reader(consume(t, transport, { types: [ty], group }));
  const got = [...(await one(5, 400)), ...(await two(5, 400))];
  assert.deepEqual(got.map(text).sort(), ['a1', 'b1', 'free']);
  const a1 = got.find((d) => text(d) === 'a1')!;
  await a1.nack();
  const redelivered = [...(await one(1, 400)), ...(await two(1, 400))];
  assert.deepEqual(redelivered.map(text), ['a1'], 'a1 comes back before a2');
  await redelivered[0]!.ack();
  await got.find((d) => text(d) === 'b1')!.ack();
  const rest = [...(await one(5, 400)), ...(await two(5, 400))];
  assert.deepEqual(rest.map(text).sort(), ['a2', 'b2']);
  assert.ok(rest.every((d) => d.attempt === 1));
});

test('admin: ensure, list, partitions grow only, retention, purge, delete, stats', async (t) => {
  const transport = await open(t);
  const { admin } = transport;
  const ty = type();
  await admin.ensureType(ty, { partitions: 2 });
  await admin.ensureType(ty, { partitions: 5 });
  let info = (await admin.listTypes()).find((i) => i.type === ty);
  assert.deepEqual(info, { type: ty, partitions: 2, retention: { maxAgeMs: 7 * 24 * 3600 * 1000 } });
  await admin.setPartitions(ty, 4);
  await assert.rejects(admin.setPartitions(ty, 3), (e) => isBusError(e, 'BUSBAR_ERR_PARTITIONS'));
  info = (await admin.listTypes()).find((i) => i.type === ty);
  assert.equal(info?.partitions, 4);

  const group = `g-${randomUUID()}`;
  const subscription = consume(t, transport, { types: [ty], group });
  await subscription.ready;
  await transport.publish(
    ty,
    Array.from({ length: 5 }, (_, i) => message(ty, `m${i}`)),
  );
  const [held] = await reader(subscription)(1);
  let [stats] = await admin.stats(ty);
  assert.equal(stats!.depth, 5);
  assert.equal(stats!.bytes, 10);
  assert.equal(stats!.partitions, 4);
  const groupStats = stats!.groups.find((g) => g.group === group)!;
  assert.equal(groupStats.unread, 5);
  assert.ok(groupStats.inflight >= 1);
  assert.ok(groupStats.oldestAgeMs !== null && groupStats.oldestAgeMs >= 0);
  await held!.ack();
  await subscription.close();
  [stats] = await admin.stats(ty);
  assert.equal(stats!.groups.find((g) => g.group === group)!.unread, 4);
  assert.equal(stats!.groups.find((g) => g.group === group)!.inflight, 0);

  await admin.setRetention(ty, { maxBytes: 4 });
  [stats] = await admin.stats(ty);
  assert.equal(stats!.depth, 2, 'byte limit keeps the newest messages that fit');
  assert.equal(stats!.groups.find((g) => g.group === group)!.unread, 2);
  await admin.setRetention(ty, { maxAgeMs: 100 });
  await new Promise((resolve) => setTimeout(resolve, 150));
  [stats] = await admin.stats(ty);
  assert.equal(stats!.depth, 0, 'age limit trims');
  assert.deepEqual((await admin.listTypes()).find((i) => i.type === ty)?.retention, { maxAgeMs: 100 });

  await admin.setRetention(ty, {});
  await transport.publish(ty, [message(ty, 'x'), message(ty, 'y')]);
  await admin.purge(ty);
  [stats] = await admin.stats(ty);
  assert.equal(stats!.depth, 0);
  assert.equal(stats!.bytes, 0);
  assert.deepEqual(
    stats!.groups.map((g) => g.unread),
    [0],
  );
  await transport.publish(ty, [message(ty, 'after purge')]);
  const afterPurge = consume(t, transport, { types: [ty], group });
  assert.deepEqual((await reader(afterPurge)(2, 300)).map(text), ['after purge']);
  await afterPurge.close();

  await admin.deleteType(ty);
  await admin.deleteType(ty);
  assert.equal(
    (await admin.listTypes()).find((i) => i.type === ty),
    undefined,
  );
  assert.deepEqual(await admin.stats(ty), []);
});

test('messages, cursors and leases survive closing and reopening the file', async (t) => {
  const path = freshPath();
  const ty = type();
  const group = `g-${randomUUID()}`;
  const first = await createEmbeddedTransport({ url: `embedded:${path}`, endpoints: [], options: {} });
  await first.publish(ty, [message(ty, 'one'), message(ty, 'two'), message(ty, 'three')]);
  const subscription = first.consume({
    types: [ty],
    group,
    consumerId: 'c',
    offset: 'earliest',
    prefetch: 10,
    ackTimeoutMs: 30_000,
  });
  const [one, two] = await reader(subscription)(2);
  await one!.ack();
  await first.close();
  await first.close();
  await one!.ack();
  await assert.rejects(two!.ack(), (e) => isBusError(e, 'BUSBAR_ERR_CLOSED'));
  await assert.rejects(first.publish(ty, [message(ty, 'late')]), (e) => isBusError(e, 'BUSBAR_ERR_CLOSED'));

  const second = await open(t, path);
  const got = await reader(consume(t, second, { types: [ty], group }))(3, 500);
  assert.deepEqual(got.map(text), ['two', 'three']);
  assert.equal(got[0]!.attempt, 2, 'two was delivered (prefetched) before the close');
});

test('close ends a blocked iteration; close is idempotent and concurrent-safe', async (t) => {
  const transport = await open(t);
  const ty = type();
  const subscription = consume(t, transport, { types: [ty] });
  const iteration = (async () => {
    for await (const _ of subscription) assert.fail('nothing was published');
    return 'ended';
  })();
  await subscription.ready;
  await Promise.all([transport.close(), transport.close(), subscription.close()]);
  assert.equal(await iteration, 'ended');
  assert.throws(() =>
    transport.consume({
      types: [ty],
      group: 'g',
      consumerId: 'c',
      offset: 'earliest',
      prefetch: 1,
      ackTimeoutMs: 1000,
    }),
  );
});

test('an abort signal closes the subscription', async (t) => {
  const transport = await open(t);
  const ty = type();
  const controller = new AbortController();
  const subscription = consume(t, transport, { types: [ty], signal: controller.signal });
  await subscription.ready;
  const read = reader(subscription);
  setTimeout(() => controller.abort(), 50);
  assert.deepEqual(await read(1, 2000), []);
});

test('one consumer can read several types', async (t) => {
  const transport = await open(t);
  const [x, y] = [type(), type()];
  await transport.publish(x, [message(x, 'x1')]);
  await transport.publish(y, [message(y, 'y1')]);
  const got = await reader(consume(t, transport, { types: [x, y] }))(2);
  assert.deepEqual(got.map((d) => `${d.message.type === x ? 'x' : 'y'}:${text(d)}`).sort(), ['x:x1', 'y:y1']);
});

test('two connections to one file in one process compete within a group', async (t) => {
  const path = freshPath();
  const [one, two] = [await open(t, path), await open(t, path)];
  const ty = type();
  const group = `g-${randomUUID()}`;
  const r1 = reader(consume(t, one, { types: [ty], group, prefetch: 2 }));
  const r2 = reader(consume(t, two, { types: [ty], group, prefetch: 2 }));
  await one.publish(
    ty,
    Array.from({ length: 4 }, (_, i) => message(ty, `m${i}`)),
  );
  const [g1, g2] = await Promise.all([r1(2, 1000), r2(2, 1000)]);
  assert.equal(g1.length, 2);
  assert.equal(g2.length, 2);
  assert.equal(new Set([...g1, ...g2].map(text)).size, 4);
});

test('bad URLs and files give BusErrors that say what to do', async () => {
  const file = join(dir, `${randomUUID()}.txt`);
  writeFileSync(file, 'not a database at all, just some text that is long enough to not look like an empty file');
  await assert.rejects(
    createEmbeddedTransport({ url: `embedded:${file}`, endpoints: [], options: {} }),
    (e) => isBusError(e, 'BUSBAR_ERR_CONFIG_FILE') && /bus file/.test(e.message),
  );
  const foreign = join(dir, `${randomUUID()}.db`);
  const db = new DatabaseSync(foreign);
  db.exec('CREATE TABLE invoices (id INTEGER)');
  db.close();
  await assert.rejects(
    createEmbeddedTransport({ url: `embedded:${foreign}`, endpoints: [], options: {} }),
    (e) => isBusError(e, 'BUSBAR_ERR_CONFIG_FILE') && /another application/.test(e.message),
  );
  await assert.rejects(
    createEmbeddedTransport({ url: `embedded:${file}/sub/bus.db`, endpoints: [], options: {} }),
    (e) => isBusError(e, 'BUSBAR_ERR_CONFIG_FILE') && /folder/.test(e.message),
  );
  await assert.rejects(
    createEmbeddedTransport({ url: `embedded:${freshPath()}?sync=sometimes`, endpoints: [], options: {} }),
    (e) => isBusError(e, 'BUSBAR_ERR_INVALID_CONFIG'),
  );
  await assert.rejects(
    createEmbeddedTransport({ url: `embedded:${freshPath()}?colour=blue`, endpoints: [], options: {} }),
    (e) => isBusError(e, 'BUSBAR_ERR_INVALID_CONFIG') && /colour/.test(e.message),
  );
  // The same option from a config file fails the same way.
  await assert.rejects(
    createEmbeddedTransport({ url: `embedded:${freshPath()}`, endpoints: [], options: { pollMs: 'soon' } }),
    (e) => isBusError(e, 'BUSBAR_ERR_INVALID_CONFIG') && /^invalid embedded option 'pollMs'/.test(e.message),
  );
});

test('URL forms resolve to the expected file', () => {
  const config = (url: string) => ({ url, endpoints: [], options: {} });
  assert.equal(parseEmbeddedOptions(config('embedded:')).path, defaultDatabasePath());
  assert.equal(parseEmbeddedOptions(config('embedded:/abs/bus.db')).path, '/abs/bus.db');
  assert.equal(parseEmbeddedOptions(config('embedded:///abs/bus.db')).path, '/abs/bus.db');
  assert.equal(parseEmbeddedOptions(config('embedded:./rel.db'), '/work').path, '/work/rel.db');
  assert.equal(parseEmbeddedOptions(config('embedded:./rel.db?sync=full')).sync, 'full');
  assert.equal(parseEmbeddedOptions({ ...config('embedded:x.db'), options: { sync: 'FULL' } }).sync, 'full');
  assert.equal(defaultDatabasePath({ XDG_DATA_HOME: '/xdg' }), '/xdg/busbar/bus.db');
});

test('sync=full works end to end', async (t) => {
  const transport = await open(t, freshPath(), '?sync=full');
  const ty = type();
  await transport.publish(ty, [message(ty, 'durable')]);
  assert.deepEqual((await reader(consume(t, transport, { types: [ty] }))(1)).map(text), ['durable']);
});

test('rows written by another program are delivered, with missing attributes filled in', async (t) => {
  const path = freshPath();
  const transport = await open(t, path);
  const ty = type();
  await transport.admin.ensureType(ty);
  const db = new DatabaseSync(path, { timeout: 5000 });
  db.exec('BEGIN IMMEDIATE');
  const insert = db.prepare(
    'INSERT INTO messages (type, key, headers, body, size, published_ms) VALUES (?, ?, ?, ?, ?, ?)',
  );
  insert.run(ty, null, null, new Uint8Array([1, 2, 3]), 3, Date.now());
  insert.run(ty, 'k', '{"n": 1, "s": "x"}', 'a text body', 11, Date.now());
  insert.run(ty, null, 'not json', new Uint8Array(0), 0, Date.now());
  db.prepare('UPDATE types SET depth = depth + 3, bytes = bytes + 14 WHERE name = ?').run(ty);
  db.exec('COMMIT');
  db.close();
  const got = await reader(consume(t, transport, { types: [ty] }))(3);
  assert.equal(got.length, 3);
  const [bare, texty, bad] = got.map((d) => d.message);
  assert.match(bare!.id, /^embedded-\d+$/);
  assert.equal(bare!.source, 'unknown');
  assert.equal(bare!.contentType, 'application/octet-stream');
  assert.ok(!Number.isNaN(Date.parse(bare!.time)));
  assert.deepEqual([...bare!.body], [1, 2, 3]);
  assert.equal(new TextDecoder().decode(texty!.body), 'a text body');
  assert.deepEqual(texty!.headers, { n: '1', s: 'x' });
  assert.equal(texty!.key, 'k');
  assert.deepEqual(bad!.headers, { 'busbar-invalid-headers': 'not json' });
  const [stats] = await transport.admin.stats(ty);
  assert.equal(stats!.depth, 3);
});

test('leaving a for-await loop early closes the subscription and returns its leases', async (t) => {
  const transport = await open(t);
  const ty = type();
  const group = `g-${randomUUID()}`;
  await transport.publish(ty, [message(ty, 'first'), message(ty, 'second')]);
  for await (const delivery of consume(t, transport, { types: [ty], group })) {
    await delivery.ack();
    break;
  }
  const rest = await reader(consume(t, transport, { types: [ty], group }))(2, 300);
  assert.deepEqual(rest.map(text), ['second']);
  assert.equal(rest[0]!.attempt, 2, 'second was prefetched by the first subscription, then returned');
});

test('a key blocked behind a row another program deleted without promoting the next is repaired', async (t) => {
  const path = freshPath();
  const transport = await open(t, path, '?retentionIntervalMs=100');
  const ty = type();
  const group = `g-${randomUUID()}`;
  await transport.publish(ty, [message(ty, 'a1', { key: 'A' }), message(ty, 'a2', { key: 'A' })]);
  const read = reader(consume(t, transport, { types: [ty], group }));
  assert.deepEqual((await read(2, 300)).map(text), ['a1']);
  const db = new DatabaseSync(path, { timeout: 5000 });
  db.prepare(
    'DELETE FROM pending WHERE type = ? AND grp = ? AND seq = (SELECT min(seq) FROM pending WHERE type = ?)',
  ).run(ty, group, ty);
  db.close();
  assert.deepEqual((await read(1, 2000)).map(text), ['a2']);
});

test('trimming the message a key waits behind lets the next one go', async (t) => {
  const transport = await open(t);
  const ty = type();
  const group = `g-${randomUUID()}`;
  await transport.publish(ty, [message(ty, 'a1', { key: 'A' })]);
  const read = reader(consume(t, transport, { types: [ty], group }));
  assert.deepEqual((await read(1)).map(text), ['a1']);
  await transport.publish(ty, [message(ty, 'a2', { key: 'A' })]);
  assert.deepEqual(await read(1, 200), [], 'a2 waits behind a1');
  await transport.admin.setRetention(ty, { maxBytes: 2 });
  assert.deepEqual((await read(1, 1000)).map(text), ['a2']);
});
