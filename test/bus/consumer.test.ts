import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageBus } from '../../src/index.ts';

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
  for (let i = 0; i < 3; i++) assert.ok(await auto.receive({ timeout: 500 }));
  assert.equal((await bus.admin().stats('t'))[0]!.groups.find((g) => g.group === 'auto')!.unread, 0);
  await auto.close();

  const cortx = bus.consumer({ consumerGroup: 'cortx', messageTypes: ['t'] });
  for (let i = 0; i < 3; i++) assert.ok(await cortx.receive({ timeout: 500 }));
  assert.equal(await bus.admin().unreadCount('t', 'cortx'), 3);
  await cortx.ack();
  assert.equal(await bus.admin().unreadCount('t', 'cortx'), 0);
  await cortx.close();
  await assert.rejects(idle.receive({ timeout: -1 }), { code: 'BUSBAR_ERR_INVALID_ARGUMENT' });
});

test('an AbortSignal ends iteration; break cleans up', async (t) => {
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
  for await (const m of bus.consumer({ consumerGroup: 'g', messageTypes: 'it' })) {
    assert.equal(m.body, 4);
    await m.ack();
    break;
  }
});

test('a consumer dead-letters a message delivered more than maxAttempts times', async (t) => {
  const bus = await MessageBus.connect({ broker: 'memory:' });
  t.after(() => bus.close());
  await bus.send('flaky', 'x');
  for (let i = 0; i < 2; i++) {
    const c = bus.consumer({ consumerGroup: 'g', messageTypes: 'flaky', maxAttempts: 2 });
    assert.ok(await c.receive({ timeout: 500 }));
    await c.close(); // crash-like: never acked
  }
  const c = bus.consumer({ consumerGroup: 'g', messageTypes: 'flaky', maxAttempts: 2 });
  assert.equal(await c.receive({ timeout: 300 }), null, 'the third delivery should have been dead-lettered');
  const dlq = bus.consumer({ consumerGroup: 'd', messageTypes: 'flaky.dlq' });
  const dead = await dlq.receive({ timeout: 500 });
  assert.equal(dead?.body, 'x');
  assert.match(dead!.headers['busbar-dlq-reason']!, /delivered 3 times without an ack/);
});
