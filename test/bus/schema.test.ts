/**
 * Typed consumers, handlers and producers with a Standard Schema v1 validator: a hand-written one (the spec's
 * interface, nothing else) here, Valibot in schema-valibot.test.ts. Bodies that fail go to the dead-letter type at
 * once with the reason; on send, nothing is sent.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deadLetterTypeOf, MessageBus, message, type StandardSchemaV1 } from '../../src/index.ts';

interface Order {
  id: string;
  qty: number;
  /** Added by the schema: its output, not the sent input, is what the application sees. */
  checked: true;
}

/** `{ id: string, qty: positive integer }` -> Order; async, as a Standard Schema validator may be. */
const orderSchema: StandardSchemaV1<{ id: string; qty: number }, Order> = {
  '~standard': {
    version: 1,
    vendor: 'busbar-test',
    validate: async (value) => {
      const v = value as { id?: unknown; qty?: unknown } | null;
      const issues: { message: string; path: PropertyKey[] }[] = [];
      if (typeof v !== 'object' || v === null) return { issues: [{ message: 'expected an object' }] };
      if (typeof v.id !== 'string') issues.push({ message: 'expected a string', path: ['id'] });
      if (!Number.isInteger(v.qty) || (v.qty as number) < 1) {
        issues.push({ message: 'expected a whole number >= 1', path: ['qty'] });
      }
      if (issues.length > 0) return { issues };
      return { value: { id: v.id as string, qty: v.qty as number, checked: true } };
    },
  },
};

test('a consumer with a schema returns typed schema output and dead-letters what fails, with the reason', async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  const type = 'orders';
  const dlq = bus.consumer({ consumerGroup: 'dlq', messageTypes: deadLetterTypeOf(type) });
  const consumer = bus.consumer({ consumerGroup: 'g', messageTypes: type, schema: orderSchema, maxAttempts: 3 });
  await bus
    .producer({ messageType: type })
    .send([
      { id: 'a', qty: 1 },
      { id: 'b', qty: 0 },
      message(new TextEncoder().encode('{not json'), { contentType: 'application/json' }),
      { id: 'c', qty: 2 },
    ]);
  const first = await consumer.receive({ timeout: 5000 });
  const second = await consumer.receive({ timeout: 5000 });
  assert.ok(first && second);
  // Typed: body is Order, so .checked and .qty need no cast.
  const bodies: Order[] = [first.body, second.body];
  assert.deepEqual(bodies, [
    { id: 'a', qty: 1, checked: true },
    { id: 'c', qty: 2, checked: true },
  ]);
  await consumer.ack();
  const dead = [await dlq.receive({ timeout: 5000 }), await dlq.receive({ timeout: 5000 })];
  const reasons = dead.map((m) => m?.headers['busbar-dlq-reason'] ?? '');
  assert.match(reasons[0]!, /^body does not match the consumer's schema: qty: expected a whole number >= 1$/);
  assert.match(reasons[1]!, /^body does not match the consumer's schema: the body does not decode: /);
  assert.equal(dead[0]!.headers['busbar-dlq-attempts'], '1', 'dead-lettered on its first delivery, not retried');
  await dlq.ack();
  assert.equal(await consumer.receive({ timeout: 200 }), null);
  assert.equal(await bus.admin().unreadCount(type, 'g'), 0, 'the failed ones are acked on the type');
});

test('a handler with a schema never sees a failing body: it is dead-lettered at once', async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  const type = 'orders';
  const dlq = bus.consumer({ consumerGroup: 'dlq', messageTypes: deadLetterTypeOf(type) });
  const seen: Order[] = [];
  let done!: () => void;
  const handled = new Promise<void>((resolve) => (done = resolve));
  const handler = bus.handle(type, { group: 'h', schema: orderSchema }, async (m) => {
    seen.push(m.body);
    if (seen.length === 1) done();
  });
  await handler.ready;
  await bus.send(type, { id: 'x' });
  await bus.send(type, { id: 'y', qty: 3 });
  await handled;
  const dead = await dlq.receive({ timeout: 5000 });
  assert.ok(dead);
  assert.deepEqual(dead.body, { id: 'x' });
  assert.equal(
    dead.headers['busbar-dlq-reason'],
    "body does not match the handler's schema: qty: expected a whole number >= 1",
  );
  assert.deepEqual(seen, [{ id: 'y', qty: 3, checked: true }]);
  await dead.ack();
  await handler.close();
});

test('a producer with a schema refuses a batch with a failing body and sends none of it', async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  const producer = bus.producer({ messageType: 'orders', schema: orderSchema });
  await assert.rejects(
    producer.send([{ id: 'a', qty: 1 }, message({ id: 'b', qty: -1 }, { key: 'k' })]),
    (error: Error & { code?: string }) =>
      error.code === 'BUSBAR_ERR_INVALID_ARGUMENT' &&
      error.message ===
        "message 1 of the batch does not match the schema of 'orders': qty: expected a whole number >= 1; nothing was sent",
  );
  await bus.admin().registerMessageType('orders');
  assert.equal((await bus.admin().stats('orders'))[0]!.depth, 0);
  await producer.send([{ id: 'a', qty: 1 }]);
  const consumer = bus.consumer({ consumerGroup: 'g', messageTypes: 'orders' });
  // The schema's output is what was sent.
  assert.deepEqual((await consumer.receive({ timeout: 5000 }))?.body, { id: 'a', qty: 1, checked: true });
  await consumer.close();
});

test('a schema that is not a Standard Schema is refused at once', async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  const notOne = { parse: () => true } as unknown as StandardSchemaV1;
  for (const make of [
    () => bus.consumer({ consumerGroup: 'g', messageTypes: 't', schema: notOne }),
    () => bus.handle('t', { group: 'g', schema: notOne }, () => {}),
    () => bus.producer({ messageType: 't', schema: notOne }),
  ]) {
    assert.throws(
      make,
      (e: Error & { code?: string }) =>
        e.code === 'BUSBAR_ERR_INVALID_ARGUMENT' && /Standard Schema v1/.test(e.message),
    );
  }
});
