/**
 * Multi-endpoint failover on two private Artemis instances (5 and 6 of scripts/brokers/artemis): with a producer
 * and a consumer running on `amqp10://a,b`, the broker they use is killed with SIGKILL. The producer goes on through
 * the other endpoint, and what it sends there reaches the consumer while the first is still down; once the killed
 * broker is back, the messages it had confirmed and not delivered yet are delivered too: every confirmed message
 * arrives at least once.
 *
 * Bounded everywhere: every loop stops at the test's deadline or when told to, a reader that gets nothing waits
 * before it asks again (a closed consumer answers at once, and a loop of answers at once would starve the event
 * loop), and closing the buses has a time limit of its own.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MessageBus } from '../../src/index.ts';
import { uniqueGroup, uniqueType } from '../conformance/suite.ts';
import { brokerSkipReason } from '../helpers/brokers.ts';
import { amqpPort, artemis, artemisAvailable } from './amqp10-artemis.ts';

const A = 5;
const B = 6;
const endpoint = (instance: number) => `127.0.0.1:${amqpPort(instance)}`;
const URL_AB = `amqp10://busbar:busbar@${endpoint(A)},${endpoint(B)}`;
/** Sends before the kill starts, and the least number of sends that start once the killed broker is gone. */
const BEFORE_KILL = 100;
const AFTER_KILL = 100;
const TOTAL = 400;
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

async function until(what: string, done: () => boolean, patienceMs: number, explain: () => string): Promise<void> {
  const deadline = Date.now() + patienceMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${explain()}`);
    await sleep(50);
  }
}

describe('amqp10 failover between two Artemis instances', { concurrency: 1 }, () => {
  let skip: string | undefined;

  before(async () => {
    skip = await brokerSkipReason('amqp10', artemisAvailable);
    if (skip) return;
    // One after the other: two JVMs starting at once on a busy machine may miss the script's start-up wait.
    await artemis('start', A);
    await artemis('start', B);
  });

  after(async () => {
    if (skip) return;
    // Private instances: stop them and drop their data, so nothing is left behind.
    await Promise.allSettled([artemis('reset', A), artemis('reset', B)]);
  });

  it('kill -9 the broker in use: producer and consumer go on; every confirmed message arrives', {
    timeout: 420_000,
  }, async (t) => {
    if (skip) return t.skip(skip);
    // Every loop below ends by this time at the latest, well within the test's timeout.
    const deadline = Date.now() + 300_000;
    const type = uniqueType('failover');
    const group = uniqueGroup();
    const consumerBus = await MessageBus.connect({ broker: URL_AB, ackTimeoutMs: 30_000 });
    const producerBus = await MessageBus.connect({ broker: URL_AB });
    t.after(() => bounded(Promise.allSettled([consumerBus.close(), producerBus.close()]), 30_000, 'closing the buses'));
    const consumer = consumerBus.consumer({ consumerGroup: group, messageTypes: [type], prefetch: 20 });
    await consumer.ready;

    const confirmed = new Set<number>();
    const sentAfterKill = new Set<number>();
    const received = new Map<number, number>();
    /** Set once the killed broker's process is gone: sends that start later can only be stored on the other. */
    let killed = false;
    let killing: Promise<void> | undefined;
    let stop = false;
    const running = () => !stop && Date.now() < deadline;

    // The consumer reads nothing until the kill: what was confirmed before it stays stored on A (its prefetched,
    // unacked deliveries go back to A's queue when the connection dies).
    const reader = (async () => {
      while (!killed && running()) await sleep(20);
      while (running()) {
        const m = await consumer.receive({ timeout: 200 }).catch(() => null);
        if (!m) {
          await sleep(10);
          continue;
        }
        received.set(m.body as number, (received.get(m.body as number) ?? 0) + 1);
        await m.ack().catch(() => {});
      }
    })();
    const producer = producerBus.producer({ messageType: type });
    // The kill starts after BEFORE_KILL confirmed sends, while sends go on; the writer stops after TOTAL sends and
    // at least AFTER_KILL that started once the broker was gone, however long the kill took on a busy machine.
    const writer = (async () => {
      for (let i = 0; running() && (i < TOTAL || sentAfterKill.size < AFTER_KILL); i++) {
        if (i === BEFORE_KILL) {
          killing = artemis('kill9', A).then(() => {
            killed = true;
          });
        }
        const afterKill = killed;
        for (;;) {
          if (!running()) return;
          try {
            await producer.send([i]);
            break;
          } catch (error) {
            if ((error as { retryable?: boolean }).retryable !== true) throw error;
            await sleep(100);
          }
        }
        confirmed.add(i);
        if (afterKill) sentAfterKill.add(i);
        await sleep(5);
      }
    })();

    try {
      await writer;
      await killing;
      assert.ok(
        sentAfterKill.size >= AFTER_KILL,
        `the writer stopped at its deadline: ${confirmed.size} confirmed, ${sentAfterKill.size} after the kill`,
      );
      const missing = (from: Iterable<number>) => {
        const lost = [...from].filter((i) => !received.has(i));
        return `${lost.length} missing, e.g. ${lost.slice(0, 10).join(', ')}`;
      };
      // Sent through B while A is down: they arrive within seconds.
      await until(
        'the messages sent after the kill',
        () => [...sentAfterKill].every((i) => received.has(i)),
        60_000,
        () => missing(sentAfterKill),
      );
      const stranded = [...confirmed].filter((i) => !received.has(i));
      assert.ok(stranded.length > 0, 'no message was left on the killed broker: the test proves nothing about it');
      // A comes back with what it had stored and not delivered: that arrives too.
      await artemis('start', A);
      await until(
        'every confirmed message',
        () => [...confirmed].every((i) => received.has(i)),
        120_000,
        () => missing(confirmed),
      );
      t.diagnostic(
        `confirmed ${confirmed.size} (${stranded.length} left on the killed broker), received ${received.size} distinct, ${[...received.values()].filter((n) => n > 1).length} more than once`,
      );
    } finally {
      stop = true;
      await bounded(Promise.allSettled([reader, writer, killing]), 30_000, 'stopping the reader and the writer');
    }
    await bounded(consumer.close(), 30_000, 'closing the consumer');
    await producerBus
      .admin()
      .deregisterMessageType(type)
      .catch(() => {});
  });
});
