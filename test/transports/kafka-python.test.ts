/**
 * docs/wire/kafka.md's promise, kept with a real program in another language: a Python script using confluent-kafka
 * (Debian's python3-confluent-kafka, librdkafka underneath), written from that page alone, publishes into the bus and
 * reads what busbar published, on the real broker. Its keys must land on the partitions busbar's own keys use, and a
 * type it creates itself the documented way (the project's broker never auto-creates topics) must be delivered.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { murmur2 } from '@platformatic/kafka';
import { MessageBus, message } from '../../src/index.ts';
import { BROKERS, brokerRequired, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const run = promisify(execFile);
const fixture = new URL('./fixtures/kafka_client.py', import.meta.url).pathname;
/** Debian's interpreter, which has the python3-confluent-kafka package (.ci/run installs it). */
const PYTHON = process.env.BUSBAR_TEST_PYTHON ?? '/usr/bin/python3';
const { host, port } = hostPort(BROKERS.kafka, 9092);

async function pythonSkipReason(): Promise<string | undefined> {
  try {
    await run(PYTHON, ['-c', 'import confluent_kafka'], { timeout: 30_000 });
    return undefined;
  } catch (error) {
    const reason = `${PYTHON} cannot import confluent_kafka (apt-get install python3-confluent-kafka): ${(error as Error).message.split('\n')[0]}`;
    if (brokerRequired('kafka')) throw new Error(`${reason} (required by BUSBAR_REQUIRE_BROKERS)`);
    return reason;
  }
}

describe('kafka wire mapping: a Python confluent-kafka program joins the bus', { timeout: 180_000 }, () => {
  let skip: string | undefined;
  before(async () => {
    skip = (await brokerSkipReason('kafka', () => tcpReachable(host, port))) ?? (await pythonSkipReason());
  });

  it('publishes complete messages busbar receives, and reads what busbar published', async (t) => {
    if (skip) return t.skip(skip);
    const bus = await MessageBus.connect(BROKERS.kafka);
    const type = `py-${randomUUID().slice(0, 8)}`;
    const newType = `py-new-${randomUUID().slice(0, 8)}`;
    const admin = bus.admin();
    t.after(async () => {
      await admin.deregisterMessageType(type).catch(() => {});
      await admin.deregisterMessageType(newType).catch(() => {});
      await bus.close();
    });
    await admin.registerMessageType(type, { partitions: 4 });
    const producer = bus.producer({ producerId: 'node-shop', messageType: type });
    await producer.send([
      message({ order: 1, item: 'thé' }, { key: 'customer-42', headers: { traceparent: '00-node-01' } }),
      message('plain text'),
    ]);

    const group = `py-${randomUUID().slice(0, 8)}`;
    const { stdout } = await run(PYTHON, [fixture, `${host}:${port}`, type, group, '2', newType], {
      timeout: 120_000,
    });
    const python = JSON.parse(stdout) as {
      sent: { id: string; type: string; key: string | null; partition: number }[];
      received: {
        id: string;
        type: string;
        contentType: string;
        key: string | null;
        traceparent: string | null;
        body: unknown;
      }[];
    };

    // What busbar published, as the Python program read it.
    const byBody = new Map(python.received.map((r) => [JSON.stringify(r.body), r]));
    const json = byBody.get(JSON.stringify({ order: 1, item: 'thé' }));
    assert.ok(json, `python did not read the JSON message: ${stdout}`);
    assert.equal(json.type, type);
    assert.equal(json.contentType, 'application/json');
    assert.equal(json.key, 'customer-42');
    assert.equal(json.traceparent, '00-node-01');
    assert.match(json.id, /^[0-9a-f-]{36}$/);
    const text = byBody.get(JSON.stringify('plain text'));
    assert.ok(text, `python did not read the text message: ${stdout}`);
    assert.equal(text.contentType, 'text/plain; charset=utf-8');
    assert.equal(text.key, null);

    // librdkafka's murmur2_random puts a key where busbar (and Java clients) put it.
    assert.equal(python.sent.length, 4);
    for (const s of python.sent.filter((x) => x.key)) {
      assert.equal(s.partition, (murmur2(Buffer.from(s.key!)) & 0x7fffffff) % 4, `partition of key ${s.key}`);
    }

    // What Python published, as a busbar consumer receives it.
    const consumer = bus.consumer({ consumerGroup: `g-${randomUUID().slice(0, 8)}`, messageTypes: [type] });
    const got = [];
    while (got.length < 5) {
      const m = await consumer.receive({ timeout: 30_000 });
      assert.ok(m, `only ${got.length} of 5 messages arrived`);
      got.push(m);
      await m.ack();
    }
    await consumer.close();
    const fromPython = got.filter((m) => m.source === 'python-billing');
    const sentTo = (t: string) => python.sent.filter((s) => s.type === t).map((s) => s.id);
    assert.deepEqual(fromPython.map((m) => m.id).sort(), sentTo(type).sort());
    const first = fromPython.find(
      (m) => JSON.stringify(m.body) === JSON.stringify({ id: 7, total: 12.5, note: 'café' }),
    );
    assert.ok(first, 'the first Python message arrived with its JSON body');
    assert.equal(first.type, type);
    assert.equal(first.contentType, 'application/json');
    assert.equal(first.key, 'customer-42');
    assert.equal(first.headers.traceparent, '00-py-01');
    assert.equal(first.attempt, 1);
    assert.ok(!Number.isNaN(Date.parse(first.time)), `time ${first.time} is RFC 3339`);
    // Per-key order: both customer-42 messages, in the order Python sent them.
    const keyed = fromPython.filter((m) => m.key === 'customer-42').map((m) => (m.body as { id: number }).id);
    assert.deepEqual(keyed, [7, 8]);

    // The type Python created itself: its message is delivered, and busbar sees the type as one of its own.
    const listed = await admin.listMessageTypes();
    assert.equal(listed.find((info) => info.type === newType)?.partitions, 2, `${newType} is listed with 2 partitions`);
    const reader = bus.consumer({ consumerGroup: `g-${randomUUID().slice(0, 8)}`, messageTypes: [newType] });
    const created = await reader.receive({ timeout: 30_000 });
    await reader.close();
    assert.ok(created, 'the message to the type Python created never arrived');
    assert.equal(created.id, sentTo(newType)[0]);
    assert.deepEqual(created.body, { new: true });
  });
});
