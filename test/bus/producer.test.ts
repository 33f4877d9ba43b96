import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_UNREPORTED } from '../../src/bus/producer.ts';
import { type BusError, MessageBus, message, resolveConfig } from '../../src/index.ts';
import { loadTransport } from '../../src/transport/registry.ts';

test('sync send resolves after the broker accepted; async send reports failures with the messages', async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  const consumer = bus.consumer({ consumerGroup: 'g', messageTypes: 'orders' });
  await bus.producer({ messageType: 'orders' }).send([message({ id: 1 }, { key: 'k', headers: { h: 'v' } })]);
  const got = await consumer.receive({ timeout: 10_000 });
  assert.deepEqual(got?.body, { id: 1 });
  assert.equal(got?.key, 'k');
  assert.equal(got?.headers.h, 'v');
  await consumer.close();

  // A transport that refuses publishes (closed): async failures must surface, never vanish.
  const config = resolveConfig('memory:');
  const transport = await (await loadTransport(config.scheme))(config.transport);
  const broken = new MessageBus(transport, config);
  const listened = broken.producer({ messageType: 'orders', method: 'async', retries: 0 });
  const unheard = broken.producer({ messageType: 'orders', method: 'async', retries: 0 });
  await transport.close();
  const errors: BusError[] = [];
  listened.on('error', (error) => errors.push(error));
  await listened.send(['a', 'b']);
  await listened.flush();
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.code, 'BUSBAR_ERR_PUBLISH');
  assert.equal((errors[0]!.details!.messages as unknown[]).length, 2);
  await unheard.send(['c']);
  await assert.rejects(unheard.close(), (error: BusError) => {
    assert.equal(error.code, 'BUSBAR_ERR_PUBLISH');
    assert.match(error.message, /1 message\(s\)/);
    return true;
  });
});

test('a bad body rejects the whole send before anything is published', async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  const producer = bus.producer({ messageType: 'orders' });
  await assert.rejects(producer.send(['ok', 10n]), { code: 'BUSBAR_ERR_ENCODE' });
  const stats = (await bus.admin().stats()).find((s) => s.type === 'orders');
  assert.equal(stats?.depth ?? 0, 0, 'a partial batch was published');
  await assert.rejects(producer.send('not a list' as unknown as unknown[]), { code: 'BUSBAR_ERR_INVALID_ARGUMENT' });
  assert.throws(() => bus.producer({ messageType: 'bad type' }), { code: 'BUSBAR_ERR_INVALID_TYPE_NAME' });
  assert.throws(() => bus.producer({ messageType: 'x', method: 'later' as 'sync' }), {
    code: 'BUSBAR_ERR_INVALID_ARGUMENT',
  });
});

test('async producer applies backpressure instead of dropping', { timeout: 60_000 }, async (t) => {
  // The memory transport, with publish held at a gate the test opens: the queue fills only as fast as the test says.
  const config = resolveConfig('memory:');
  const transport = await (await loadTransport(config.scheme))(config.transport);
  const bus = new MessageBus(transport, config);
  const publish = transport.publish.bind(transport);
  const batches: number[] = [];
  let open!: () => void;
  let gate = new Promise<void>((resolve) => (open = resolve));
  let publishing!: () => void;
  const firstPublish = new Promise<void>((resolve) => (publishing = resolve));
  t.after(() => {
    open(); // a failed assertion must not leave the producer's drain (and so bus.close) waiting at the gate
    return bus.close();
  });
  transport.publish = async (type, batch) => {
    batches.push(batch.length);
    publishing();
    await gate;
    return publish(type, batch);
  };
  const producer = bus.producer({ messageType: 'bp', method: 'async', maxPending: 10, maxBatch: 5 });
  await producer.send([...Array(10).keys()]); // 10 queued: maxPending reached
  await firstPublish; // 5 of them are held at the gate, 5 queued
  await producer.send([10, 11, 12, 13, 14]); // 10 queued again
  let settled = false;
  const blocked = producer.send([15]).then(() => (settled = true));
  // Nothing can drain while the gate is shut, so however many event-loop turns pass, send() must still wait.
  for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(settled, false, 'send() resolved although maxPending messages were already queued');
  assert.deepEqual(batches, [5], 'the producer published past the gate');
  // Open the gate: the queue drains, and the waiting send() resolves.
  open();
  gate = Promise.resolve();
  await blocked;
  await producer.close();
  assert.ok(
    batches.every((size) => size <= 5),
    `a batch was larger than maxBatch: ${batches.join(',')}`,
  );
  const [stats] = await bus.admin().stats('bp');
  assert.equal(stats!.depth, 16, 'messages were dropped');
});

test('the bus refuses use after close, and close is idempotent', async () => {
  const bus = await MessageBus.connect('memory:');
  await Promise.all([bus.close(), bus.close()]);
  await assert.rejects(bus.send('t', 'x'), { code: 'BUSBAR_ERR_CLOSED' });
  assert.throws(() => bus.consumer({ consumerGroup: 'g', messageTypes: 't' }), { code: 'BUSBAR_ERR_CLOSED' });
});

test('an unheard async producer keeps the last 100 failed batches and counts the rest', async (t) => {
  const config = resolveConfig('memory:');
  const transport = await (await loadTransport(config.scheme))(config.transport);
  const bus = new MessageBus(transport, config);
  t.after(() => bus.close().catch(() => {}));
  const unheard = bus.producer({ messageType: 'orders', method: 'async', retries: 0 });
  await transport.close();
  // One message per batch: each send is taken off the queue (and fails) before the next is queued.
  for (let i = 0; i < MAX_UNREPORTED + 50; i++) {
    await unheard.send([`m${i}`]);
    while (unheard.stats().queued > 0) await new Promise((resolve) => setImmediate(resolve));
  }
  await assert.rejects(unheard.flush(), (error: BusError) => {
    assert.equal(error.code, 'BUSBAR_ERR_PUBLISH');
    assert.match(error.message, /^150 async batches \(150 messages\) failed to publish; .*the last 100/);
    const details = error.details as { failures: BusError[]; forgotten: { batches: number; messages: number } };
    assert.equal(details.failures.length, MAX_UNREPORTED);
    assert.deepEqual(details.forgotten, { batches: 50, messages: 50 });
    // The kept ones are the latest: the last failure holds the last message sent.
    const [last] = details.failures.at(-1)!.details!.messages as { body: Uint8Array }[];
    assert.equal(Buffer.from(last!.body).toString(), `m${MAX_UNREPORTED + 49}`);
    return true;
  });
  await unheard.flush(); // reported once: nothing is left to throw
});
