/**
 * The redis transport against the contract, directly (no bus layer), on the machine's Redis; plus the rules the
 * conformance suite does not reach: the delayed-nack guard, stale nacks, prefetch, stats, config errors.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isBusError } from '../../src/errors.ts';
import createRedisTransport from '../../src/transports/redis/index.ts';
import { PRUNE_CONSUMERS } from '../../src/transports/redis/scripts.ts';
import { eventually } from '../helpers/eventually.ts';
import {
  consumeOptions,
  freshGroup,
  message,
  open,
  REDIS_URL,
  rawClient,
  redisConfig,
  skipReason,
  take,
  tempType,
} from './redis-helpers.ts';

let skip: string | undefined;

describe('redis transport', { concurrency: 1 }, () => {
  before(async () => {
    skip = await skipReason();
  });

  it('round trip: body byte-exact, attributes, headers and key; attempt 1', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t);
    const type = tempType(transport);
    const sub = transport.consume(consumeOptions(type, freshGroup()));
    t.after(() => sub.close());
    await sub.ready;
    const binary = new Uint8Array(256).map((_, i) => i);
    const sent = [
      message(type, binary, { key: 'k1', headers: { 'x-a': 'ä ✓', traceparent: '00-abc-def-01' } }),
      message(type, new Uint8Array(0)),
    ];
    await transport.publish(type, sent);
    const got = await take(sub, 2);
    assert.equal(got.length, 2);
    for (const [i, delivery] of got.entries()) {
      const { body, ...attributes } = delivery.message;
      const { body: sentBody, ...sentAttributes } = sent[i]!;
      assert.deepEqual(attributes, sentAttributes);
      assert.ok(Buffer.from(body).equals(Buffer.from(sentBody)));
      assert.equal(delivery.attempt, 1);
      await delivery.ack();
      await delivery.ack();
    }
  });

  it('refuses a header that collides with the wire fields, publishing nothing', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t);
    const type = tempType(transport);
    for (const name of ['data', 'content-type', 'ce_id']) {
      await assert.rejects(transport.publish(type, [message(type, 'x', { headers: { [name]: 'v' } })]), {
        code: 'BUSBAR_ERR_INVALID_ARGUMENT',
      });
    }
    const [stats] = await transport.admin.stats(type);
    assert.equal(stats!.depth, 0);
  });

  it('groups: each group gets every message, and within a group each goes to one member', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t);
    const type = tempType(transport);
    const [g1, g2] = [freshGroup(), freshGroup()];
    const subs = [g1, g1, g2].map((g) => transport.consume(consumeOptions(type, g, { prefetch: 4 })));
    t.after(() => Promise.all(subs.map((s) => s.close())));
    await Promise.all(subs.map((s) => s.ready));
    await transport.publish(
      type,
      [...Array(40)].map((_, i) => message(type, String(i))),
    );
    // Members read until their group has all 40 (not until a quiet gap, which a loaded machine makes).
    const got: string[][] = [[], [], []];
    const done = [() => got[0]!.length + got[1]!.length >= 40, () => got[0]!.length + got[1]!.length >= 40];
    done.push(() => got[2]!.length >= 40);
    const drain = async (sub: (typeof subs)[number], i: number) => {
      const deadline = Date.now() + 60_000;
      while (!done[i]!() && Date.now() < deadline) {
        for (const d of await take(sub, 4, 300)) {
          got[i]!.push(Buffer.from(d.message.body).toString());
          await d.ack();
        }
      }
      return got[i]!;
    };
    const [a, b, c] = await Promise.all(subs.map(drain));
    assert.equal(a!.length + b!.length, 40);
    assert.equal(new Set([...a!, ...b!]).size, 40);
    assert.equal(new Set(c).size, 40);
  });

  it('a nack delay longer than the ack timeout is honoured', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t);
    const type = tempType(transport);
    // The lease (2 s) must outlast the step from the delivery to its nack, even on a loaded machine: a lease that
    // ran out first would redeliver it through the ack timeout instead, before the delay.
    const sub = transport.consume(consumeOptions(type, freshGroup(), { ackTimeoutMs: 2000 }));
    t.after(() => sub.close());
    await sub.ready;
    await transport.publish(type, [message(type, 'later')]);
    const [first] = await take(sub, 1);
    const nackedAt = Date.now();
    await first!.nack({ delayMs: 6000 });
    const [second] = await take(sub, 1, 30_000);
    assert.ok(second, 'never redelivered');
    assert.ok(Date.now() - nackedAt >= 5950, `redelivered after ${Date.now() - nackedAt} ms`);
    assert.equal(second.attempt, 2);
    await second.ack();
  });

  it('a late nack of a delivery whose lease moved on to another consumer changes nothing', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t);
    const type = tempType(transport);
    const group = freshGroup();
    // The lease moves on by the close, not by its ack timeout (which would let the slow one take it back first).
    const slow = transport.consume(consumeOptions(type, group, { ackTimeoutMs: 60_000, prefetch: 1 }));
    t.after(() => slow.close());
    await slow.ready;
    await transport.publish(type, [message(type, 'once')]);
    const [stale] = await take(slow, 1);
    await slow.close();
    const fast = transport.consume(consumeOptions(type, group, { ackTimeoutMs: 30_000 }));
    t.after(() => fast.close());
    const [current] = await take(fast, 1);
    assert.equal(current!.attempt, 2);
    await stale!.nack();
    assert.equal((await take(fast, 1, 800)).length, 0, 'a stale nack redelivered a message someone holds');
    await current!.ack();
  });

  it('a consumer that dies holding messages: they come back after the ack timeout with the next attempt', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t);
    const raw = await rawClient(t);
    const type = tempType(transport);
    const group = freshGroup();
    await raw.sendCommand(['XGROUP', 'CREATE', `busbar:{${type}}`, group, '0', 'MKSTREAM']);
    await transport.publish(type, [message(type, 'orphan')]);
    // A "dead" member: reads with the raw client and never acks (like a process killed after XREADGROUP).
    const readAt = Date.now();
    const read = await raw.sendCommand([
      'XREADGROUP',
      'GROUP',
      group,
      'dead',
      'COUNT',
      '1',
      'STREAMS',
      `busbar:{${type}}`,
      '>',
    ]);
    assert.ok(read, 'the dead member read nothing');
    const sub = transport.consume(consumeOptions(type, group, { ackTimeoutMs: 500 }));
    t.after(() => sub.close());
    await sub.ready;
    const [back] = await take(sub, 1, 30_000);
    assert.ok(back, 'never reclaimed');
    assert.ok(Date.now() - readAt >= 450, `reclaimed after ${Date.now() - readAt} ms, before the ack timeout`);
    assert.equal(Buffer.from(back.message.body).toString(), 'orphan');
    assert.equal(back.attempt, 2);
    await back.ack();
  });

  it('close() returns everything it holds at once, over several types and more than one script call, with the next attempt', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t);
    const types = [tempType(transport), tempType(transport)];
    const group = freshGroup();
    const first = transport.consume(consumeOptions(types, group, { prefetch: 1400 }));
    t.after(() => first.close());
    await first.ready;
    for (const type of types) {
      await transport.publish(
        type,
        [...Array(700)].map((_, i) => message(type, `${type}/${i}`)),
      );
    }
    const held = await take(first, 1400);
    assert.equal(held.length, 1400);
    await first.close();
    // A long ack timeout: what comes back now came back through the release, not the timeout.
    const second = transport.consume(consumeOptions(types, group, { prefetch: 2000, ackTimeoutMs: 60_000 }));
    t.after(() => second.close());
    const back = await take(second, 1400);
    assert.equal(back.length, 1400);
    assert.deepEqual(back.map((d) => d.message.id).sort(), held.map((d) => d.message.id).sort());
    assert.ok(
      back.every((d) => d.attempt === 2),
      'every redelivery is attempt 2',
    );
    await Promise.all(back.map((d) => d.ack()));
  });

  it('a released entry deleted from the stream before it is claimed again is acked away, not delivered', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t);
    const raw = await rawClient(t);
    const type = tempType(transport);
    const group = freshGroup();
    const sub = transport.consume(consumeOptions(type, group, { ackTimeoutMs: 60_000 }));
    t.after(() => sub.close());
    await sub.ready;
    await transport.publish(type, [message(type, 'gone'), message(type, 'kept')]);
    const [gone, kept] = await take(sub, 2);
    const ids = (await raw.sendCommand(['XRANGE', `busbar:{${type}}`, '-', '+'])) as [string, string[]][];
    await raw.sendCommand(['XDEL', `busbar:{${type}}`, ids[0]![0]]);
    await Promise.all([gone!.nack(), kept!.nack()]);
    const again = await take(sub, 1, 30_000);
    again.push(...(await take(sub, 1, 1000)));
    assert.deepEqual(
      again.map((d) => Buffer.from(d.message.body).toString()),
      ['kept'],
    );
    assert.equal(again[0]!.attempt, 2);
    await again[0]!.ack();
    assert.deepEqual(await raw.sendCommand(['XPENDING', `busbar:{${type}}`, group, '-', '+', '10']), []);
  });

  it('prefetch: never more unsettled deliveries than allowed', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t);
    const type = tempType(transport);
    const sub = transport.consume(consumeOptions(type, freshGroup(), { prefetch: 3 }));
    t.after(() => sub.close());
    await sub.ready;
    await transport.publish(
      type,
      [...Array(10)].map((_, i) => message(type, String(i))),
    );
    // What prefetch allows (within a patience only a failure exhausts), then a quiet second for one more.
    const held = await take(sub, 3, 30_000);
    held.push(...(await take(sub, 1, 1000)));
    assert.equal(held.length, 3);
    await held[0]!.ack();
    const next = await take(sub, 1, 30_000);
    next.push(...(await take(sub, 1, 1000)));
    assert.equal(next.length, 1);
    await Promise.all([...held, ...next].map((d) => d.ack()));
  });

  it('stats: depth, unread, in-flight and oldest age per group; purge resets them', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t);
    const type = tempType(transport);
    const group = freshGroup();
    const sub = transport.consume(consumeOptions(type, group, { prefetch: 2 }));
    t.after(() => sub.close());
    await sub.ready;
    await transport.publish(
      type,
      [...Array(5)].map((_, i) => message(type, String(i))),
    );
    const got = await take(sub, 2);
    await got[0]!.ack();
    await got[1]!.nack({ delayMs: 60_000 });
    // The freed slots are filled by the next read, a moment later: read until the group shows two in flight again.
    let stats = await eventually(
      async () => (await transport.admin.stats(type))[0],
      (s) => s?.groups.find((x) => x.group === group)?.inflight === 2,
    );
    assert.equal(stats!.depth, 5);
    assert.equal(stats!.bytes, -1);
    const g = stats!.groups.find((x) => x.group === group)!;
    assert.equal(g.unread, 4);
    // Two more were fetched once the ack and nack freed the slots; the delayed nack is not in flight.
    assert.equal(g.inflight, 2);
    assert.ok(g.oldestAgeMs !== null && g.oldestAgeMs >= 0);
    await transport.admin.purge(type);
    [stats] = await transport.admin.stats(type);
    assert.equal(stats!.depth, 0);
    assert.deepEqual(
      stats!.groups.map((x) => [x.unread, x.inflight, x.oldestAgeMs]),
      [[0, 0, null]],
    );
  });

  it('admin: ensure, list with partitions and retention, grow partitions, delete', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t);
    const type = tempType(transport);
    await transport.admin.ensureType(type, { partitions: 2 });
    await transport.admin.ensureType(type, { partitions: 5 });
    await transport.admin.setRetention(type, { maxAgeMs: 60_000 });
    let info = (await transport.admin.listTypes()).find((x) => x.type === type);
    assert.deepEqual(info, { type, partitions: 2, retention: { maxAgeMs: 60_000 } });
    await transport.admin.setPartitions(type, 3);
    await assert.rejects(transport.admin.setPartitions(type, 1), { code: 'BUSBAR_ERR_PARTITIONS' });
    await assert.rejects(transport.admin.setRetention(type, { maxBytes: 10 }), { code: 'BUSBAR_ERR_UNSUPPORTED' });
    await transport.admin.setRetention(type, {});
    info = (await transport.admin.listTypes()).find((x) => x.type === type);
    assert.deepEqual(info, { type, partitions: 3, retention: {} });
    await transport.admin.deleteType(type);
    assert.ok(!(await transport.admin.listTypes()).some((x) => x.type === type));
    await transport.admin.deleteType(type);
  });

  it('a consumer survives its type being deleted under it, and reads what comes next', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t);
    const type = tempType(transport);
    const sub = transport.consume(consumeOptions(type, freshGroup()));
    t.after(() => sub.close());
    await sub.ready;
    await transport.admin.deleteType(type);
    await sleep(300);
    await transport.publish(type, [message(type, 'reborn')]);
    const [d] = await take(sub, 1, 5000);
    assert.equal(Buffer.from(d!.message.body).toString(), 'reborn');
    await d!.ack();
  });

  it('consumer names: removed on close, and abandoned ones (nothing held, long idle) pruned', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t);
    const raw = await rawClient(t);
    const type = tempType(transport);
    const group = freshGroup();
    const stream = `busbar:{${type}}`;
    const sub = transport.consume(consumeOptions(type, group));
    await sub.ready;
    await transport.publish(type, [message(type, 'x')]);
    const [d] = await take(sub, 1);
    await d!.ack();
    await sub.close();
    const names = async () =>
      ((await raw.sendCommand(['XINFO', 'CONSUMERS', stream, group])) as string[][]).map((c) => c[1]);
    assert.deepEqual(await names(), []);
    // A process that died: one name holding an entry, one holding nothing.
    await raw.sendCommand(['XADD', stream, '*', 'data', 'held']);
    await raw.sendCommand(['XREADGROUP', 'GROUP', group, 'dead-holder', 'STREAMS', stream, '>']);
    await raw.sendCommand(['XGROUP', 'CREATECONSUMER', stream, group, 'dead-empty']);
    await sleep(300);
    const pruned = await raw.sendCommand(['EVAL', PRUNE_CONSUMERS.source, '1', stream, group, '200']);
    assert.equal(pruned, 1);
    assert.deepEqual(await names(), ['dead-holder']);
  });

  it('close() while blocked ends iteration and returns; operations after close fail clearly', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await createRedisTransport(redisConfig());
    const type = `t-closed-${Date.now()}`;
    const sub = transport.consume(consumeOptions(type, freshGroup()));
    await sub.ready;
    const iterating = take(sub, 1, 10_000);
    await sleep(100);
    const started = Date.now();
    await Promise.all([transport.close(), transport.close()]);
    // close() cuts the blocked read short with CLIENT UNBLOCK; a read's block is at most 1 s anyway, so no time bound
    // here can tell the two apart on a loaded machine: the bound only says close() does not hang.
    t.diagnostic(`close took ${Date.now() - started} ms`);
    assert.ok(Date.now() - started < 30_000, `close took ${Date.now() - started} ms`);
    assert.deepEqual(await iterating, []);
    await assert.rejects(transport.publish(type, [message(type, 'x')]), { code: 'BUSBAR_ERR_CLOSED' });
    const cleanup = await open(t);
    await cleanup.admin.deleteType(type);
  });

  it('config: bad endpoints, options and unreachable servers give BusErrors that say what to do', async (t) => {
    if (skip) return t.skip(skip);
    await assert.rejects(createRedisTransport(redisConfig('redis://a:1,b:2')), (error) => {
      assert.ok(isBusError(error, 'BUSBAR_ERR_INVALID_CONFIG'));
      assert.match(error.message, /sentinel=/);
      return true;
    });
    await assert.rejects(createRedisTransport(redisConfig(REDIS_URL, { bogus: 1 })), {
      code: 'BUSBAR_ERR_INVALID_CONFIG',
    });
    const started = Date.now();
    await assert.rejects(createRedisTransport(redisConfig('redis://127.0.0.1:1', { connectTimeoutMs: 500 })), {
      code: 'BUSBAR_ERR_CONNECTION',
    });
    // Refused within its 500 ms connect timeout, not retried for ever: a margin no loaded machine's pause reaches.
    assert.ok(Date.now() - started < 20_000);
  });
});
