import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { isBusError } from '../../src/errors.ts';
import createNatsTransport from '../../src/transports/nats/index.ts';
import { PULL_EXPIRES_MS } from '../../src/transports/nats/subscription.ts';
import { eventually } from '../helpers/eventually.ts';
import {
  consumeOptions,
  freshGroup,
  freshType,
  message,
  natsConfig,
  open,
  skipReason,
  take,
  tempType,
} from './nats-helpers.ts';

const skip = await skipReason();
describe('nats transport', { skip }, () => {
  test('round trip keeps ids, attributes, headers, key and bodies byte-exact', async (t) => {
    const transport = await open(t);
    const type = tempType(transport);
    const headers = {
      'x-plain': 'value',
      'x-spaces': '  padded value  ',
      'x-unicode': 'Euro € 😀',
      'x-percent': '100% "quoted"',
      'x-empty': '',
      'ce-lookalike': 'kept as a header',
      'Nats-Lookalike': 'not a JetStream header',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    };
    const bodies: Uint8Array[] = [
      new Uint8Array([0, 1, 2, 255, 254, 13, 10]),
      new TextEncoder().encode('ünïcödé ✓ 😀'),
      new Uint8Array(0),
      // max_payload is 1 MiB for body and headers together on a default nats-server.
      randomBytes(1024 * 1024 - 4096),
    ];
    const sent = bodies.map((body, i) => message(type, body, { headers, key: `key-${i}` }));
    await transport.publish(type, sent);
    const sub = transport.consume(consumeOptions(type, freshGroup()));
    t.after(() => sub.close());
    const got = await take(sub, sent.length);
    assert.equal(got.length, sent.length);
    for (const [i, delivery] of got.entries()) {
      const expected = sent[i]!;
      const m = delivery.message;
      assert.equal(m.id, expected.id);
      assert.equal(m.type, type);
      assert.equal(m.source, expected.source);
      assert.equal(m.time, expected.time);
      assert.equal(m.contentType, expected.contentType);
      assert.equal(m.key, expected.key);
      assert.deepEqual(m.headers, headers);
      assert.deepEqual(Buffer.from(m.body), Buffer.from(expected.body));
      assert.equal(delivery.attempt, 1);
      await delivery.ack();
      await delivery.ack();
    }
  });

  test('messages larger than max_payload travel in parts and come back whole', async (t) => {
    const transport = await open(t);
    const type = tempType(transport);
    const sizes = [1024 * 1024, 3 * 1024 * 1024 + 17];
    const sent = sizes.map((size) =>
      message(type, new Uint8Array(randomBytes(size)), { headers: { 'x-size': `${size}` } }),
    );
    await transport.publish(type, sent);
    await transport.publish(type, sent.slice(0, 1));
    const group = freshGroup();
    const sub = transport.consume(consumeOptions(type, group));
    t.after(() => sub.close());
    const got = await take(sub, 2, 30_000);
    got.push(...(await take(sub, 1, 1000)));
    assert.equal(got.length, 2, 'the re-published duplicate is stored once');
    for (const [i, delivery] of got.entries()) {
      assert.equal(delivery.message.id, sent[i]!.id);
      assert.equal(delivery.message.headers['x-size'], `${sizes[i]}`);
      assert.ok(Buffer.from(delivery.message.body).equals(Buffer.from(sent[i]!.body)), `body ${i} differs`);
    }
    await got[0]!.nack();
    const [again] = await take(sub, 1);
    assert.equal(again?.attempt, 2);
    assert.ok(Buffer.from(again!.message.body).equals(Buffer.from(sent[0]!.body)));
    await Promise.all([again!.ack(), got[1]!.ack()]);
    const [stats] = await transport.admin.stats(type);
    assert.equal(stats?.depth, 2, 'parts are not counted as messages');
    assert.deepEqual(
      stats?.groups.map((g) => g.unread),
      [0],
    );
  });

  test('every group gets every message; within a group each goes to one member', async (t) => {
    const transport = await open(t);
    const type = tempType(transport);
    const n = 60;
    const [g1, g2] = [freshGroup(), freshGroup()];
    const a = transport.consume(consumeOptions(type, g1));
    const b = transport.consume(consumeOptions(type, g1));
    const c = transport.consume(consumeOptions(type, g2));
    t.after(() => Promise.all([a.close(), b.close(), c.close()]));
    await Promise.all([a.ready, b.ready, c.ready]);
    await transport.publish(
      type,
      Array.from({ length: n }, (_, i) => message(type, `m${i}`)),
    );
    const seen1 = new Map<string, number>();
    // Members of a group read until their group has all n (not until a quiet gap, which a loaded machine makes).
    const drain = async (sub: typeof a, seen: Map<string, number>) => {
      const deadline = Date.now() + 60_000;
      while (seen.size < n && Date.now() < deadline) {
        const batch = await take(sub, 100, 500);
        for (const d of batch) {
          seen.set(d.message.id, (seen.get(d.message.id) ?? 0) + 1);
          await d.ack();
        }
      }
    };
    const seen2 = new Map<string, number>();
    await Promise.all([drain(a, seen1), drain(b, seen1), drain(c, seen2)]);
    assert.equal(seen1.size, n);
    assert.ok([...seen1.values()].every((count) => count === 1));
    assert.equal(seen2.size, n);
  });

  test('nack redelivers with the attempt incremented, after the delay', async (t) => {
    const transport = await open(t);
    const type = tempType(transport);
    await transport.publish(type, [message(type, 'again')]);
    const sub = transport.consume(consumeOptions(type, freshGroup()));
    t.after(() => sub.close());
    const [first] = await take(sub, 1);
    assert.equal(first?.attempt, 1);
    await first!.nack();
    const [second] = await take(sub, 1);
    assert.equal(second?.attempt, 2);
    assert.equal(second?.message.id, first?.message.id);
    const nackedAt = Date.now();
    await second!.nack({ delayMs: 1500 });
    const [third] = await take(sub, 1, 5000);
    assert.equal(third?.attempt, 3);
    assert.ok(Date.now() - nackedAt >= 1400, `redelivered after ${Date.now() - nackedAt} ms`);
    await third!.ack();
  });

  test('unacked messages return after the ack timeout and at once when their consumer closes', async (t) => {
    const transport = await open(t);
    const type = tempType(transport);
    const group = freshGroup();
    await transport.publish(type, [message(type, 'one'), message(type, 'two')]);
    const first = transport.consume(consumeOptions(type, group, { ackTimeoutMs: 1000 }));
    const got = await take(first, 2);
    assert.equal(got.length, 2);
    const timedOut = await take(first, 2, 30_000);
    assert.equal(timedOut.length, 2, 'redelivered after the ack timeout');
    assert.ok(timedOut.every((d) => d.attempt === 2));
    const closedAt = Date.now();
    await first.close();
    await assert.rejects(timedOut[0]!.ack(), (error) => isBusError(error, 'BUSBAR_ERR_CLOSED'));
    // Back at once, or (when the server served them to the closed consumer's own pull request, see Puller in
    // src/transports/nats/subscription.ts) once that request expired: either way long before the 30 s ack timeout.
    // The ack timeout is 2 minutes: anything back well before it was returned by the close (or the pull's expiry).
    const second = transport.consume(consumeOptions(type, group, { ackTimeoutMs: 120_000 }));
    t.after(() => second.close());
    const back = await take(second, 2, PULL_EXPIRES_MS + 40_000);
    assert.equal(back.length, 2);
    assert.ok(Date.now() - closedAt < PULL_EXPIRES_MS + 40_000, 'returned before the ack timeout could have');
    for (const d of back) await d.ack();
  });

  test('prefetch bounds what one consumer holds unacked', async (t) => {
    const transport = await open(t);
    const type = tempType(transport);
    const group = freshGroup();
    await transport.publish(
      type,
      Array.from({ length: 10 }, (_, i) => message(type, `m${i}`)),
    );
    const greedy = transport.consume(consumeOptions(type, group, { prefetch: 3 }));
    t.after(() => greedy.close());
    // The three it may hold (within a patience only a failure exhausts); then a quiet second for a fourth.
    const held = await take(greedy, 3, 30_000);
    assert.equal(held.length, 3);
    assert.equal((await take(greedy, 1, 1000)).length, 0, 'the greedy one holds more than its prefetch');
    const other = transport.consume(consumeOptions(type, group, { prefetch: 100 }));
    t.after(() => other.close());
    const rest = await take(other, 7, 30_000);
    assert.equal(rest.length, 7);
    assert.equal((await take(other, 1, 1000)).length, 0, 'more than the ten were delivered');
    await held[0]!.ack();
    assert.equal((await take(greedy, 1, 500)).length, 0, 'nothing left for the greedy one');
  });

  test('a new group starts at earliest or latest as asked', async (t) => {
    const transport = await open(t);
    const type = tempType(transport);
    await transport.publish(type, [message(type, 'old')]);
    const early = transport.consume(consumeOptions(type, freshGroup(), { offset: 'earliest' }));
    const late = transport.consume(consumeOptions(type, freshGroup(), { offset: 'latest' }));
    t.after(() => Promise.all([early.close(), late.close()]));
    await Promise.all([early.ready, late.ready]);
    await transport.publish(type, [message(type, 'new')]);
    const decode = (ds: { message: { body: Uint8Array } }[]) => ds.map((d) => new TextDecoder().decode(d.message.body));
    // What each must get (within a patience only a failure exhausts), then a quiet second for anything more.
    assert.deepEqual(decode([...(await take(early, 2, 30_000)), ...(await take(early, 1, 1000))]), ['old', 'new']);
    assert.deepEqual(decode([...(await take(late, 1, 30_000)), ...(await take(late, 1, 1000))]), ['new']);
  });

  test('one consumer reads several types', async (t) => {
    const transport = await open(t);
    const [x, y] = [tempType(transport), tempType(transport)];
    await transport.publish(x, [message(x, 'x')]);
    await transport.publish(y, [message(y, 'y')]);
    const sub = transport.consume(consumeOptions([x, y], freshGroup()));
    t.after(() => sub.close());
    const got = await take(sub, 2);
    assert.deepEqual(got.map((d) => d.message.type).sort(), [x, y].sort());
  });

  test('admin: ensure, list, partitions, retention, purge, stats, delete', async (t) => {
    const transport = await open(t);
    const { admin } = transport;
    const type = tempType(transport, `${freshType()}.with_dots-and_underscores.`);
    await admin.ensureType(type);
    await admin.ensureType(type);
    let listed = (await admin.listTypes()).find((info) => info.type === type);
    assert.deepEqual(listed, { type, partitions: 1, retention: { maxAgeMs: undefined, maxBytes: undefined } });
    await assert.rejects(admin.setPartitions(type, 4), (error) => isBusError(error, 'BUSBAR_ERR_UNSUPPORTED'));
    await assert.rejects(admin.setPartitions(type, 0), (error) => isBusError(error, 'BUSBAR_ERR_PARTITIONS'));
    await admin.setPartitions(type, 1);

    const group = freshGroup();
    const sub = transport.consume(consumeOptions(type, group, { prefetch: 2 }));
    t.after(() => sub.close());
    await transport.publish(
      type,
      Array.from({ length: 5 }, (_, i) => message(type, `m${i}`)),
    );
    const held = await take(sub, 2);
    assert.equal(held.length, 2);
    // JetStream's consumer info counts the two deliveries a moment after they arrive here: read until it does.
    let stats = await eventually(
      async () => (await admin.stats(type))[0],
      (s) => s?.groups[0]?.inflight === 2 && s.groups[0].unread === 5,
    );
    assert.equal(stats?.depth, 5);
    assert.ok((stats?.bytes ?? 0) > 10);
    assert.deepEqual(
      stats?.groups.map((g) => ({ group: g.group, unread: g.unread, inflight: g.inflight })),
      [{ group, unread: 5, inflight: 2 }],
    );
    assert.ok((stats?.groups[0]?.oldestAgeMs ?? -1) >= 0);

    await admin.purge(type);
    [stats] = await admin.stats(type);
    assert.equal(stats?.depth, 0);
    assert.equal(stats?.groups[0]?.unread, 0);

    await admin.setRetention(type, { maxBytes: 2000 });
    await transport.publish(
      type,
      Array.from({ length: 20 }, () => message(type, 'x'.repeat(200))),
    );
    [stats] = await admin.stats(type);
    assert.ok((stats?.depth ?? 99) < 20, `retention by bytes trims (depth ${stats?.depth})`);
    await admin.setRetention(type, { maxAgeMs: 1000 });
    listed = (await admin.listTypes()).find((info) => info.type === type);
    assert.deepEqual(listed?.retention, { maxAgeMs: 1000, maxBytes: 2000 });
    // The server expires old messages on its own timer: read until it did (it must, well within the patience).
    stats = await eventually(
      async () => (await admin.stats(type))[0],
      (s) => s?.depth === 0,
    );
    assert.equal(stats?.depth, 0, 'retention by age trims');

    await admin.deleteType(type);
    await admin.deleteType(type);
    assert.equal(
      (await admin.listTypes()).find((info) => info.type === type),
      undefined,
    );
    assert.deepEqual(await admin.stats(type), []);
    await assert.rejects(admin.setRetention(type, { maxAgeMs: 5 }), (error) =>
      isBusError(error, 'BUSBAR_ERR_UNKNOWN_TYPE'),
    );
  });

  test('publishing re-creates a type deleted meanwhile; a duplicate id is stored once', async (t) => {
    const transport = await open(t);
    const type = tempType(transport);
    const m = message(type, 'once');
    await transport.publish(type, [m]);
    await transport.publish(type, [m]);
    assert.equal((await transport.admin.stats(type))[0]?.depth, 1);
    const other = await open(t);
    await other.admin.deleteType(type);
    await transport.publish(type, [message(type, 'after delete')]);
    assert.equal((await transport.admin.stats(type))[0]?.depth, 1);
  });

  test('close is idempotent, unblocks a waiting consumer and refuses later use', async (t) => {
    const transport = await open(t);
    const type = tempType(transport);
    const sub = transport.consume(consumeOptions(type, freshGroup()));
    await sub.ready;
    const waiting = take(sub, 1, 10_000);
    await Promise.all([transport.close(), transport.close(), sub.close()]);
    assert.deepEqual(await waiting, []);
    await assert.rejects(transport.publish(type, [message(type, 'late')]), (error) =>
      isBusError(error, 'BUSBAR_ERR_CLOSED'),
    );
  });

  test('a list of servers works while one of them is down', async (t) => {
    const transport = await createNatsTransport({
      ...natsConfig(),
      endpoints: ['127.0.0.1:1', ...natsConfig().endpoints],
      options: { connectTimeoutMs: 2000 },
    });
    const type = freshType();
    t.after(async () => {
      await transport.admin.deleteType(type);
      await transport.close();
    });
    await transport.publish(type, [message(type, 'via the live one')]);
    assert.equal((await transport.admin.stats(type))[0]?.depth, 1);
  });

  test('an unreachable server fails with a retryable connection error', async () => {
    await assert.rejects(
      createNatsTransport({ ...natsConfig(), endpoints: ['127.0.0.1:1'], options: { connectTimeoutMs: 1000 } }),
      (error) => isBusError(error, 'BUSBAR_ERR_CONNECTION') && error.retryable && /nats-server/.test(error.message),
    );
  });

  test('bad names and options fail with a BusError that says what to do', async (t) => {
    const transport = await open(t);
    assert.throws(
      () => transport.consume(consumeOptions('bad name', freshGroup())),
      (error) => isBusError(error, 'BUSBAR_ERR_INVALID_TYPE_NAME'),
    );
    // A header name NATS cannot carry is no longer refused: it travels in ce-busbarheaders (cloudevents-nats.test.ts).
    await assert.rejects(open(t, { nope: 1 }), (error) => isBusError(error, 'BUSBAR_ERR_INVALID_CONFIG'));
  });
});
