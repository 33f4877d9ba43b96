/**
 * The shared transport toolkit (src/transport/): DeliveryQueue (rules 1 and 3), LeaseSweeper (the emulated ack
 * timeout), OptionReader (one error code and message shape for a bad option), deferred().
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { isBusError } from '../../src/errors.ts';
import type { Delivery } from '../../src/transport/contract.ts';
import { deferred } from '../../src/transport/deferred.ts';
import { OptionReader, parseEndpoint, readPem } from '../../src/transport/options.ts';
import { DeliveryQueue } from '../../src/transport/queue.ts';
import { LeaseSweeper } from '../../src/transport/sweeper.ts';

const lease = (n: number, leaseUntil = Number.POSITIVE_INFINITY) =>
  ({ leaseUntil, n, attempt: 1 }) as unknown as Delivery & { n: number };

describe('DeliveryQueue', () => {
  it('hands out deliveries in order through a queue that never quite empties, and says when it is empty', async () => {
    let empties = 0;
    const queue = new DeliveryQueue<Delivery & { n: number }>({ onLeave: () => undefined, onEmpty: () => empties++ });
    const iterator = queue[Symbol.asyncIterator]();
    let pushed = 0;
    let taken = 0;
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 100; i++) queue.push(lease(pushed++));
      for (let i = 0; i < 99; i++) assert.equal((await iterator.next()).value.n, taken++);
    }
    assert.equal(queue.length, 50);
    assert.equal(empties, 0);
    while (queue.length > 0) assert.equal((await iterator.next()).value.n, taken++);
    assert.equal(empties, 1);
    const waiting = iterator.next();
    await nextTurn();
    queue.push(lease(pushed++));
    assert.equal((await waiting).value.n, taken++);
  });

  it('drops a delivery whose lease ran out while it waited, and reports it (rule 3)', async () => {
    const expired: Delivery[] = [];
    const queue = new DeliveryQueue({ onLeave: () => undefined, onExpired: (d) => expired.push(d) });
    const old = lease(1, Date.now() - 1);
    const live = lease(2, Date.now() + 60_000);
    queue.push(old);
    queue.push(live);
    assert.strictEqual((await queue[Symbol.asyncIterator]().next()).value, live);
    assert.deepEqual(expired, [old]);
  });

  it('does not hand a waiting reader a delivery pushed with its lease already ended', async () => {
    const expired: Delivery[] = [];
    const queue = new DeliveryQueue({ onLeave: () => undefined, onExpired: (d) => expired.push(d) });
    const waiting = queue[Symbol.asyncIterator]().next();
    const old = lease(1, Date.now() - 1);
    queue.push(old);
    const live = lease(2, Date.now() + 60_000);
    queue.push(live);
    assert.strictEqual((await waiting).value, live);
    assert.deepEqual(expired, [old]);
  });

  it('ends at once on end(): queued deliveries are not handed out but drain() returns them; waiters wake', async () => {
    const queue = new DeliveryQueue({ onLeave: () => undefined });
    const iterator = queue[Symbol.asyncIterator]();
    const waiting = iterator.next();
    queue.end();
    assert.equal((await waiting).done, true);
    const other = new DeliveryQueue({ onLeave: () => undefined });
    other.push(lease(1));
    other.end();
    assert.equal((await other[Symbol.asyncIterator]().next()).done, true);
    assert.equal(other.drain().length, 1);
    const failing = new DeliveryQueue({ onLeave: () => undefined });
    failing.end(new Error('boom'));
    await assert.rejects(failing[Symbol.asyncIterator]().next(), /boom/);
  });

  it('calls onLeave when a for-await loop is left early (rule 1)', async () => {
    let left = 0;
    const queue = new DeliveryQueue({ onLeave: () => left++ });
    queue.push(lease(1));
    for await (const _ of queue) break;
    assert.equal(left, 1);
  });
});

describe('LeaseSweeper', () => {
  it('expires open deliveries in deadline order with one timer, and skips settled ones', async () => {
    const done = deferred<(Delivery & { n: number })[]>();
    const expired: (Delivery & { n: number })[] = [];
    const sweeper = new LeaseSweeper<Delivery & { n: number }>((d) => {
      expired.push(d);
      assert.ok(sweeper.has(d), 'still listed while expire runs');
      if (expired.length === 2) done.resolve(expired);
    });
    const now = Date.now();
    const a = lease(1, now + 5);
    const b = lease(2, now + 10);
    const c = lease(3, now + 15);
    sweeper.add(a);
    sweeper.add(b);
    sweeper.add(c);
    assert.equal(sweeper.delete(b), true);
    assert.deepEqual(
      (await done.promise).map((d) => d.n),
      [1, 3],
    );
    assert.equal(sweeper.size, 0);
    sweeper.stop();
    sweeper.add(lease(4, 0));
    assert.equal(sweeper.size, 0, 'a stopped sweeper takes nothing');
  });
});

describe('LeaseSweeper out of order', () => {
  it('expires a delivery added later with an earlier lease on time, and the others after', async () => {
    const order: number[] = [];
    const done = deferred();
    const sweeper = new LeaseSweeper<Delivery & { n: number }>((d) => {
      order.push(d.n);
      if (order.length === 2) done.resolve();
    });
    const now = Date.now();
    sweeper.add(lease(1, now + 60_000));
    sweeper.add(lease(2, now + 10));
    sweeper.add(lease(3, now + 20));
    const late = lease(4, now + 60_000);
    sweeper.add(late);
    await done.promise;
    assert.deepEqual(order, [2, 3]);
    assert.equal(sweeper.size, 2);
    sweeper.stop();
  });
});

describe('OptionReader', () => {
  it('refuses an unknown option and a bad value with BUSBAR_ERR_INVALID_CONFIG in one message shape', () => {
    assert.throws(
      () => new OptionReader('redis', { nope: 1 }, ['prefix']),
      (e) =>
        isBusError(e, 'BUSBAR_ERR_INVALID_CONFIG') &&
        /^unknown redis option 'nope': use one of prefix$/.test(e.message),
    );
    const reader = new OptionReader('kafka', { a: '12', b: 1.5, c: 'x', d: 'FULL', e: 'true' }, [
      'a',
      'b',
      'c',
      'd',
      'e',
    ]);
    assert.equal(reader.integer('a', 0, { min: 1 }), 12);
    assert.equal(reader.integer('missing', 7), 7);
    assert.equal(reader.number('b', 0), 1.5);
    assert.equal(reader.oneOf('d', ['normal', 'full'], 'normal'), 'full');
    assert.equal(reader.flag('e', false), true);
    for (const bad of [
      () => reader.integer('b', 0),
      () => reader.integer('c', 0),
      () => reader.integer('a', 0, { max: 5 }),
    ]) {
      assert.throws(
        bad,
        (e) => isBusError(e, 'BUSBAR_ERR_INVALID_CONFIG') && /^invalid kafka option '\w': expected /.test(e.message),
      );
    }
  });

  it('parses endpoints and names an unreadable PEM file', () => {
    assert.deepEqual(parseEndpoint('x', '[::1]:99', 1), { host: '::1', port: 99 });
    assert.deepEqual(parseEndpoint('x', 'h', 5672), { host: 'h', port: 5672 });
    assert.throws(
      () => parseEndpoint('x', 'nowhere:x', 1),
      (e) => isBusError(e, 'BUSBAR_ERR_INVALID_CONFIG'),
    );
    assert.throws(
      () => parseEndpoint('x', 'h:0', 1),
      (e) => isBusError(e, 'BUSBAR_ERR_INVALID_CONFIG'),
    );
    assert.throws(
      () => readPem('/nonexistent/ca.pem', 'ca'),
      (e) => isBusError(e, 'BUSBAR_ERR_INVALID_CONFIG') && e.message.includes('/nonexistent/ca.pem'),
    );
  });
});
