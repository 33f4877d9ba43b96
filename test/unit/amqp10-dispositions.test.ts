import assert from 'node:assert/strict';
import { test } from 'node:test';
import rhea from 'rhea';
import { runsOf } from '../../src/transports/amqp10/dispositions.ts';

// As rhea's Delivery.accept()/modified()/release() record them: the described outcome.
const outcome = rhea.message as unknown as Record<
  'accepted' | 'modified' | 'released',
  (fields?: object) => { described(): unknown }
>;
const accepted = () => ({ settled: true, state: outcome.accepted().described() });
const modified = () => ({ settled: true, state: outcome.modified({ delivery_failed: true }).described() });
const released = () => ({ settled: true, state: outcome.released().described() });

test('an ack beside a nack in one tick are written as separate dispositions (rhea 3.0.5 merged them into one accept)', () => {
  // Deliveries 0 (acked) and 1 (returned) would go out as one frame "0-1 accepted": the second delivery lost.
  const runs = runsOf([accepted(), modified(), modified(), accepted(), accepted(), released()]);
  assert.deepEqual(
    runs.map((run) => run.length),
    [1, 1, 1, 2, 1],
  );
  // Only accepted outcomes batch (rhea's own rule); every run has one outcome.
  for (const run of runs) assert.equal(new Set(run.map((d) => JSON.stringify(d.state))).size, 1);
  assert.equal(runsOf([accepted(), accepted(), accepted()]).length, 1);
  assert.equal(runsOf([]).length, 0);
  assert.equal(runsOf([accepted(), { ...accepted(), settled: false }]).length, 2);
});
