/**
 * The AMQP 1.0 transport's connection settings on the real Artemis: SASL PLAIN logs in, a wrong password and SASL
 * ANONYMOUS (refused by a broker with security on) fail at connect with BUSBAR_ERR_AUTH, a dead first endpoint is
 * skipped; the URL schemes and CORTX's `type: amqp10`; options that cannot work are refused before connecting.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it, type TestContext } from 'node:test';
import { readConfigFile } from '../../src/config/index.ts';
import { MessageBus } from '../../src/index.ts';
import { transportNameFor } from '../../src/transport/registry.ts';
import { amqp10Options } from '../../src/transports/amqp10/options.ts';
import { uniqueGroup, uniqueType } from '../conformance/suite.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const { host, port } = hostPort(BROKERS.amqp10, 5672);
const at = `${host}:${port}`;

describe('amqp10 transport: URLs, config and logins', () => {
  let skip: string | undefined;
  before(async () => {
    skip = await brokerSkipReason('amqp10', () => tcpReachable(host, port));
  });

  it('amqp10:// and amqps10:// are AMQP 1.0; amqp:// stays RabbitMQ', () => {
    assert.equal(transportNameFor('amqp10:'), 'amqp10');
    assert.equal(transportNameFor('amqps10:'), 'amqp10');
    assert.equal(transportNameFor('amqp:'), 'rabbitmq');
  });

  it('CORTX message_bus.conf with type amqp10 lists every node as a failover endpoint', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'busbar-amqp10-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'message_bus.conf');
    writeFileSync(
      file,
      JSON.stringify({
        message_broker: {
          type: 'amqp10',
          cluster: [
            { server: 'h1', port: 5682 },
            { server: 'h2', port: '5692' },
          ],
        },
        message_bus: { socket_timeout: 3 },
      }),
    );
    const options = readConfigFile(file);
    assert.equal(options.broker, 'amqp10://h1:5682,h2:5692');
    assert.deepEqual(options.options, { connectTimeoutMs: 3000 });
  });

  it('refuses settings that cannot work before connecting', () => {
    const base = { url: 'amqp10://h:5672', endpoints: ['h:5672'], options: {} };
    assert.throws(() => amqp10Options({ ...base, options: { sasl: 'EXTERNAL' } }), {
      code: 'BUSBAR_ERR_INVALID_CONFIG',
    });
    assert.throws(() => amqp10Options({ ...base, options: { sasl: 'KERBEROS' } }), {
      code: 'BUSBAR_ERR_INVALID_CONFIG',
    });
    assert.throws(() => amqp10Options({ ...base, options: { heartbeat: 3 } }), { code: 'BUSBAR_ERR_INVALID_CONFIG' });
    assert.throws(() => amqp10Options({ ...base, username: 'u', options: { sasl: 'PLAIN' } }), {
      code: 'BUSBAR_ERR_INVALID_CONFIG',
    });
    const tls = amqp10Options({ ...base, url: 'amqps10://h', endpoints: ['h'] });
    assert.deepEqual([tls.tls, tls.endpoints[0]!.port, tls.sasl], [true, 5671, 'ANONYMOUS']);
  });

  it('a wrong password fails at connect with BUSBAR_ERR_AUTH', async (t) => {
    if (skip) return t.skip(skip);
    await assert.rejects(MessageBus.connect({ broker: `amqp10://busbar:wrong-password@${at}` }), {
      code: 'BUSBAR_ERR_AUTH',
    });
  });

  it('SASL ANONYMOUS is refused by a broker with security on, with BUSBAR_ERR_AUTH', async (t) => {
    if (skip) return t.skip(skip);
    await assert.rejects(MessageBus.connect({ broker: `amqp10://${at}` }), { code: 'BUSBAR_ERR_AUTH' });
  });

  it('SASL PLAIN logs in, skipping a dead first endpoint, and a message goes round', async (t) => {
    if (skip) return t.skip(skip);
    const bus = await MessageBus.connect({ broker: `amqp10://busbar:busbar@127.0.0.1:1,${at}` });
    const type = uniqueType('login');
    t.after(async () => {
      await bus
        .admin()
        .deregisterMessageType(type)
        .catch(() => {});
      await bus.close();
    });
    const consumer = bus.consumer({ consumerGroup: uniqueGroup(), messageTypes: [type] });
    await consumer.ready;
    await bus.send(type, 'over PLAIN');
    const got = await consumer.receive({ timeout: 30_000 });
    assert.equal(got?.body, 'over PLAIN');
    await got!.ack();
    await consumer.close();
  });
});

describe('amqp10 transport: prefetch', () => {
  let skip: string | undefined;
  before(async () => {
    skip = await brokerSkipReason('amqp10', () => tcpReachable(host, port));
  });

  /** A bus on the shared broker and a new type, both gone when the test ends. */
  async function openBus(t: TestContext, label: string): Promise<{ bus: MessageBus; type: string }> {
    const bus = await MessageBus.connect({ broker: BROKERS.amqp10 });
    const type = uniqueType(label);
    t.after(async () => {
      await bus
        .admin()
        .deregisterMessageType(type)
        .catch(() => {});
      await bus.close();
    });
    return { bus, type };
  }

  // rhea's default session window is 2,048 deliveries, and a held delivery keeps its slot: a consumer with a larger
  // prefetch that held what it had received stalled at 2,048.
  it('holds a prefetch beyond 2,048 unacked deliveries, then acks them all', async (t) => {
    if (skip) return t.skip(skip);
    const count = 3000;
    const { bus, type } = await openBus(t, 'prefetch');
    const consumer = bus.consumer({
      consumerGroup: uniqueGroup(),
      messageTypes: [type],
      prefetch: count,
      ackTimeoutMs: 300_000,
    });
    await consumer.ready;
    for (let i = 0; i < count; i += 500) {
      await bus.sendBatch(
        type,
        Array.from({ length: 500 }, (_, j) => `m${i + j}`),
      );
    }
    const held = [];
    const bodies = new Set<unknown>();
    const deadline = Date.now() + 120_000;
    while (held.length < count && Date.now() < deadline) {
      const got = await consumer.receive({ timeout: Math.max(1, deadline - Date.now()) });
      if (!got) break;
      held.push(got);
      bodies.add(got.body);
    }
    assert.equal(held.length, count, `received ${held.length} of ${count} without acking`);
    assert.equal(bodies.size, count);
    await Promise.all(held.map((message) => message.ack()));
    await consumer.close();
  });

  // Link credit is an AMQP uint and Artemis reads it as a Java int: credit of 2^31 or more got nothing at all, and a
  // credit beyond 2^32 - 1 could not even be encoded (the connection dropped and came back, over and over).
  it('a prefetch beyond what a link can hold is the most it can hold', async (t) => {
    if (skip) return t.skip(skip);
    const { bus, type } = await openBus(t, 'prefetch-max');
    const consumer = bus.consumer({
      consumerGroup: uniqueGroup(),
      messageTypes: [type],
      prefetch: Number.MAX_SAFE_INTEGER,
    });
    await consumer.ready;
    await bus.send(type, 'one');
    const got = await consumer.receive({ timeout: 30_000 });
    assert.equal(got?.body, 'one');
    await got!.ack();
    await consumer.close();
  });

  // rhea freed a delivery's slot in the session window only once every earlier delivery was settled too: one held
  // delivery stopped a consumer acking the others after 2,048 more (prefetch + 2,048 since the window was sized).
  it('one held delivery does not stop the deliveries after it', async (t) => {
    if (skip) return t.skip(skip);
    const count = 2500;
    const { bus, type } = await openBus(t, 'held');
    const consumer = bus.consumer({
      consumerGroup: uniqueGroup(),
      messageTypes: [type],
      prefetch: 10,
      ackTimeoutMs: 300_000,
    });
    await consumer.ready;
    for (let i = 0; i < count; i += 500) {
      await bus.sendBatch(
        type,
        Array.from({ length: 500 }, (_, j) => `m${i + j}`),
      );
    }
    const deadline = Date.now() + 120_000;
    const first = await consumer.receive({ timeout: 60_000 });
    assert.ok(first, 'nothing received');
    const acks: Promise<void>[] = [];
    while (acks.length < count - 1 && Date.now() < deadline) {
      const got = await consumer.receive({ timeout: Math.max(1, deadline - Date.now()) });
      if (!got) break;
      acks.push(got.ack());
    }
    assert.equal(acks.length, count - 1, `received ${acks.length} of ${count - 1} while holding the first`);
    await Promise.all(acks);
    await first.ack();
    await consumer.close();
  });
});
