/**
 * admin.peek on Kafka (BUSBAR_TEST_KAFKA_URL, default kafka://127.0.0.1:9092): positions are `<partition>:<offset>`,
 * partitions merge oldest first, bad positions are refused, and a peek creates no consumer group on the broker.
 * The conformance suite (scenario P1) checks that a peek consumes nothing.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Admin } from '@platformatic/kafka';
import { buildMessage } from '../../src/message/envelope.ts';
import type { Transport } from '../../src/transport/contract.ts';
import createKafkaTransport from '../../src/transports/kafka/index.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const { host, port } = hostPort(BROKERS.kafka, 9092);
const endpoint = `${host}:${port}`;
const name = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

const skip = await brokerSkipReason('kafka', () => tcpReachable(host, port));

describe('kafka admin.peek', { skip, timeout: 120_000 }, () => {
  let transport: Transport;
  const clientId = name('peek-test');
  const types: string[] = [];
  before(async () => {
    transport = await createKafkaTransport({ url: BROKERS.kafka, endpoints: [endpoint], options: { clientId } });
  });
  after(async () => {
    for (const type of types) await transport.admin.deleteType(type).catch(() => {});
    await transport.close();
  });

  it('shows <partition>:<offset> positions, oldest first across partitions, and joins no group', async () => {
    const type = name('peek');
    types.push(type);
    await transport.admin.ensureType(type, { partitions: 3 });
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const m = buildMessage(type, 'test', `m${i}`, { key: `key-${i}` });
      ids.push(m.id);
      // One at a time: each is stored (and timestamped) before the next is sent.
      await transport.publish(type, [m]);
    }
    const all = await transport.admin.peek!(type, { count: 100 });
    assert.deepEqual(
      all.map((p) => p.message.id),
      ids,
    );
    for (const p of all) assert.match(p.position, /^\d+:\d+$/);
    assert.ok(new Set(all.map((p) => p.position.split(':')[0])).size > 1, 'the keys spread over partitions');
    for (let i = 1; i < all.length; i++) assert.ok(all[i]!.storedAt! >= all[i - 1]!.storedAt!);
    // Paging: from the last position shown, the rest follows.
    const page = await transport.admin.peek!(type, { count: 3 });
    const next = await transport.admin.peek!(type, { from: page[2]!.position, count: 10 });
    assert.deepEqual(
      next.map((p) => p.message.id),
      ids.slice(2),
    );
    // A position past the end of its partition shows nothing.
    const [partition] = all[0]!.position.split(':');
    assert.deepEqual(await transport.admin.peek!(type, { from: `${partition}:999999`, count: 10 }), []);

    const admin = new Admin({ clientId: name('check'), bootstrapBrokers: [endpoint] });
    try {
      const groups = [...(await admin.listGroups()).keys()];
      assert.deepEqual(
        groups.filter((g) => g.startsWith(clientId)),
        [],
        'a peek created a consumer group',
      );
    } finally {
      await admin.close();
    }
  });

  it('refuses a bad position with what to give instead; an unknown type shows nothing', async () => {
    const type = name('peek');
    types.push(type);
    await transport.admin.ensureType(type, { partitions: 2 });
    await assert.rejects(transport.admin.peek!(type, { from: '12', count: 1 }), {
      code: 'BUSBAR_ERR_INVALID_ARGUMENT',
      message: /<partition>:<offset>/,
    });
    await assert.rejects(transport.admin.peek!(type, { from: '5:0', count: 1 }), {
      code: 'BUSBAR_ERR_INVALID_ARGUMENT',
      message: /2 partition/,
    });
    assert.deepEqual(await transport.admin.peek!(name('missing'), { count: 5 }), []);
  });
});
