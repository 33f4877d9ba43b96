/**
 * Multi-endpoint failover on two private Artemis instances (scripts/brokers/artemis --instance 7 and 8, STOMP :61673
 * and :61683; 3, 5 and 6 serve the AMQP 1.0 tests, 4 the STOMP conformance suite): with a producer and a consumer
 * running on `stomp://...:61673,...:61683`, the broker they use is killed with SIGKILL; both go on through the other, every confirmed message is delivered at least once, and the messages the
 * killed broker had stored are delivered when it comes back.
 *
 * Bounded everywhere: every loop stops at the test's deadline, a reader that gets nothing waits before it asks again
 * (a closed consumer answers at once, and a loop of answers at once would starve the event loop), and closing a bus
 * has a time limit of its own.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { type Consumer, MessageBus } from '../../src/index.ts';
import { brokerSkipReason } from '../helpers/brokers.ts';
import { artemis, artemisRunning, stompPort } from './fixtures/stomp-artemis.ts';

const FIRST = 7;
const SECOND = 8;
const endpoint = (instance: number) => `127.0.0.1:${stompPort(instance)}`;
const url = `stomp://busbar:busbar@${endpoint(FIRST)},${endpoint(SECOND)}`;
const started: number[] = [];
let skip: string | undefined;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects once `ms` pass: a wait that never ends fails the test instead of keeping the process alive. */
async function bounded<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

before(async () => {
  skip = await brokerSkipReason('stomp', async () => {
    for (const instance of [FIRST, SECOND]) {
      if (await artemisRunning(instance)) continue;
      await artemis('start', instance);
      started.push(instance);
    }
  });
});

after(async () => {
  for (const instance of started) await artemis('stop', instance).catch(() => {});
});

/** Reads until stopped, recording every body; acks (an ack lost in the outage means a redelivery, not a loss). */
function reader(consumer: Consumer, received: Set<number>): { stop: () => Promise<void> } {
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const m = await consumer.receive({ timeout: 200 });
        if (!m) {
          await sleep(10);
          continue;
        }
        received.add(m.body as number);
        await m.ack().catch(() => {});
      } catch {
        await sleep(100);
      }
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await bounded(loop, 10_000, 'stopping a reader');
    },
  };
}

async function until(condition: () => boolean, patienceMs: number): Promise<void> {
  const deadline = Date.now() + patienceMs;
  while (!condition() && Date.now() < deadline) await sleep(50);
}

test('kill -9 of the broker in use: producer and consumer go on through the other; nothing confirmed is lost', {
  timeout: 300_000,
}, async (t) => {
  if (skip) return t.skip(skip);
  const type = `failover-${randomUUID().slice(0, 8)}`;
  const group = 'g';
  // Every loop below ends by this time at the latest, well within the test's timeout.
  const deadline = Date.now() + 200_000;
  const bus = await MessageBus.connect({ broker: url, ackTimeoutMs: 10_000, sendTimeoutMs: 60_000 });
  t.after(() => bounded(bus.close(), 30_000, 'closing the bus'));
  const consumer = bus.consumer({ consumerGroup: group, messageTypes: [type] });
  await consumer.ready;
  const received = new Set<number>();
  const reading = reader(consumer, received);
  t.after(() => reading.stop());
  const confirmed: number[] = [];
  /** Sends that started once the first broker was dead: they can only be stored on the second. */
  const startedAfterKill: number[] = [];
  let killedAt = 0;
  let killing: Promise<void> | undefined;
  let firstAfterKill: number | undefined;
  // 400 sends, and at least 50 that start once the broker is gone, however long the kill takes on a busy machine.
  for (let i = 0; i < 400 || startedAfterKill.length < 50; i++) {
    // The kill runs while sends are in flight: those without a receipt are re-sent to the second broker.
    if (i === 150) {
      killing = artemis('kill9', FIRST).then(() => {
        killedAt = Date.now();
      });
    }
    if (killedAt) startedAfterKill.push(i);
    for (;;) {
      assert.ok(Date.now() < deadline, `send ${i} not confirmed by the deadline (${confirmed.length} confirmed)`);
      try {
        await bus.send(type, i);
        break;
      } catch (error) {
        if ((error as { retryable?: boolean }).retryable !== true) throw error;
        await sleep(100);
      }
    }
    confirmed.push(i);
    if (killedAt && firstAfterKill === undefined) firstAfterKill = Date.now() - killedAt;
  }
  await bounded(killing!, 200_000, 'the kill');
  t.diagnostic(`first send confirmed ${firstAfterKill} ms after the broker was gone`);
  const afterKill = startedAfterKill;
  assert.ok(afterKill.length > 0, 'the kill did not happen while the producer ran');
  await until(() => afterKill.every((i) => received.has(i)), 60_000);
  assert.deepEqual(
    afterKill.filter((i) => !received.has(i)),
    [],
    'messages confirmed by the second broker never arrived',
  );
  await reading.stop();
  await consumer.close();

  // The killed broker comes back with its journal: what it confirmed and had not delivered is delivered now.
  await artemis('start', FIRST);
  const back = await MessageBus.connect({ broker: `stomp://busbar:busbar@${endpoint(FIRST)}` });
  t.after(() => bounded(back.close(), 30_000, 'closing the second bus'));
  const late = back.consumer({ consumerGroup: group, messageTypes: [type] });
  const lateReading = reader(late, received);
  t.after(() => lateReading.stop());
  await until(() => confirmed.every((i) => received.has(i)), 60_000);
  await lateReading.stop();
  await late.close();
  const missing = confirmed.filter((i) => !received.has(i));
  t.diagnostic(`${confirmed.length} confirmed, ${received.size} distinct delivered`);
  assert.deepEqual(missing, [], `${missing.length} confirmed messages never delivered`);
  await bus
    .admin()
    .deregisterMessageType(type)
    .catch(() => {});
  await back
    .admin()
    .deregisterMessageType(type)
    .catch(() => {});
});
