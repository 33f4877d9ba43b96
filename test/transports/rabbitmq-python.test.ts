/**
 * docs/wire/rabbitmq.md's promise, kept with a real program in another language: a Python script using pika
 * (Debian's python3-pika), written from that page alone, declares a type and a group of its own, publishes into the
 * bus (using the AMQP `type` property for its own purposes, which must not re-type its messages) and reads what
 * busbar published, on the real broker.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import { MessageBus, message } from '../../src/index.ts';
import { BROKERS, brokerRequired, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const run = promisify(execFile);
const fixture = new URL('./fixtures/rabbitmq_client.py', import.meta.url).pathname;
/** Debian's interpreter, which has the python3-pika package (.ci/run installs it). */
const PYTHON = process.env.BUSBAR_TEST_PYTHON ?? '/usr/bin/python3';
const { host, port } = hostPort(BROKERS.rabbitmq, 5672);

async function pythonSkipReason(): Promise<string | undefined> {
  try {
    await run(PYTHON, ['-c', 'import pika'], { timeout: 30_000 });
    return undefined;
  } catch (error) {
    const reason = `${PYTHON} cannot import pika (apt-get install python3-pika): ${(error as Error).message.split('\n')[0]}`;
    if (brokerRequired('rabbitmq')) throw new Error(`${reason} (required by BUSBAR_REQUIRE_BROKERS)`);
    return reason;
  }
}

/** An extension, a plain header, and names that travel in cloudEvents:busbarheaders. */
const NODE_HEADERS = {
  traceparent: '00-node-01',
  'x-tenant': 'acme',
  'x-delivery-count': 'mine',
  'cloudEvents:note': 'not an attribute',
};

interface Received {
  id: string;
  type: string;
  typeProperty: string | null;
  source: string;
  contentType: string;
  key: string | null;
  traceparent: string | null;
  headers: Record<string, string>;
  attempt: number;
  body: unknown;
}

describe('rabbitmq wire mapping: a Python pika program joins the bus', { timeout: 180_000 }, () => {
  let skip: string | undefined;
  before(async () => {
    skip = (await brokerSkipReason('rabbitmq', () => tcpReachable(host, port))) ?? (await pythonSkipReason());
  });

  it('publishes messages busbar receives under their routing key, and reads what busbar published', async (t) => {
    if (skip) return t.skip(skip);
    const url = BROKERS.rabbitmq;
    const bus = await MessageBus.connect(BROKERS.rabbitmq);
    const type = `py-${randomUUID().slice(0, 8)}`;
    const pyGroup = `py-${randomUUID().slice(0, 8)}`;
    t.after(async () => {
      await bus
        .admin()
        .deregisterMessageType(type)
        .catch(() => {});
      await bus.close();
      // A group a plain client declared is not in busbar's registry, so deregistering the type leaves it: delete it.
      const raw = await amqp.connect(url);
      const channel = await raw.createChannel();
      await channel.deleteQueue(`busbar:${type}:${pyGroup}`);
      await raw.close();
    });
    const published = await run(PYTHON, [fixture, url, type, pyGroup, 'publish'], { timeout: 60_000 });
    const { sent } = JSON.parse(published.stdout) as { sent: string[] };

    // What Python published, as a busbar consumer receives it (a new earliest group is seeded from the type's log).
    const consumer = bus.consumer({ consumerGroup: `g-${randomUUID().slice(0, 8)}`, messageTypes: [type] });
    t.after(() => consumer.close());
    const first = await consumer.receive({ timeout: 30_000 });
    const bare = await consumer.receive({ timeout: 30_000 });
    const jms = await consumer.receive({ timeout: 30_000 });
    assert.ok(first && bare && jms, 'the Python messages did not all arrive');
    await Promise.all([first.ack(), bare.ack(), jms.ack()]);
    assert.equal(first.id, sent[0]);
    assert.equal(first.type, type, "the AMQP type property ('invoice.v2') must not re-type the message");
    assert.equal(first.source, 'billing-py');
    assert.equal(first.contentType, 'application/json');
    assert.deepEqual(first.body, { order: 42, note: 'café' });
    assert.equal(first.key, 'customer-7');
    assert.deepEqual(first.headers, { traceparent: '00-py-01', 'x-tenant': 'acme corp' });
    assert.equal(first.attempt, 1);
    assert.equal(bare.type, type, "the AMQP type property ('audit-record') must not re-type the message");
    assert.deepEqual([...bare.raw], [...Buffer.from('bare '), 0xff]);
    assert.equal(bare.contentType, 'application/octet-stream');
    assert.equal(bare.source, 'unknown');
    assert.equal(jms.id, sent[1]);
    assert.equal(jms.source, 'billing-jms');
    assert.equal(jms.time, '2026-05-06T07:08:09.000Z', 'the AMQP timestamp is read as RFC 3339');
    assert.deepEqual(jms.headers, { traceparent: '00-jms-01' });

    // What busbar published, as the Python program reads it from the group queue it declared.
    await bus
      .producer({ producerId: 'node-shop', messageType: type })
      .send([message({ item: 'thé' }, { key: 'c-1', headers: NODE_HEADERS }), message('plain')]);
    const consumed = await run(PYTHON, [fixture, url, type, pyGroup, 'consume', '5'], { timeout: 90_000 });
    const { received } = JSON.parse(consumed.stdout) as { received: Received[] };
    const fromBus = received.filter((r) => r.source === 'node-shop');
    assert.equal(fromBus.length, 2, `python read ${consumed.stdout}`);
    const json = fromBus.find((r) => r.contentType === 'application/json');
    assert.ok(json);
    assert.deepEqual(json.body, { item: 'thé' });
    assert.equal(json.type, type);
    assert.equal(json.typeProperty, type);
    assert.equal(json.key, 'c-1');
    assert.equal(json.traceparent, '00-node-01');
    assert.deepEqual(json.headers, NODE_HEADERS);
    assert.equal(json.attempt, 1);
    assert.match(json.id, /^[0-9a-f-]{36}$/);
    const text = fromBus.find((r) => r.contentType === 'text/plain; charset=utf-8');
    assert.equal(text?.body, 'plain');
  });
});
