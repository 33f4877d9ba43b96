/**
 * docs/wire/amqp10.md's promise, kept with a real program in another language: a Python script using Debian's
 * python3-qpid-proton, written from that page alone, publishes into the bus (a full CloudEvent and a bare message)
 * and reads, as a group of its own, what busbar published: bodies byte-exact and every attribute as documented.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { MessageBus, message } from '../../src/index.ts';
import { BROKERS, brokerRequired, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const run = promisify(execFile);
const fixture = new URL('./fixtures/amqp10_client.py', import.meta.url).pathname;
/** Debian's interpreter, which has python3-qpid-proton (.ci/run installs it). */
const PYTHON = process.env.BUSBAR_TEST_PYTHON ?? '/usr/bin/python3';
const { host, port } = hostPort(BROKERS.amqp10, 5672);

async function pythonSkipReason(): Promise<string | undefined> {
  try {
    await run(PYTHON, ['-c', 'import proton'], { timeout: 30_000 });
    return undefined;
  } catch (error) {
    const reason = `${PYTHON} cannot import proton (apt-get install python3-qpid-proton): ${(error as Error).message.split('\n')[0]}`;
    if (brokerRequired('amqp10')) throw new Error(`${reason} (required by BUSBAR_REQUIRE_BROKERS)`);
    return reason;
  }
}

interface Received {
  messageId: string | null;
  contentType: string | null;
  durable: boolean;
  bodyType: string;
  bodyHex: string;
  attempt: number;
  properties: Record<string, string>;
}

describe('amqp10 wire mapping: a Python qpid-proton program joins the bus', { timeout: 180_000 }, () => {
  let skip: string | undefined;
  before(async () => {
    skip = (await brokerSkipReason('amqp10', () => tcpReachable(host, port))) ?? (await pythonSkipReason());
  });

  it('publishes messages busbar receives, and reads what busbar published', async (t) => {
    if (skip) return t.skip(skip);
    const bus = await MessageBus.connect(BROKERS.amqp10);
    const type = `py-${randomUUID().slice(0, 8)}`;
    const pyGroup = `py${randomUUID().slice(0, 8)}`;
    t.after(async () => {
      // Deleting the type deletes its address with every group queue, the Python one too.
      await bus
        .admin()
        .deregisterMessageType(type)
        .catch(() => {});
      await bus.close();
    });
    const python = (step: string, ...rest: string[]) =>
      run(PYTHON, [fixture, host, String(port), 'busbar', 'busbar', type, pyGroup, step, ...rest], {
        timeout: 90_000,
      }).then((r) => JSON.parse(r.stdout) as Record<string, unknown>);

    // What Python published, as a busbar group receives it (the group exists first: a group holds what comes after).
    const consumer = bus.consumer({ consumerGroup: `g-${randomUUID().slice(0, 8)}`, messageTypes: [type] });
    t.after(() => consumer.close());
    await consumer.ready;
    const { sent } = (await python('publish')) as { sent: string[] };
    const first = await consumer.receive({ timeout: 30_000 });
    const bare = await consumer.receive({ timeout: 30_000 });
    assert.ok(first && bare, 'the Python messages did not both arrive');
    await Promise.all([first.ack(), bare.ack()]);
    assert.equal(first.id, sent[0]);
    assert.equal(first.type, type);
    assert.equal(first.source, 'billing-py');
    assert.equal(first.time, '2026-01-02T03:04:05.678Z');
    assert.equal(first.contentType, 'application/json');
    assert.deepEqual(first.body, { order: 42, note: 'café' });
    assert.equal(first.key, 'customer-7');
    assert.deepEqual(first.headers, { traceparent: '00-py-01', 'x-tenant': 'acme' });
    assert.equal(first.attempt, 1);
    assert.equal(bare.type, type);
    assert.deepEqual([...bare.raw], [...Buffer.from('bare '), 0xff]);
    assert.equal(bare.contentType, 'application/octet-stream');
    assert.equal(bare.source, 'unknown');
    assert.deepEqual(bare.headers, {});

    // What busbar published, as the Python program reads it as a group of its own.
    await python('join');
    const binary = Buffer.from([0, 1, 2, 254, 255]);
    await bus
      .producer({ producerId: 'node-shop', messageType: type })
      .send([
        message({ item: 'thé' }, { key: 'c-1', headers: { traceparent: '00-node-01', 'x-trace': 'abc' } }),
        message(new Uint8Array(binary)),
      ]);
    const { received } = (await python('consume', '2')) as { received: Received[] };
    assert.equal(received.length, 2);
    const [json, bytes] = received;
    assert.equal(json!.bodyType, 'bytes', 'the body must be one Data section');
    assert.equal(Buffer.from(json!.bodyHex, 'hex').toString('utf8'), JSON.stringify({ item: 'thé' }));
    assert.equal(json!.contentType, 'application/json');
    assert.equal(json!.durable, true);
    assert.equal(json!.attempt, 1);
    const p = json!.properties;
    assert.equal(p['cloudEvents:specversion'], '1.0');
    assert.equal(p['cloudEvents:id'], json!.messageId);
    assert.match(p['cloudEvents:id']!, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(p['cloudEvents:source'], 'node-shop');
    assert.equal(p['cloudEvents:type'], type);
    assert.match(p['cloudEvents:time']!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.equal(p['cloudEvents:partitionkey'], 'c-1');
    assert.equal(p['cloudEvents:traceparent'], '00-node-01');
    assert.equal(p['x-trace'], 'abc');
    assert.equal(bytes!.bodyHex, binary.toString('hex'));
    assert.equal(bytes!.contentType, 'application/octet-stream');
  });
});
