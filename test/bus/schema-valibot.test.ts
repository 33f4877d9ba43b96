/**
 * A real Standard Schema library (Valibot, a devDependency only: busbar depends on none) through a consumer, a
 * handler and a producer, on the embedded broker: typed output, a transform, and the dead letter's reason.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as v from 'valibot';
import { deadLetterTypeOf, MessageBus } from '../../src/index.ts';

const Reading = v.object({
  sensor: v.pipe(v.string(), v.minLength(1)),
  celsius: v.pipe(v.number(), v.minValue(-273.15)),
});
/** Output differs from input: the consumer must see the transformed value. */
const WithKelvin = v.pipe(
  Reading,
  v.transform((r) => ({ ...r, kelvin: r.celsius + 273.15 })),
);

test('valibot: typed, transformed bodies in; failing ones dead-lettered with the issue; producer refuses', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'busbar-valibot-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bus = await MessageBus.connect(`embedded:${join(dir, 'bus.db')}`);
  t.after(() => bus.close());
  const type = 'readings';

  const producer = bus.producer({ messageType: type, schema: Reading });
  await assert.rejects(producer.send([{ sensor: '', celsius: 20 }]), {
    code: 'BUSBAR_ERR_INVALID_ARGUMENT',
    message: /message 0 of the batch does not match the schema of 'readings': sensor: Invalid length/,
  });
  await producer.send([{ sensor: 's1', celsius: 20 }]);
  // A plain producer can still send anything: the consumer's schema is the last line of defence.
  await bus.send(type, { sensor: 's2', celsius: 'hot' });

  const dlq = bus.consumer({ consumerGroup: 'dlq', messageTypes: deadLetterTypeOf(type) });
  const consumer = bus.consumer({ consumerGroup: 'g', messageTypes: type, schema: WithKelvin });
  const got = await consumer.receive({ timeout: 10_000 });
  assert.ok(got);
  const kelvin: number = got.body.kelvin;
  assert.equal(kelvin, 293.15);
  await got.ack();
  // The consumer pulls only while a receive() waits: this one meets the failing body and dead-letters it.
  const pending = consumer.receive({ timeout: 0 });
  const dead = await dlq.receive({ timeout: 10_000 });
  assert.ok(dead);
  assert.deepEqual(dead.body, { sensor: 's2', celsius: 'hot' });
  assert.match(
    dead.headers['busbar-dlq-reason'] ?? '',
    /^body does not match the consumer's schema: celsius: Invalid type/,
  );
  await dead.ack();
  await consumer.close();
  assert.equal(await pending, null, 'the failing body was handed out');

  const seen: number[] = [];
  let done!: () => void;
  const handled = new Promise<void>((resolve) => (done = resolve));
  const handler = bus.handle(type, { group: 'h', schema: WithKelvin }, (m) => {
    seen.push(m.body.kelvin);
    done();
  });
  await handled;
  const second = await dlq.receive({ timeout: 10_000 });
  await handler.close();
  assert.deepEqual(seen, [293.15]);
  assert.match(second?.headers['busbar-dlq-reason'] ?? '', /^body does not match the handler's schema: celsius: /);
  await second?.ack();
  await dlq.close();
});
