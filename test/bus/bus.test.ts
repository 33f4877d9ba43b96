/**
 * MessageBus's own surface: the batch send the REST gateway uses, the transport kept out of reach, and connect() as
 * the one way from a resolved config to a bus.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { MessageBus, message, resolveConfig } from '../../src/index.ts';

test('sendBatch sends every message in one call and answers their ids in order', async (t) => {
  const bus = await MessageBus.connect({ broker: 'memory:', producerId: 'app://batcher' });
  t.after(() => bus.close());
  const type = `batch-${randomUUID()}`;
  const consumer = bus.consumer({ consumerGroup: 'g', messageTypes: type, offset: 'earliest' });
  t.after(() => consumer.close());
  const ids = await bus.sendBatch(type, [
    'plain',
    message(
      { n: 2 },
      {
        id: 'chosen-id',
        key: 'k',
        headers: { h: 'v' },
        time: '2026-01-02T03:04:05.5+01:00',
        source: 'app://elsewhere',
      },
    ),
  ]);
  assert.equal(ids.length, 2);
  assert.equal(ids[1], 'chosen-id');
  const first = await consumer.receive({ timeout: 0 });
  const second = await consumer.receive({ timeout: 0 });
  assert.deepEqual(
    [first?.id, first?.body, first?.source],
    [ids[0], 'plain', 'app://batcher'],
    'a body alone takes the bus source',
  );
  assert.deepEqual(
    [second?.id, second?.body, second?.key, second?.headers.h, second?.source, second?.time],
    ['chosen-id', { n: 2 }, 'k', 'v', 'app://elsewhere', '2026-01-02T02:04:05.5Z'],
  );
  assert.deepEqual(await bus.sendBatch(type, []), []);
});

test('one bad message rejects the whole batch, naming its place, with nothing sent', async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  const type = `batch-${randomUUID()}`;
  await assert.rejects(bus.sendBatch(type, ['ok', 10n, 'ok']), (error: Error & { code: string }) => {
    assert.equal(error.code, 'BUSBAR_ERR_ENCODE');
    assert.match(error.message, /^messages\[1\]: /);
    return true;
  });
  await assert.rejects(bus.sendBatch(type, ['ok', message('late', { time: 'yesterday' })]), (error: Error) => {
    assert.match(error.message, /^messages\[1\]: time "yesterday" is not an RFC 3339 timestamp/);
    return true;
  });
  assert.equal((await bus.admin().stats()).find((s) => s.type === type)?.depth ?? 0, 0, 'part of a batch was sent');
  await assert.rejects(bus.sendBatch('bad type', ['x']), { code: 'BUSBAR_ERR_INVALID_TYPE_NAME' });
  await assert.rejects(bus.sendBatch(type, 'x' as unknown as unknown[]), { code: 'BUSBAR_ERR_INVALID_ARGUMENT' });
  await assert.rejects(bus.send(type, 'x', { time: '2026-13-01T00:00:00Z' }), { code: 'BUSBAR_ERR_INVALID_ARGUMENT' });
});

test('the transport is not part of the public bus; its name is', async (t) => {
  const bus = await MessageBus.connect('memory:');
  t.after(() => bus.close());
  assert.equal('transport' in bus, false, 'bus.transport would bypass the bus (deadlines, checks, tracking)');
  assert.equal(bus.transportName, 'memory');
});

test('connect() takes a config resolveConfig() made, as it is', async (t) => {
  const config = resolveConfig({ broker: 'memory:', producerId: 'app://resolved' });
  const bus = await MessageBus.connect(config);
  t.after(() => bus.close());
  assert.equal(bus.config, config);
  const type = `resolved-${randomUUID()}`;
  const consumer = bus.consumer({ consumerGroup: 'g', messageTypes: type, offset: 'earliest' });
  t.after(() => consumer.close());
  await bus.send(type, 'x');
  assert.equal((await consumer.receive({ timeout: 0 }))?.source, 'app://resolved');
});
