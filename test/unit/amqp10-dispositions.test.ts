import assert from 'node:assert/strict';
import { test } from 'node:test';
import rhea from 'rhea';
import { runsOf } from '../../src/transports/amqp10/dispositions.ts';

const accepted = { settled: true, state: rhea.message.accepted() };
const modified = { settled: true, state: rhea.message.modified({ delivery_failed: true }) };
const released = { settled: true, state: rhea.message.released() };

test('an ack beside a nack in one tick are written as separate dispositions (rhea 3.0.5 merged them into one accept)', () => {
  // Deliveries 0 (acked) and 1 (returned) would go out as one frame "0-1 accepted": the second delivery lost.
  assert.deepEqual(
    runsOf([accepted, modified, modified, accepted, released]).map((run) => run.length),
    [1, 2, 1, 1],
  );
  assert.deepEqual(runsOf([accepted, accepted, accepted]).length, 1);
  assert.deepEqual(runsOf([]).length, 0);
  assert.deepEqual(runsOf([accepted, { ...accepted, settled: false }]).length, 2);
});
