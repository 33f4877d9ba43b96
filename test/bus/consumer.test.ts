import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageBus, message } from '../../src/index.ts';

test('receive times out with null; autoAck acks on receive; ack() acks everything received', async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  const started = Date.now();
  const idle = bus.consumer({ consumerGroup: 'g', messageTypes: 't' });
  assert.equal(await idle.receive({ timeout: 150 }), null);
  assert.ok(Date.now() - started >= 140);
  await idle.close();

  await bus.producer({ messageType: 't' }).send(['a', 'b', 'c']);
  const auto = bus.consumer({ consumerGroup: 'auto', messageTypes: 't', autoAck: true });
  for (let i = 0; i < 3; i++) assert.ok(await auto.receive({ timeout: 10_000 }));
  assert.equal((await bus.admin().stats('t'))[0]!.groups.find((g) => g.group === 'auto')!.unread, 0);
  await auto.close();

  const cortx = bus.consumer({ consumerGroup: 'cortx', messageTypes: ['t'] });
  for (let i = 0; i < 3; i++) assert.ok(await cortx.receive({ timeout: 10_000 }));
  assert.equal(await bus.admin().unreadCount('t', 'cortx'), 3);
  await cortx.ack();
  assert.equal(await bus.admin().unreadCount('t', 'cortx'), 0);
  await cortx.close();
  await assert.rejects(idle.receive({ timeout: -1 }), { code: 'BUSBAR_ERR_INVALID_ARGUMENT' });
});

test('an AbortSignal ends iteration; break cleans up', { timeout: 60_000 }, async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  await bus.producer({ messageType: 'it' }).send([1, 2, 3]);
  const controller = new AbortController();
  const seen: unknown[] = [];
  for await (const m of bus.consumer({ consumerGroup: 'g', messageTypes: 'it', signal: controller.signal })) {
    seen.push(m.body);
    await m.ack();
    if (seen.length === 3) setTimeout(() => controller.abort(), 50);
  }
  assert.deepEqual(seen, [1, 2, 3]);
  await bus.send('it', 4);
  const members = async () => (await bus.admin().stats('it'))[0]!.groups.find((g) => g.group === 'g')?.consumers ?? 0;
  const leaving = bus.consumer({ consumerGroup: 'g', messageTypes: 'it', ackTimeoutMs: 600_000 });
  for await (const m of leaving) {
    assert.equal(m.body, 4);
    assert.equal(await members(), 1, 'the consumer should be a member of its group while it iterates');
    break; // unacked
  }
  // Cleaned up, decided by events rather than by a wait: the consumer is closed (a receive that would otherwise
  // wait for ever answers null before a single event-loop turn), its subscription left the group, and its lease
  // is gone, so a second member gets the message now, not after the 10-minute ack timeout.
  const turn = new Promise((resolve) => setImmediate(() => resolve('still waiting')));
  assert.equal(await Promise.race([leaving.receive({ timeout: 0 }), turn]), null, 'break did not close the consumer');
  assert.equal(await members(), 0, 'break left the subscription in the group');
  const next = bus.consumer({ consumerGroup: 'g', messageTypes: 'it', ackTimeoutMs: 600_000 });
  t.after(() => next.close());
  const again = await next.receive({ timeout: 10_000 });
  assert.equal(again?.body, 4, 'the message left by break is still leased');
  assert.equal(again.attempt, 2);
  await again.ack();
  assert.equal(await bus.admin().unreadCount('it', 'g'), 0);
});

test('a consumer dead-letters a message delivered more than maxAttempts times', async (t) => {
  const bus = await MessageBus.connect({ broker: 'memory:' });
  t.after(() => bus.close());
  await bus.send('flaky', 'x');
  for (let i = 0; i < 2; i++) {
    const c = bus.consumer({ consumerGroup: 'g', messageTypes: 'flaky', maxAttempts: 2 });
    assert.ok(await c.receive({ timeout: 10_000 }));
    await c.close(); // crash-like: never acked
  }
  const c = bus.consumer({ consumerGroup: 'g', messageTypes: 'flaky', maxAttempts: 2 });
  assert.equal(await c.receive({ timeout: 300 }), null, 'the third delivery should have been dead-lettered');
  const dlq = bus.consumer({ consumerGroup: 'd', messageTypes: 'flaky.dlq' });
  const dead = await dlq.receive({ timeout: 10_000 });
  assert.equal(dead?.body, 'x');
  assert.match(dead!.headers['busbar-dlq-reason']!, /delivered 3 times without an ack/);
});

test('a body that does not decode is handed out with its raw bytes and never stalls the consumer', async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  const poison = new TextEncoder().encode('not json');
  await bus
    .producer({ messageType: 'poison' })
    .send([message(poison, { contentType: 'application/json' }), message({ fine: true })]);
  const consumer = bus.consumer({ consumerGroup: 'g', messageTypes: 'poison' });
  t.after(() => consumer.close());
  const bad = await consumer.receive({ timeout: 5000 });
  assert.deepEqual(bad?.raw, poison);
  assert.equal(bad.decodeError?.code, 'BUSBAR_ERR_DECODE');
  assert.throws(
    () => bad.body,
    (error) => error === bad.decodeError,
    'body throws the same error every time',
  );
  assert.match(bad.decodeError.message, /not valid JSON although its content type is 'application\/json'/);
  await bad.ack();
  const good = await consumer.receive({ timeout: 5000 });
  assert.deepEqual(good?.body, { fine: true });
  assert.equal(good.decodeError, undefined);
  await good.ack();
  assert.equal(await bus.admin().unreadCount('poison', 'g'), 0);
});

test('receive({ signal }) gives up waiting without closing the consumer: what it holds can still be acked', async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  await bus.send('held', 'x');
  const consumer = bus.consumer({ consumerGroup: 'g', messageTypes: 'held' });
  t.after(() => consumer.close());
  const held = await consumer.receive({ timeout: 5000 });
  const controller = new AbortController();
  const waiting = consumer.receive({ signal: controller.signal });
  controller.abort();
  assert.equal(await waiting, null);
  assert.equal(await consumer.receive({ signal: controller.signal }), null, 'an aborted signal does not wait');
  await held!.ack();
  assert.equal(await bus.admin().unreadCount('held', 'g'), 0);
  await bus.send('held', 'y');
  assert.equal((await consumer.receive({ timeout: 5000 }))?.body, 'y', 'the consumer still receives');
});
