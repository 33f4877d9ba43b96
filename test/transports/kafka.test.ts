/**
 * The Kafka transport against a real broker (BUSBAR_TEST_KAFKA_URL, default kafka://127.0.0.1:9092; start one with
 * `scripts/brokers/kafka start`): the wire mapping both ways with a plain @platformatic/kafka client, partitioning,
 * per-message acks over offsets, the retry topic, and admin.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, it, type TestContext } from 'node:test';
import { Admin, Consumer, type Message, murmur2, Producer } from '@platformatic/kafka';
import { DEAD_LETTER_GROUP } from '../../src/bus/dead-letter.ts';
import { DeadLetters } from '../../src/bus/dead-letters.ts';
import { isBusError } from '../../src/errors.ts';
import { MessageBus } from '../../src/index.ts';
import { buildMessage } from '../../src/message/envelope.ts';
import type { Delivery, Subscription, Transport } from '../../src/transport/contract.ts';
import createKafkaTransport from '../../src/transports/kafka/index.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { eventually } from '../helpers/eventually.ts';

const { host, port } = hostPort(BROKERS.kafka, 9092);
const endpoint = `${host}:${port}`;
const name = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function connect(t: TestContext, options: Record<string, string> = {}): Promise<Transport> {
  const transport = await createKafkaTransport({ url: BROKERS.kafka, endpoints: [endpoint], options });
  t.after(() => transport.close());
  return transport;
}

function subscribe(
  t: TestContext,
  transport: Transport,
  types: string[],
  group: string,
  extra: { prefetch?: number; ackTimeoutMs?: number; offset?: 'earliest' | 'latest' } = {},
): Subscription {
  const subscription = transport.consume({
    types,
    group,
    consumerId: name('c'),
    offset: extra.offset ?? 'earliest',
    prefetch: extra.prefetch ?? 16,
    ackTimeoutMs: extra.ackTimeoutMs ?? 30_000,
  });
  t.after(() => subscription.close());
  return subscription;
}

/** The next delivery, or null after `ms`. */
async function next(iterator: AsyncIterator<Delivery>, ms = 15_000): Promise<Delivery | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
  });
  const result = await Promise.race([iterator.next().then((r) => (r.done ? null : r.value)), timeout]);
  clearTimeout(timer);
  return result;
}

const text = (d: Delivery | null) => (d ? Buffer.from(d.message.body).toString() : null);

describe('kafka transport', { concurrency: false, timeout: 120_000 }, () => {
  let skip: string | undefined;
  before(async () => {
    skip = await brokerSkipReason('kafka', () => tcpReachable(host, port));
  });

  it('maps the envelope onto CloudEvents Kafka headers and the record key', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('wire');
    const message = buildMessage(type, 'producer-1', 'héllo', {
      key: 'order-7',
      headers: { 'x-trace': 'abc', 'content-type': 'user value', ce_custom: 'kept' },
    });
    await transport.publish(type, [message]);
    const consumer = new Consumer({ groupId: name('raw'), clientId: 'raw', bootstrapBrokers: [endpoint] });
    t.after(() => consumer.close(true));
    const stream = await consumer.consume({ topics: [type], mode: 'earliest', autocommit: false });
    const record = await new Promise<Message>((resolve) => stream.once('data', resolve));
    const headers = Object.fromEntries([...record.headers].map(([k, v]) => [k.toString(), v.toString()]));
    assert.equal(record.key.toString(), 'order-7');
    assert.equal(record.value.toString(), 'héllo');
    assert.equal(headers.ce_id, message.id);
    assert.equal(headers.ce_source, 'producer-1');
    assert.equal(headers.ce_type, type);
    assert.equal(headers.ce_specversion, '1.0');
    assert.equal(headers.ce_time, message.time);
    assert.equal(headers.ce_partitionkey, 'order-7');
    assert.equal(headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(headers['x-trace'], 'abc', 'a header that is no extension name keeps its name');
    assert.deepEqual(
      JSON.parse(headers.ce_busbarheaders!),
      { 'content-type': 'user value', ce_custom: 'kept' },
      'headers that would read as attributes ride in the busbarheaders extension',
    );

    const sub = subscribe(t, transport, [type], name('g'));
    const back = await next(sub[Symbol.asyncIterator]());
    assert.ok(back);
    assert.deepEqual(back.message.headers, { 'x-trace': 'abc', 'content-type': 'user value', ce_custom: 'kept' });
    assert.equal(back.message.contentType, 'text/plain; charset=utf-8');
    await back.ack();
  });

  it('receives a bare record from a plain client, filling the missing attributes', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('bare');
    await transport.admin.ensureType(type);
    const producer = new Producer({ clientId: 'plain', bootstrapBrokers: [endpoint] });
    t.after(() => producer.close());
    const before = Date.now();
    const sent = await producer.send({
      messages: [
        {
          topic: type,
          key: Buffer.from('k1'),
          value: Buffer.from([0, 1, 2]),
          headers: new Map([[Buffer.from('trace'), Buffer.from('t1')]]),
        },
      ],
    });
    const offset = sent.offsets![0]!.offset;
    const sub = subscribe(t, transport, [type], name('g'));
    const d = await next(sub[Symbol.asyncIterator]());
    assert.ok(d);
    assert.equal(d.message.id, `${type}-0-${offset}`);
    assert.equal(d.message.type, type);
    assert.equal(d.message.key, 'k1');
    assert.equal(d.message.contentType, 'application/octet-stream');
    assert.deepEqual(d.message.headers, { trace: 't1' });
    assert.deepEqual([...d.message.body], [0, 1, 2]);
    assert.ok(Date.parse(d.message.time) >= before - 1000, 'time comes from the record timestamp');
    await d.ack();
  });

  it('puts a key on the partition Java clients and librdkafka murmur2 pick', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('parts');
    await transport.admin.ensureType(type, { partitions: 4 });
    const keys = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta'];
    await transport.publish(
      type,
      keys.map((key) => buildMessage(type, 'p', key, { key })),
    );
    const consumer = new Consumer({ groupId: name('raw'), clientId: 'raw', bootstrapBrokers: [endpoint] });
    t.after(() => consumer.close(true));
    const stream = await consumer.consume({ topics: [type], mode: 'earliest', autocommit: false });
    const seen = new Map<string, number>();
    await new Promise<void>((resolve) => {
      stream.on('data', (m: Message) => {
        seen.set(m.key.toString(), m.partition);
        if (seen.size === keys.length) resolve();
      });
    });
    for (const key of keys) {
      const expected = (murmur2(Buffer.from(key)) & 0x7fffffff) % 4;
      assert.equal(seen.get(key), expected, `key ${key}`);
    }
  });

  it('keeps at most prefetch deliveries outstanding and redelivers after the ack timeout', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('prefetch');
    // Leases long against a loaded machine's pause between the two hand-outs, which must both be first attempts.
    const sub = subscribe(t, transport, [type], name('g'), { prefetch: 2, ackTimeoutMs: 2000 });
    await sub.ready;
    // No lease starts before the publish: a third delivery sooner than the ack timeout after it broke the prefetch.
    const publishedAt = Date.now();
    await transport.publish(
      type,
      ['a', 'b', 'c'].map((b) => buildMessage(type, 'p', b)),
    );
    const it = sub[Symbol.asyncIterator]();
    const first = await next(it);
    const second = await next(it);
    assert.deepEqual([text(first), text(second)], ['a', 'b']);
    const third = await next(it, 30_000);
    assert.ok(third, 'nothing came back');
    assert.ok(Date.now() - publishedAt >= 1900, 'a third delivery came before an ack or the ack timeout');
    assert.equal(text(third), 'a', 'the expired delivery comes back first');
    assert.equal(third.attempt, 2);
    await third.ack();
    await first!.ack(); // late ack of the expired hand-out: a no-op
    const fourth = await next(it);
    assert.ok(fourth);
    for (const d of [second, fourth]) await d!.ack();
  });

  it('nack with a delay goes through the retry topic without holding up other keys or other groups', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('retry');
    const [groupA, groupB] = [name('ga'), name('gb')];
    const a = subscribe(t, transport, [type], groupA);
    const b = subscribe(t, transport, [type], groupB);
    await Promise.all([a.ready, b.ready]);
    await transport.publish(type, [
      buildMessage(type, 'p', 'slow', { key: 'k1' }),
      buildMessage(type, 'p', 'fast', { key: 'k2' }),
    ]);
    const itA = a[Symbol.asyncIterator]();
    const slow = await next(itA);
    assert.equal(text(slow), 'slow');
    // A delay far longer than a loaded machine's pause: 'fast' must come well before it ends.
    const nackedAt = Date.now();
    await slow!.nack({ delayMs: 10_000 });
    const fast = await next(itA);
    assert.equal(text(fast), 'fast', 'the partition kept flowing');
    assert.ok(Date.now() - nackedAt < 8000, `'fast' came ${Date.now() - nackedAt} ms after the nack`);
    await fast!.ack();
    const again = await next(itA, 60_000);
    assert.ok(again);
    assert.equal(text(again), 'slow');
    assert.equal(again.attempt, 2);
    assert.equal(again.message.id, slow!.message.id);
    assert.equal(again.message.key, 'k1');
    assert.ok(Date.now() - nackedAt >= 9950, 'redelivered before its delay');
    await again.ack();

    const itB = b[Symbol.asyncIterator]();
    const forB = [await next(itB), await next(itB)];
    assert.deepEqual(forB.map(text).sort(), ['fast', 'slow']);
    for (const d of forB) await d!.ack();
    assert.equal(await next(itB, 2000), null, "group B saw group A's redelivery");
    const types = (await transport.admin.listTypes()).map((i) => i.type);
    assert.ok(types.includes(type));
    assert.ok(!types.some((x) => x.endsWith('.busbar-retry')), 'retry topics are listed');
  });

  it('closing returns exactly the unacked deliveries, not the acked ones behind them', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('close');
    const group = name('g');
    const first = subscribe(t, transport, [type], group);
    await first.ready;
    await transport.publish(
      type,
      ['m1', 'm2', 'm3'].map((b) => buildMessage(type, 'p', b)),
    );
    const it = first[Symbol.asyncIterator]();
    const got = [await next(it), await next(it), await next(it)];
    await got[0]!.ack();
    await got[2]!.ack();
    await first.close();
    const second = subscribe(t, transport, [type], group);
    const itSecond = second[Symbol.asyncIterator]();
    const back = await next(itSecond);
    assert.equal(text(back), 'm2');
    assert.equal(back!.attempt, 2);
    await back!.ack();
    assert.equal(await next(itSecond, 1500), null, 'an acked message came back');
  });

  it('closing with nothing acked leaves the group where it was: unread stays, attempts do not count up', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('untouched');
    const group = name('g');
    const first = subscribe(t, transport, [type], group);
    await first.ready;
    await transport.publish(
      type,
      ['m1', 'm2', 'm3'].map((b) => buildMessage(type, 'p', b)),
    );
    const it = first[Symbol.asyncIterator]();
    const got = [await next(it), await next(it), await next(it)];
    assert.deepEqual(got.map(text), ['m1', 'm2', 'm3']);
    await first.close();
    const [stats] = await transport.admin.stats(type);
    assert.equal(stats!.groups.find((g) => g.group === group)?.unread, 3, 'closing moved the committed offset');
    const second = subscribe(t, transport, [type], group);
    const itSecond = second[Symbol.asyncIterator]();
    const back = [await next(itSecond), await next(itSecond), await next(itSecond)];
    assert.deepEqual(back.map(text), ['m1', 'm2', 'm3'], 'read again from the committed offset, in order');
    for (const d of back) await d!.ack();
    assert.equal(await next(itSecond, 1500), null, 'a returned message came twice (the retry topic too)');
  });

  it('listing and peeking dead letters moves nothing: the dead-letter group keeps its unread count', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('dl');
    const dlq = `${type}.dlq`;
    await transport.admin.ensureType(type);
    await transport.admin.ensureType(dlq);
    const stored = ['a', 'b', 'c'].map((b) => buildMessage(dlq, 'p', b));
    await transport.publish(dlq, stored);
    const deadLetters = new DeadLetters(transport);
    const unread = async () =>
      (await transport.admin.stats(dlq))[0]!.groups.find((g) => g.group === DEAD_LETTER_GROUP)?.unread;
    for (let round = 1; round <= 3; round++) {
      const listed = await deadLetters.list(type, { idleMs: 1500 });
      assert.deepEqual(
        listed.map((d) => Buffer.from(d.message.body).toString()),
        ['a', 'b', 'c'],
        `listing ${round}`,
      );
      assert.equal(await unread(), 3, `the dead-letter group's unread count after listing ${round} time(s)`);
    }
    const peeked = await deadLetters.peek(type, stored[1]!.id, { idleMs: 1500 });
    assert.equal(peeked?.id, stored[1]!.id);
    assert.equal(await unread(), 3, 'after a peek');
    const redriven = await deadLetters.redrive(type, { idleMs: 1500 });
    assert.equal(redriven.redriven.length, 3, 'listing left copies behind that a redrive would send again');
    assert.equal(await unread(), 0, 'after redriving all');
  });

  it('loses nothing while members join and leave mid-stream', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('rebalance');
    const group = name('g');
    await transport.admin.ensureType(type, { partitions: 4 });
    const acked = new Set<string>();
    const drain = async (subscription: Subscription) => {
      for await (const d of subscription) {
        await sleep(1);
        await d.ack();
        acked.add(text(d)!);
      }
    };
    const first = subscribe(t, transport, [type], group, { prefetch: 8 });
    await first.ready;
    const readers = [drain(first)];
    const total = 600;
    for (let i = 0; i < total; i += 100) {
      await transport.publish(
        type,
        Array.from({ length: 100 }, (_, j) => buildMessage(type, 'p', `m${i + j}`, { key: `k${j % 7}` })),
      );
      if (i === 200) {
        const second = subscribe(t, transport, [type], group, { prefetch: 8 });
        readers.push(drain(second));
      }
      if (i === 400) await first.close();
    }
    const deadline = Date.now() + 60_000;
    while (acked.size < total && Date.now() < deadline) await sleep(100);
    assert.equal(acked.size, total, `${total - acked.size} messages never acked`);
  });

  it('a running group reads partitions added under it, without a member joining or leaving', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t, { partitionCheckMs: '500' });
    const type = name('grow');
    const group = name('g');
    await transport.admin.ensureType(type, { partitions: 2 });
    const acked = new Set<string>();
    const drain = async (subscription: Subscription) => {
      for await (const d of subscription) {
        await d.ack();
        acked.add(text(d)!);
      }
    };
    // `latest`: the new partitions must still be read from their start, not from where they are when assigned.
    const members = [0, 1].map(() => subscribe(t, transport, [type], group, { prefetch: 32, offset: 'latest' }));
    await Promise.all(members.map((m) => m.ready));
    const readers = members.map(drain);
    await transport.admin.setPartitions(type, 6);
    // Keys that hash to the new partitions 2..5, sent through a fresh connection that sees all six.
    const keys: string[] = [];
    for (let i = 0; keys.length < 20; i++) {
      if ((murmur2(Buffer.from(`k${i}`)) & 0x7fffffff) % 6 >= 2) keys.push(`k${i}`);
    }
    const sender = await connect(t);
    const total = 600;
    await sender.publish(
      type,
      Array.from({ length: total }, (_, i) => buildMessage(type, 'p', `m${i}`, { key: keys[i % keys.length]! })),
    );
    const deadline = Date.now() + 60_000;
    while (acked.size < total && Date.now() < deadline) await sleep(100);
    assert.equal(acked.size, total, `${total - acked.size} of ${total} messages on new partitions never arrived`);
    await Promise.all(members.map((m) => m.close()));
    await Promise.all(readers);
  });

  it('admin: partitions grow but never shrink, retention, purge with DeleteRecords, stats', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const { admin } = transport;
    const type = name('admin');
    await admin.ensureType(type, { partitions: 2 });
    await admin.ensureType(type, { partitions: 2 });
    await admin.setPartitions(type, 3);
    await assert.rejects(admin.setPartitions(type, 1), (e: unknown) => isBusError(e, 'BUSBAR_ERR_PARTITIONS'));
    await admin.setRetention(type, { maxAgeMs: 3_600_000, maxBytes: 10_000_000 });
    const info = (await admin.listTypes()).find((i) => i.type === type);
    assert.deepEqual(info, { type, partitions: 3, retention: { maxAgeMs: 3_600_000, maxBytes: 10_000_000 } });

    const group = name('g');
    const sub = subscribe(t, transport, [type], group, { prefetch: 4 });
    await sub.ready;
    await transport.publish(
      type,
      Array.from({ length: 10 }, (_, i) => buildMessage(type, 'p', `m${i}`, { key: `k${i}` })),
    );
    const it = sub[Symbol.asyncIterator]();
    const first = await next(it);
    await first!.ack();
    // The ack's commit and the next fetch land a moment later: read until the group shows both.
    let stats = await eventually(
      async () => (await admin.stats(type))[0],
      (s) => {
        const g = s?.groups.find((x) => x.group === group);
        return g?.unread === 9 && g.inflight === 4;
      },
    );
    assert.equal(stats!.depth, 10);
    assert.equal(stats!.partitions, 3);
    assert.ok(stats!.bytes > 0);
    const g = stats!.groups.find((x) => x.group === group);
    assert.ok(g, 'group missing from stats');
    assert.equal(g.unread, 9);
    assert.equal(g.inflight, 4, 'this process knows its outstanding deliveries');
    await sub.close();

    await admin.purge(type);
    [stats] = await admin.stats(type);
    assert.equal(stats!.depth, 0);
    assert.equal(stats!.groups.find((x) => x.group === group)?.unread ?? 0, 0);
    await admin.deleteType(type);
    await admin.deleteType(type);
    assert.ok(!(await admin.listTypes()).some((i) => i.type === type));
    await assert.rejects(admin.ensureType(`${type}.busbar-retry`), (e: unknown) =>
      isBusError(e, 'BUSBAR_ERR_INVALID_TYPE_NAME'),
    );
  });

  it('uses every endpoint as a bootstrap broker and reports bad ones as BusErrors', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await createKafkaTransport({
      url: `kafka://127.0.0.1:1,${endpoint}`,
      endpoints: ['127.0.0.1:1', endpoint],
      options: {},
    });
    t.after(() => transport.close());
    const type = name('ep');
    await transport.publish(type, [buildMessage(type, 'p', 'x')]);
    await assert.rejects(
      createKafkaTransport({ url: 'kafka://nowhere:x', endpoints: ['nowhere:x'], options: {} }),
      (e: unknown) => isBusError(e, 'BUSBAR_ERR_INVALID_CONFIG'),
    );
    await assert.rejects(
      createKafkaTransport({ url: 'kafka://127.0.0.1:1', endpoints: ['127.0.0.1:1'], options: {} }),
      (e: unknown) => isBusError(e, 'BUSBAR_ERR_CONNECTION') && /scripts\/brokers\/kafka/.test((e as Error).message),
    );
    await assert.rejects(
      createKafkaTransport({ url: `kafka://${endpoint}`, endpoints: [endpoint], options: { fetchMaxByte: 1024 } }),
      (e: unknown) =>
        isBusError(e, 'BUSBAR_ERR_INVALID_CONFIG') &&
        /unknown kafka option 'fetchMaxByte'.*fetchMaxBytes/.test((e as Error).message),
    );
    await assert.rejects(
      createKafkaTransport({ url: `kafka://${endpoint}`, endpoints: [endpoint], options: { fetchMaxBytes: 10 } }),
      (e: unknown) =>
        isBusError(e, 'BUSBAR_ERR_INVALID_CONFIG') &&
        /invalid kafka option 'fetchMaxBytes': expected a whole number >= 1024/.test((e as Error).message),
    );
  });

  it('admin calls about named types hold while other clients create and delete unrelated topics', async (t) => {
    if (skip) return t.skip(skip);
    const bus = await MessageBus.connect(BROKERS.kafka);
    t.after(() => bus.close());
    const admin = bus.admin();
    // Unrelated topics come and go: a call that described every topic on the cluster met one deleted between its
    // listing and its description (UNKNOWN_TOPIC_OR_PARTITION). Bounded: the churn stops when the calls are done.
    const raw = new Admin({ clientId: 'churn', bootstrapBrokers: [endpoint] });
    t.after(() => raw.close());
    let done = false;
    let churned = 0;
    const churn = async () => {
      for (let i = 0; i < 500 && !done; i++) {
        const topic = name('churn');
        await raw.createTopics({ topics: [topic], partitions: 1, replicas: 1 });
        await raw.deleteTopics({ topics: [topic] });
        churned++;
      }
    };
    const churners = Promise.all([churn(), churn(), churn()]);
    churners.catch(() => {}); // awaited below
    try {
      for (let i = 0; i < 6; i++) {
        const type = name('named');
        assert.equal((await admin.registerMessageType(type, { partitions: 2 })).outcome, 'created');
        assert.equal((await admin.registerMessageType(type, { partitions: 3 })).outcome, 'grown');
        assert.equal(await admin.hasMessageType(type), true);
        const [stats] = await admin.stats(type);
        assert.equal(stats?.partitions, 3);
        assert.ok((await admin.listMessageTypes()).some((info) => info.type === type && info.partitions === 3));
        await admin.deregisterMessageType(type);
        assert.equal(await admin.hasMessageType(type), false);
        await assert.rejects(admin.deregisterMessageType(type), (e: unknown) =>
          isBusError(e, 'BUSBAR_ERR_UNKNOWN_TYPE'),
        );
      }
    } finally {
      done = true;
      await churners;
    }
    assert.ok(churned > 0, 'the churn ran alongside the admin calls');
  });
});
