/**
 * AMQP 1.0 acks are broker-confirmed (docs/wire/amqp10.md, "Acknowledgement"): an ack resolves once Artemis has
 * committed it: a worker process that exits the moment its acks resolve (process.exit, no close) leaves none of
 * them to be delivered again (before, the last dispositions were still unsent when the ack resolved), a stats call
 * right after the last ack counts nothing unread, and a consumer closed right after acking (its acks not awaited)
 * gets none back. Runs on the broker of BUSBAR_TEST_AMQP10_URL
 * (default: the shared instance 1); it only publishes, consumes and reads stats.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MessageBus as Bus, type MessageBus } from '../../src/index.ts';
import { uniqueGroup, uniqueType } from '../conformance/suite.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { killAll, startChild } from '../helpers/child.ts';

const { host, port } = hostPort(BROKERS.amqp10, 5672);
const COUNT = 500;
const PATIENCE_MS = 30_000;
const WORKER = new URL('./fixtures/amqp10-ack-exit.ts', import.meta.url).pathname;

describe('amqp10 acks are confirmed by the broker', () => {
  let skip: string | undefined;
  let bus: MessageBus;
  const types: string[] = [];
  before(async () => {
    skip = await brokerSkipReason('amqp10', () => tcpReachable(host, port));
    if (!skip) bus = await Bus.connect({ broker: BROKERS.amqp10 });
  });
  after(async () => {
    await killAll();
    if (!bus) return;
    for (const type of types)
      await bus
        .admin()
        .deregisterMessageType(type)
        .catch(() => {});
    await bus.close();
  });

  const newType = (name: string) => {
    const type = uniqueType(name);
    types.push(type);
    return type;
  };

  /** Receives `count` messages and acks each without waiting, returning the acks' promises. */
  async function receiveAndAck(consumer: ReturnType<MessageBus['consumer']>, count: number): Promise<Promise<void>[]> {
    const acks: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const got = await consumer.receive({ timeout: PATIENCE_MS });
      assert.ok(got, `message ${i + 1} of ${count} did not arrive`);
      acks.push(got.ack());
    }
    return acks;
  }

  it('once every ack resolved, stats count nothing unread or in flight', async (t) => {
    if (skip) return t.skip(skip);
    const type = newType('acked-stats');
    const group = uniqueGroup();
    const consumer = bus.consumer({ consumerGroup: group, messageTypes: [type], prefetch: 100 });
    t.after(() => consumer.close());
    await consumer.ready;
    await bus.producer({ messageType: type }).send([...Array(COUNT)].map((_, i) => `m${i}`));
    await Promise.all(await receiveAndAck(consumer, COUNT));
    const stats = (await bus.admin().stats(type))[0]!.groups.find((g) => g.group === group);
    assert.ok(stats, `stats list no group ${group}`);
    assert.deepEqual({ unread: stats.unread, inflight: stats.inflight }, { unread: 0, inflight: 0 });
  });

  it('a worker that exits the moment its acks resolve gets none of them back', async (t) => {
    if (skip) return t.skip(skip);
    const type = newType('acked-exit');
    const group = uniqueGroup();
    await bus.admin().registerMessageType(type);
    const worker = startChild(WORKER, [BROKERS.amqp10, type, group, String(COUNT)]);
    await worker.waitFor(/^ready$/, PATIENCE_MS);
    await bus.producer({ messageType: type }).send([...Array(COUNT)].map((_, i) => `m${i}`));
    await worker.waitFor(/^acked$/, PATIENCE_MS);
    assert.deepEqual(await worker.exit, { code: 0, signal: null }, worker.stderr());
    await assertNoneBack(type, group);
  });

  /** Nothing acked comes back: the first message a new consumer of the group gets is a sentinel sent after. */
  async function assertNoneBack(type: string, group: string): Promise<void> {
    await bus.send(type, 'sentinel');
    // A message that came back would be ahead of the sentinel (Artemis returns it to the head of the queue).
    const consumer = bus.consumer({ consumerGroup: group, messageTypes: [type] });
    try {
      const got = await consumer.receive({ timeout: PATIENCE_MS });
      assert.equal(got?.body, 'sentinel');
      await got!.ack();
      assert.equal(await bus.admin().unreadCount(type, group), 0);
    } finally {
      await consumer.close();
    }
  }

  it('a consumer closed right after acking gets none of them back', async (t) => {
    if (skip) return t.skip(skip);
    const type = newType('acked-close');
    const group = uniqueGroup();
    const first = bus.consumer({ consumerGroup: group, messageTypes: [type], prefetch: 100 });
    await first.ready;
    await bus.producer({ messageType: type }).send([...Array(COUNT)].map((_, i) => `m${i}`));
    const acks = await receiveAndAck(first, COUNT);
    await first.close();
    // Closing waited for the broker's answer: every ack is settled one way or the other, and none failed.
    await Promise.all(acks);
    await assertNoneBack(type, group);
  });
});
