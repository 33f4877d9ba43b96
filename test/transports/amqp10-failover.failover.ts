/**
 * Multi-endpoint failover on two private Artemis instances (5 and 6 of scripts/brokers/artemis): with a producer
 * and a consumer running on `amqp10://a,b`, the broker they use is killed with SIGKILL. The producer goes on through
 * the other endpoint, and what it sends there reaches the consumer while the first is still down; once the killed
 * broker is back, the messages it had confirmed and not delivered yet are delivered too: every confirmed message
 * arrives at least once.
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
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, done: () => boolean, patienceMs: number): Promise<void> {
  const deadline = Date.now() + patienceMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
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
    timeout: 600_000,
  }, async (t) => {
    if (skip) return t.skip(skip);
    const type = uniqueType('failover');
    const group = uniqueGroup();
    const consumerBus = await MessageBus.connect({ broker: URL_AB, ackTimeoutMs: 30_000 });
    const producerBus = await MessageBus.connect({ broker: URL_AB });
    t.after(() => Promise.allSettled([consumerBus.close(), producerBus.close()]));
    const consumer = consumerBus.consumer({ consumerGroup: group, messageTypes: [type], prefetch: 20 });
    await consumer.ready;

    const confirmed = new Set<number>();
    const sentAfterKill = new Set<number>();
    const received = new Map<number, number>();
    let killed = false;
    let stop = false;
    // The consumer reads nothing until the kill: what was confirmed before it stays stored on A (its prefetched,
    // unacked deliveries go back to A's queue when the connection dies).
    const reader = (async () => {
      while (!killed) await sleep(20);
      while (!stop) {
        const m = await consumer.receive({ timeout: 200 }).catch(() => null);
        if (!m) continue;
        received.set(m.body as number, (received.get(m.body as number) ?? 0) + 1);
        await m.ack().catch(() => {});
      }
    })();
    const producer = producerBus.producer({ messageType: type });
    const writer = (async () => {
      for (let i = 0; i < 400; i++) {
        const afterKill = killed;
        for (;;) {
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

    await until('100 confirmed sends before the kill', () => confirmed.size >= 100, 60_000);
    await artemis('kill9', A);
    const beforeKill = new Set(confirmed);
    killed = true;
    await writer;
    assert.ok(sentAfterKill.size > 100, `only ${sentAfterKill.size} sends began after the kill`);
    // Sent through B while A is down: they arrive within seconds.
    await until(
      'the messages sent after the kill',
      () => [...sentAfterKill].every((i) => received.has(i)),
      60_000,
    ).catch((error) => {
      const missing = [...sentAfterKill].filter((i) => !received.has(i));
      throw new Error(`${(error as Error).message}: ${missing.length} missing, e.g. ${missing.slice(0, 10)}`);
    });
    const stranded = [...beforeKill].filter((i) => !received.has(i));
    assert.ok(stranded.length > 0, 'no message was left on the killed broker: the test proves nothing about it');
    // A comes back with what it had stored and not delivered: that arrives too.
    await artemis('start', A);
    await until('every confirmed message', () => [...confirmed].every((i) => received.has(i)), 120_000).catch(
      (error) => {
        const missing = [...confirmed].filter((i) => !received.has(i));
        throw new Error(
          `${(error as Error).message}: ${missing.length} confirmed messages missing, e.g. ${missing.slice(0, 10)}`,
        );
      },
    );
    stop = true;
    await reader;
    assert.equal(confirmed.size, 400);
    t.diagnostic(
      `confirmed ${confirmed.size} (${stranded.length} left on the killed broker), received ${received.size} distinct, ${[...received.values()].filter((n) => n > 1).length} more than once`,
    );
    await consumer.close();
    const admin = producerBus.admin();
    await admin.deregisterMessageType(type).catch(() => {});
  });
});
