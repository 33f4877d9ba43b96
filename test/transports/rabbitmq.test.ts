/**
 * The RabbitMQ transport against the machine's RabbitMQ: what the conformance suite does not reach — the wire
 * mapping as a plain amqplib client sees it (docs/wire/rabbitmq.md), attempt counts across every way a message
 * comes back, seeding a new group once, endpoints, credentials, options, a dropped connection.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import amqp, { type ConsumeMessage } from 'amqplib';
import { MessageBus } from '../../src/index.ts';
import type { Delivery, Transport, TransportConfig, TransportMessage } from '../../src/transport/contract.ts';
import createRabbitTransport from '../../src/transports/rabbitmq/index.ts';
import { mergeDocuments } from '../../src/transports/rabbitmq/registry.ts';
import { delayBucket } from '../../src/transports/rabbitmq/wire.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { eventually } from '../helpers/eventually.ts';
import { PrivateRabbit } from '../helpers/private-brokers.ts';

const run = promisify(execFile);
const { host, port } = hostPort(BROKERS.rabbitmq, 5672);
const endpoint = `${host}:${port}`;
const skip = await brokerSkipReason('rabbitmq', () => tcpReachable(host, port));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const newType = () => `rmq-${randomUUID().slice(0, 8)}`;
const newGroup = () => `g-${randomUUID().slice(0, 8)}`;

function config(
  options: TransportConfig['options'] = {},
  endpoints = [endpoint],
  extra: Partial<TransportConfig> = {},
): TransportConfig {
  return { url: `amqp://${endpoints.join(',')}`, endpoints, username: 'guest', password: 'guest', options, ...extra };
}

function message(type: string, body: string, extra: Partial<TransportMessage> = {}): TransportMessage {
  return {
    id: randomUUID(),
    type,
    source: 'rabbitmq-test',
    time: new Date().toISOString(),
    contentType: 'text/plain; charset=utf-8',
    headers: {},
    body: new TextEncoder().encode(body),
    ...extra,
  };
}

/** Opens a transport that the test closes, deleting the types it names. */
async function open(t: TestContext, types: string[] = [], options?: TransportConfig['options']): Promise<Transport> {
  const transport = await createRabbitTransport(config(options));
  t.after(async () => {
    for (const type of types) await transport.admin.deleteType(type).catch(() => {});
    await transport.close();
  });
  return transport;
}

async function next(iterator: AsyncIterator<Delivery>, ms = 30_000): Promise<Delivery> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  const result = await Promise.race([iterator.next(), timeout]).finally(() => clearTimeout(timer));
  assert.ok(result && !result.done, `no delivery within ${ms} ms`);
  return result.value;
}

describe('rabbitmq transport', { skip }, () => {
  let raw: amqp.ChannelModel;
  before(async () => {
    raw = await amqp.connect(BROKERS.rabbitmq);
    raw.on('error', () => {});
  });
  after(async () => {
    await raw?.close();
  });

  it('a plain client publishes a bare body; the bus receives it with its attributes filled in', async (t) => {
    const type = newType();
    const bus = await MessageBus.connect(BROKERS.rabbitmq);
    t.after(async () => {
      await bus
        .admin()
        .deregisterMessageType(type)
        .catch(() => {});
      await bus.close();
    });
    // As docs/wire/rabbitmq.md tells a plain client: declare the exchange and the type's log, bind, publish.
    const channel = await raw.createConfirmChannel();
    await channel.assertExchange('busbar', 'topic', { durable: true });
    await channel.assertQueue(`busbar:${type}`, {
      durable: true,
      arguments: { 'x-queue-type': 'stream', 'x-max-age': '7D' },
    });
    await channel.bindQueue(`busbar:${type}`, 'busbar', type);
    const body = Buffer.from([0, 1, 2, 250, 255]);
    channel.publish('busbar', type, body, { persistent: true });
    await channel.waitForConfirms();
    await channel.close();

    const consumer = bus.consumer({ consumerGroup: newGroup(), messageTypes: [type], offset: 'earliest' });
    const got = await consumer.receive({ timeout: 10_000 });
    assert.ok(got, 'the bus did not receive the plain message');
    assert.deepEqual(Buffer.from(got.raw), body);
    assert.equal(got.type, type);
    assert.ok(got.id.length > 0);
    assert.equal(got.source, 'unknown');
    assert.equal(got.contentType, 'application/octet-stream');
    assert.ok(!Number.isNaN(Date.parse(got.time)));
    assert.equal(got.attempt, 1);
    assert.deepEqual(got.headers, {});
    await got.ack();
    await consumer.close();
  });

  it("a plain client's type property or cloudEvents:type header never re-types its message", async (t) => {
    const type = newType();
    const bus = await MessageBus.connect(BROKERS.rabbitmq);
    t.after(async () => {
      await bus
        .admin()
        .deregisterMessageType(type)
        .catch(() => {});
      await bus.close();
    });
    await bus.admin().registerMessageType(type);
    const consumer = bus.consumer({ consumerGroup: newGroup(), messageTypes: [type] });
    t.after(() => consumer.close());
    await consumer.ready;
    const channel = await raw.createConfirmChannel();
    channel.publish('busbar', type, Buffer.from('own type'), { persistent: true, type: 'OrderCreated' });
    channel.publish('busbar', type, Buffer.from('ce type'), {
      persistent: true,
      headers: { 'cloudEvents:type': `${type}.elsewhere` },
    });
    await channel.waitForConfirms();
    await channel.close();
    const received = async () => {
      const got = [await consumer.receive({ timeout: 10_000 }), await consumer.receive({ timeout: 10_000 })];
      assert.ok(got[0] && got[1], 'both messages arrive');
      const text = (m: (typeof got)[0]) => new TextDecoder().decode(m!.raw);
      return got.sort((a, b) => text(a).localeCompare(text(b))).map((m) => ({ body: text(m), message: m! }));
    };
    const first = await received();
    assert.deepEqual(
      first.map(({ body, message }) => [body, message.type]),
      [
        ['ce type', type],
        ['own type', type],
      ],
      'the routing key is the message type',
    );
    // A nack sends each back to this group, not to a type named after the property.
    for (const { message } of first) await message.nack();
    const again = await received();
    assert.deepEqual(
      again.map(({ body, message }) => [body, message.type, message.attempt]),
      [
        ['ce type', type, 2],
        ['own type', type, 2],
      ],
    );
    for (const { message } of again) await message.ack();
  });

  it('the bus publishes; a plain client reads body, attributes and headers', async (t) => {
    const type = newType();
    const group = newGroup();
    const bus = await MessageBus.connect(BROKERS.rabbitmq);
    t.after(async () => {
      await bus
        .admin()
        .deregisterMessageType(type)
        .catch(() => {});
      await bus.close();
    });
    const channel = await raw.createChannel();
    t.after(async () => {
      // A group a plain client declared is not in busbar's registry, so deregistering the type leaves it: delete it.
      await channel.deleteQueue(`busbar:${type}:${group}`).catch(() => {});
      await channel.close().catch(() => {});
    });
    await channel.assertExchange('busbar', 'topic', { durable: true });
    await channel.assertQueue(`busbar:${type}:${group}`, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.bindQueue(`busbar:${type}:${group}`, 'busbar', type);
    const { message: outgoing } = await import('../../src/index.ts');
    const producer = bus.producer({ producerId: 'orders-service', messageType: type });
    await producer.send([
      outgoing({ total: 42 }, { key: 'customer-7', headers: { traceparent: '00-abc-def-01', tenant: 'acme' } }),
    ]);

    const received = await new Promise<ConsumeMessage>((resolve) => {
      void channel.consume(`busbar:${type}:${group}`, (m) => m && resolve(m));
    });
    channel.ack(received);
    assert.deepEqual(JSON.parse(received.content.toString()), { total: 42 });
    const headers = received.properties.headers!;
    assert.equal(headers['cloudEvents:specversion'], '1.0');
    assert.equal(headers['cloudEvents:type'], type);
    assert.equal(headers['cloudEvents:source'], 'orders-service');
    assert.equal(headers['cloudEvents:partitionkey'], 'customer-7');
    assert.match(headers['cloudEvents:id'], /^[0-9a-f-]{36}$/);
    assert.ok(!Number.isNaN(Date.parse(headers['cloudEvents:time'])));
    // Extension-named headers are CloudEvents extensions, under the binding's prefix.
    assert.equal(headers['cloudEvents:traceparent'], '00-abc-def-01');
    assert.equal(headers['cloudEvents:tenant'], 'acme');
    assert.equal(received.properties.contentType, 'application/json');
    assert.equal(received.properties.messageId, headers['cloudEvents:id']);
    assert.equal(received.properties.appId, 'orders-service');
    assert.equal(received.properties.type, type);
    assert.equal(received.properties.deliveryMode, 2);
    assert.equal(typeof received.properties.timestamp, 'number');
    assert.equal(received.fields.routingKey, type);
  });

  it('counts attempts across nack, delayed nack, ack timeout and consumer close', async (t) => {
    const type = newType();
    const transport = await open(t, [type]);
    const group = newGroup();
    const options = {
      types: [type],
      group,
      consumerId: 'c1',
      offset: 'latest' as const,
      prefetch: 4,
      // Long against a loaded machine's pause between a delivery and its nack (a lease that ran out first would
      // count the attempt by the ack timeout and return it before the nack's delay), short for the 4th attempt.
      ackTimeoutMs: 3000,
    };
    let sub = transport.consume(options);
    await sub.ready;
    await transport.publish(type, [message(type, 'again')]);
    let it = sub[Symbol.asyncIterator]();
    const first = await next(it);
    assert.equal(first.attempt, 1);
    await first.nack();
    const second = await next(it);
    assert.equal(second.attempt, 2);
    const delayedAt = Date.now();
    await second.nack({ delayMs: 300 });
    const third = await next(it);
    assert.ok(Date.now() - delayedAt >= 300, 'delayed nack came back early');
    assert.equal(third.attempt, 3);
    assert.equal(third.message.id, first.message.id);
    // Let the ack timeout pass: the transport returns it; a late ack is a no-op (the redelivery stands).
    const fourth = await next(it, 60_000);
    assert.equal(fourth.attempt, 4);
    await third.ack();
    await third.nack(); // idempotent no-op once it is back in its group
    await sub.close();
    sub = transport.consume({ ...options, ackTimeoutMs: 60_000 });
    it = sub[Symbol.asyncIterator]();
    const fifth = await next(it);
    assert.equal(fifth.attempt, 5);
    assert.deepEqual(Buffer.from(fifth.message.body).toString(), 'again');
    await fifth.ack();
    await fifth.ack();
    await sub.close();
  });

  it('acks given just before close still land', async (t) => {
    const type = newType();
    const transport = await open(t, [type]);
    const options = {
      types: [type],
      group: newGroup(),
      consumerId: 'c',
      offset: 'latest' as const,
      prefetch: 10,
      ackTimeoutMs: 60_000,
    };
    let sub = transport.consume(options);
    await sub.ready;
    await transport.publish(
      type,
      Array.from({ length: 5 }, (_, i) => message(type, `a${i}`)),
    );
    const iterator = sub[Symbol.asyncIterator]();
    const acks: Promise<void>[] = [];
    for (let i = 0; i < 5; i++) acks.push((await next(iterator)).ack());
    await sub.close();
    await Promise.all(acks);
    sub = transport.consume(options);
    const again = await Promise.race([sub[Symbol.asyncIterator]().next(), sleep(800).then(() => 'none')]);
    assert.equal(again, 'none', 'an acked message came back');
    await sub.close();
  });

  it('an abort signal ends iteration, also when it fired before consume', async (t) => {
    const type = newType();
    const transport = await open(t, [type]);
    const options = {
      types: [type],
      group: newGroup(),
      consumerId: 'c',
      offset: 'latest' as const,
      prefetch: 1,
      ackTimeoutMs: 60_000,
    };
    const early = transport.consume({ ...options, signal: AbortSignal.abort() });
    assert.equal((await early[Symbol.asyncIterator]().next()).done, true);
    const controller = new AbortController();
    const late = transport.consume({ ...options, signal: controller.signal });
    await late.ready;
    const pending = late[Symbol.asyncIterator]().next();
    controller.abort();
    assert.equal((await pending).done, true);
  });

  it('seeds a new earliest group once, however many members start together', async (t) => {
    const type = newType();
    const transport = await open(t, [type]);
    await transport.publish(
      type,
      Array.from({ length: 50 }, (_, i) => message(type, `m${i}`)),
    );
    const group = newGroup();
    const subs = Array.from({ length: 4 }, (_, i) =>
      transport.consume({
        types: [type],
        group,
        consumerId: `c${i}`,
        offset: 'earliest',
        prefetch: 10,
        ackTimeoutMs: 60_000,
      }),
    );
    await Promise.all(subs.map((s) => s.ready));
    const counts = new Map<string, number>();
    let stop = false;
    await Promise.all([
      ...subs.map(async (s) => {
        const iterator = s[Symbol.asyncIterator]();
        while (!stop) {
          const result = await Promise.race([iterator.next(), sleep(300).then(() => undefined)]);
          if (!result || result.done) continue;
          const body = Buffer.from(result.value.message.body).toString();
          counts.set(body, (counts.get(body) ?? 0) + 1);
          await result.value.ack();
        }
      }),
      (async () => {
        const deadline = Date.now() + 15_000;
        while (counts.size < 50 && Date.now() < deadline) await sleep(50);
        await sleep(500);
        stop = true;
      })(),
    ]);
    await Promise.all(subs.map((s) => s.close()));
    assert.equal(counts.size, 50);
    assert.ok(
      [...counts.values()].every((n) => n === 1),
      'a message was seeded more than once',
    );
  });

  it('stats count ready and in-flight messages per group; purge empties', async (t) => {
    const type = newType();
    const transport = await open(t, [type]);
    const group = newGroup();
    const sub = transport.consume({
      types: [type],
      group,
      consumerId: 'c',
      offset: 'latest',
      prefetch: 2,
      ackTimeoutMs: 60_000,
    });
    await sub.ready;
    await transport.publish(
      type,
      Array.from({ length: 5 }, (_, i) => message(type, `s${i}`)),
    );
    const iterator = sub[Symbol.asyncIterator]();
    await (await next(iterator)).ack();
    // The ack frees a slot and the queue pushes the next message a moment later: read until the counts show both.
    const g = await eventually(
      async () => (await transport.admin.stats(type))[0]!.groups.find((x) => x.group === group)!,
      (x) => x.unread === 4 && x.inflight === 2,
    );
    assert.equal(g.unread, 4);
    assert.equal(g.inflight, 2);
    await sub.close();
    await transport.admin.purge(type);
    const [afterPurge] = await transport.admin.stats(type);
    assert.equal(afterPurge!.groups.find((x) => x.group === group)!.unread, 0);
    assert.deepEqual(
      (await transport.admin.listTypes()).find((x) => x.type === type),
      { type, partitions: 1, retention: {} },
    );
  });

  it('a type deleted by another client comes back when published to; nothing is dropped', async (t) => {
    const type = newType();
    const a = await open(t, [type]);
    const b = await open(t, []);
    await a.publish(type, [message(type, 'one')]);
    await b.admin.deleteType(type);
    assert.ok(!(await b.admin.listTypes()).some((x) => x.type === type));
    await a.publish(type, [message(type, 'two')]); // a still believes the type exists: RabbitMQ returns it, a re-declares
    const sub = b.consume({
      types: [type],
      group: newGroup(),
      consumerId: 'c',
      offset: 'earliest',
      prefetch: 5,
      ackTimeoutMs: 60_000,
    });
    const got = await next(sub[Symbol.asyncIterator]());
    assert.equal(Buffer.from(got.message.body).toString(), 'two');
    await got.ack();
    await sub.close();
  });

  it('refuses partitions and retention changes with a way forward', async (t) => {
    const type = newType();
    const transport = await open(t, [type]);
    await transport.admin.ensureType(type);
    await assert.rejects(transport.admin.setPartitions(type, 3), { code: 'BUSBAR_ERR_UNSUPPORTED' });
    await assert.rejects(transport.admin.setPartitions(type, 0), { code: 'BUSBAR_ERR_PARTITIONS' });
    await assert.rejects(transport.admin.setRetention(type, { maxAgeMs: 1000 }), /rabbitmqctl set_policy/);
    await transport.admin.setRetention(type, {});
  });

  it('connects through the next endpoint when the first is down', async (t) => {
    const transport = await createRabbitTransport(config({}, ['127.0.0.1:1', endpoint]));
    t.after(() => transport.close());
    assert.deepEqual(transport.capabilities.replay, true);
    await transport.admin.listTypes();
  });

  it('reports bad credentials, unreachable brokers and unknown options clearly', async () => {
    await assert.rejects(createRabbitTransport(config({}, [endpoint], { password: 'wrong' })), {
      code: 'BUSBAR_ERR_AUTH',
    });
    await assert.rejects(
      createRabbitTransport(config({ connectTimeoutMs: 300 }, ['127.0.0.1:1'])),
      (error: unknown) => {
        const e = error as { code: string; retryable: boolean };
        return e.code === 'BUSBAR_ERR_CONNECTION' && e.retryable;
      },
    );
    await assert.rejects(createRabbitTransport(config({ prefetchCount: 3 })), { code: 'BUSBAR_ERR_INVALID_CONFIG' });
    await assert.rejects(createRabbitTransport(config({ heartbeat: 'often' })), /heartbeat/);
  });

  it('rides out a dropped connection: publishes and consumers carry on, unacked messages come back', async (t) => {
    const type = newType();
    const name = `busbar-test-${randomUUID()}`;
    const transport = await open(t, [type], { connectionName: name });
    const sub = transport.consume({
      types: [type],
      group: newGroup(),
      consumerId: 'c',
      offset: 'latest',
      prefetch: 5,
      ackTimeoutMs: 60_000,
    });
    await sub.ready;
    const iterator = sub[Symbol.asyncIterator]();
    await transport.publish(type, [message(type, 'before')]);
    const held = await next(iterator);
    assert.equal(held.attempt, 1);

    const { stdout } = await run('rabbitmqctl', ['list_connections', '--no-table-headers', 'pid', 'client_properties']);
    const line = stdout.split('\n').find((l) => l.includes(name));
    assert.ok(line, 'connection not found by its name');
    await run('rabbitmqctl', ['close_connection', line.split('\t')[0]!, 'busbar test: dropped connection']);

    await transport.publish(type, [message(type, 'after')]);
    const seen = new Map<string, number>();
    while (seen.size < 2) {
      const d = await next(iterator, 15_000);
      seen.set(Buffer.from(d.message.body).toString(), d.attempt);
      await d.ack();
    }
    assert.equal(seen.get('before'), 2, 'the unacked message did not come back as a second attempt');
    assert.equal(seen.get('after'), 1);
    await assert.rejects(held.ack(), { code: 'BUSBAR_ERR_ACK' });
    await sub.close();
  });

  // On a loaded machine each rabbitmqctl call (a fresh Erlang VM) took 35-120 s, the node's start more: the case's
  // bound is for a node that never answers, not for a slow one.
  it('a publish to a blocked broker fails with a retryable error at the publish timeout, then succeeds', {
    timeout: 900_000,
  }, async (t) => {
    // A memory alarm blocks every publishing connection of a node: it is raised on a private node (its own name,
    // port and cookie), never on the machine's RabbitMQ.
    const node = await PrivateRabbit.start();
    t.after(() => node.stop());
    const type = newType();
    const transport = await createRabbitTransport(config({ publishTimeoutMs: 1500 }, [`127.0.0.1:${node.port}`]));
    t.after(() => transport.close());
    await transport.publish(type, [message(type, 'declare the type first')]);
    await node.ctl('set_vm_memory_high_watermark', '0.0000001');
    // The command returns before the alarm reaches the connection (the broker tells each connection asynchronously):
    // publish only once the node reports the transport's connection 'blocking' (blocked at its next publish).
    const connectionStates = async () =>
      (await node.ctl('--quiet', 'list_connections', '--no-table-headers', 'state'))
        .split('\n')
        .map((line) => line.trim())
        .filter(Boolean);
    const underAlarm = (states: string[]) =>
      states.length > 0 && states.every((state) => state === 'blocking' || state === 'blocked');
    const states = await eventually(connectionStates, underAlarm, 60_000);
    assert.ok(underAlarm(states), `connection states under the alarm: ${states.join(', ')}`);
    const outcome = await Promise.race([
      transport.publish(type, [message(type, 'blocked')]).then(
        () => 'published',
        (error: { code: string; retryable: boolean; message: string }) => {
          assert.match(error.message, /RabbitMQ blocks publishing: low on memory/);
          return `${error.code} retryable=${error.retryable}`;
        },
      ),
      // Bounds only a publish that never gives up (the failure this case looks for); a refusal comes after 1.5 s.
      sleep(60_000).then(() => 'still waiting after 60 s'),
    ]);
    assert.equal(outcome, 'BUSBAR_ERR_PUBLISH retryable=true');
    await node.ctl('set_vm_memory_high_watermark', '0.4');
    // Clearing the alarm reaches the connection asynchronously too: publish once it runs again.
    const running = (states: string[]) => states.length > 0 && !underAlarm(states);
    const cleared = await eventually(connectionStates, running, 60_000);
    assert.ok(running(cleared), `connection states after the alarm: ${cleared.join(', ')}`);
    await transport.publish(type, [message(type, 'after the alarm')]);
  });

  it('merges split registry documents: last writer wins per type, groups unite', () => {
    const merged = mergeDocuments(
      [
        { types: { a: { at: 1, groups: { g1: 1 } }, b: { at: 5, groups: {} }, c: { at: 1, groups: {} } } },
        {
          types: {
            a: { at: 1, groups: { g2: 2 } },
            b: { at: 6, deleted: true, groups: {} },
            c: { at: 7, groups: { g: 7 } },
          },
        },
        { types: { c: { at: 3, deleted: true, groups: {} } } },
      ],
      10,
    );
    assert.deepEqual(merged.types.a, { at: 1, groups: { g1: 1, g2: 2 } });
    assert.equal(merged.types.b?.deleted, true);
    assert.deepEqual(merged.types.c, { at: 7, groups: { g: 7 } });
  });

  it('rounds delays up into a bounded set of delay queues', () => {
    assert.equal(delayBucket(0), 1);
    assert.equal(delayBucket(37), 37);
    assert.equal(delayBucket(1234), 1300);
    assert.equal(delayBucket(1500), 1500);
    assert.equal(delayBucket(98_001), 99_000);
  });
});
