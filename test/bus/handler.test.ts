import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageBus, type Middleware, message, timeout } from '../../src/index.ts';

test('handle runs with the given concurrency, composes middlewares outermost first', { timeout: 60_000 }, async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  const order: string[] = [];
  const tag =
    (name: string): Middleware =>
    (next) =>
    async (m) => {
      order.push(`${name}>`);
      await next(m);
      order.push(`<${name}`);
    };
  let running = 0;
  let peak = 0;
  let done = 0;
  // Decided by events, not by how long a handler sleeps: the handlers wait until 4 run at once (the 5th must not
  // start while they wait), or, if the bus never reaches 4, until a 10 s deadline so that the assertion reports it.
  let full!: () => void;
  const fourRunning = new Promise<void>((resolve) => (full = resolve));
  const deadline = setTimeout(full, 10_000);
  t.after(() => clearTimeout(deadline));
  let finished!: () => void;
  const allDone = new Promise<void>((resolve) => (finished = resolve));
  const handler = bus.handle('work', { group: 'g', concurrency: 4, middlewares: [tag('a'), tag('b')] }, async () => {
    running++;
    peak = Math.max(peak, running);
    if (running === 4) full();
    await fourRunning;
    await new Promise((r) => setImmediate(r));
    running--;
    if (++done === 20) finished();
  });
  t.after(() => handler.close());
  await bus.producer({ messageType: 'work' }).send([...Array(20).keys()]);
  await allDone; // bounded by the test's timeout
  await handler.close();
  assert.equal(peak, 4);
  assert.deepEqual(order.slice(0, 2), ['a>', 'b>']);
  assert.equal((await bus.admin().stats('work'))[0]!.groups[0]!.unread, 0);
});

test('a failing handler is retried with backoff, then dead-lettered; close waits for work in progress', {
  timeout: 60_000,
}, async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  const times: number[] = [];
  const handler = bus.handle(
    'retry',
    { group: 'g', maxAttempts: 3, retry: { initialDelayMs: 100, factor: 2 }, middlewares: [timeout(1000)] },
    async () => {
      times.push(Date.now());
      throw new Error('nope');
    },
  );
  await bus.send('retry', 'x');
  const dlq = bus.consumer({ consumerGroup: 'd', messageTypes: 'retry.dlq' });
  const dead = await dlq.receive({ timeout: 30_000 });
  assert.equal(dead?.headers['busbar-dlq-attempts'], '3');
  assert.equal(times.length, 3);
  assert.ok(times[1]! - times[0]! >= 45, 'first retry came without backoff');
  assert.ok(times[2]! - times[1]! >= 95, 'second retry did not back off further');

  // close() is called while the handler is known to be running (an event, not a 50 ms guess).
  let finished = false;
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  const slow = bus.handle('slow', { group: 'g' }, async () => {
    started();
    await new Promise((r) => setTimeout(r, 200));
    finished = true;
  });
  await bus.send('slow', 'x');
  await running;
  await slow.close();
  assert.ok(finished, 'close() returned before the handler finished');
  assert.equal((await bus.admin().stats('slow'))[0]!.groups[0]!.unread, 0, 'the finished message was not acked');
  await handler.close();
});

test('a handler whose message body does not decode dead-letters it at once with the reason', async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  let good!: (body: unknown) => void;
  const goodSeen = new Promise((resolve) => (good = resolve));
  const handler = bus.handle('orders', { group: 'g', maxAttempts: 5 }, async (m) => good(m.body));
  t.after(() => handler.close());
  await bus
    .producer({ messageType: 'orders' })
    .send([message('{"broken', { contentType: 'application/json' }), message({ id: 1 })]);
  const dlq = bus.consumer({ consumerGroup: 'd', messageTypes: 'orders.dlq' });
  t.after(() => dlq.close());
  const dead = await dlq.receive({ timeout: 10_000 });
  assert.equal(new TextDecoder().decode(dead!.raw), '{"broken');
  assert.equal(dead!.headers['busbar-dlq-attempts'], '1', 'retrying a body that cannot decode cannot help');
  assert.match(dead!.headers['busbar-dlq-reason']!, /BUSBAR_ERR_DECODE|not valid JSON/);
  assert.deepEqual(await goodSeen, { id: 1 }, 'the next message is handled');
});

test('handle reads ahead `prefetch` deliveries (default concurrency x 2) and checks it', async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  for (const bad of [0, 1.5, -1, Number.NaN]) {
    assert.throws(
      () => bus.handle('pf', { group: 'g', prefetch: bad }, async () => {}),
      (e: unknown) => (e as { code?: string }).code === 'BUSBAR_ERR_INVALID_ARGUMENT' && /prefetch/.test(String(e)),
    );
  }
  assert.throws(
    () => bus.handle('pf', { group: 'g', concurrency: 4, prefetch: 2 }, async () => {}),
    (e: unknown) =>
      (e as { code?: string }).code === 'BUSBAR_ERR_INVALID_ARGUMENT' && /below concurrency/.test(String(e)),
  );
  const inflight = async (type: string, want: number): Promise<number> => {
    const deadline = Date.now() + 10_000;
    let now = 0;
    while (Date.now() < deadline) {
      now = (await bus.admin().stats(type))[0]?.groups[0]?.inflight ?? 0;
      if (now >= want) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    return now;
  };
  for (const [type, options, expected] of [
    ['pf-set', { prefetch: 6 }, 6],
    ['pf-default', { concurrency: 3 }, 6],
  ] as const) {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const handler = bus.handle(type, { group: 'g', ...options }, () => gate);
    await handler.ready;
    await bus.producer({ messageType: type }).send([...Array(20).keys()]);
    // The handler is stuck, so the deliveries out are exactly its read-ahead.
    assert.equal(await inflight(type, expected), expected);
    release();
    await handler.close();
  }
});
