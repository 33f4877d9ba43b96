/**
 * busbar's RabbitMQ messages against the CloudEvents AMQP binding's binary content mode (docs/wire/rabbitmq.md), on
 * the real broker with a raw amqplib client. The JS SDK has no AMQP binding, so the raw side reads and writes the
 * binding's mapping itself (every application property `cloudEvents:<name>` or `cloudEvents_<name>` is the attribute
 * or extension `<name>`, the `content_type` property the datacontenttype) and lets the SDK's CloudEvent validate it.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it, type TestContext } from 'node:test';
import amqp from 'amqplib';
import { CloudEvent } from 'cloudevents';
import { buildMessage } from '../../src/message/envelope.ts';
import type { Delivery, Transport } from '../../src/transport/contract.ts';
import createRabbitTransport from '../../src/transports/rabbitmq/index.ts';
import { busbar, lines } from '../cli/process.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const { host, port } = hostPort(BROKERS.rabbitmq, 5672);
const skip = await brokerSkipReason('rabbitmq', () => tcpReachable(host, port));
const name = (prefix: string) => `ce-${prefix}-${randomUUID().slice(0, 8)}`;

/** Headers of every kind: extensions, plain names, and names a reader would take for an attribute or bookkeeping. */
const HEADERS = {
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  tenant: 'acme',
  'x-tenant': 'acme corp',
  'cloudEvents:foo': 'not an attribute',
  cloudEvents_bar: 'not an attribute either',
  'x-delivery-count': 'not the broker count',
  'busbar-attempts': 'not the attempts',
  ['x'.repeat(300)]: 'a name longer than AMQP allows',
  id: 'not the id',
  'busbar-dlq-reason': 'handler threw',
};

/** A message's application properties read the binding's way, as a CloudEvent; also the other headers. */
function toEvent(message: amqp.Message): { event: CloudEvent<unknown>; plain: Record<string, unknown> } {
  const attributes: Record<string, unknown> = { datacontenttype: message.properties.contentType };
  const plain: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(message.properties.headers ?? {})) {
    if (key.startsWith('cloudEvents:') || key.startsWith('cloudEvents_')) attributes[key.slice(12)] = value;
    else plain[key] = value;
  }
  const event = new CloudEvent<unknown>({ ...attributes, data: message.content.toString() } as never);
  return { event, plain };
}

function extensionsOf(event: CloudEvent<unknown>): Record<string, unknown> {
  const core = new Set(['id', 'time', 'type', 'source', 'specversion', 'datacontenttype', 'data', 'data_base64']);
  return Object.fromEntries(Object.entries(event).filter(([k, v]) => !core.has(k) && v !== undefined));
}

describe('rabbitmq: CloudEvents AMQP binding, binary content mode', { skip, timeout: 120_000 }, () => {
  let raw: amqp.ChannelModel;
  before(async () => {
    raw = await amqp.connect(BROKERS.rabbitmq);
    raw.on('error', () => {});
  });
  after(() => raw?.close());

  async function connect(t: TestContext, types: string[]): Promise<Transport> {
    const transport = await createRabbitTransport({
      url: BROKERS.rabbitmq,
      endpoints: [`${host}:${port}`],
      username: 'guest',
      password: 'guest',
      options: {},
    });
    t.after(async () => {
      for (const type of types) await transport.admin.deleteType(type).catch(() => {});
      await transport.close();
    });
    for (const type of types) await transport.admin.ensureType(type);
    return transport;
  }

  /** A queue of the raw client's own, bound to the type before anything is published: what arrives there next. */
  async function tap(t: TestContext, type: string): Promise<() => Promise<amqp.ConsumeMessage>> {
    const channel = await raw.createChannel();
    t.after(() => channel.close().catch(() => {}));
    const { queue } = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(queue, 'busbar', type);
    return () =>
      new Promise((resolve) => {
        void channel.consume(queue, (m) => m && resolve(m), { noAck: true });
      });
  }

  async function take(t: TestContext, transport: Transport, type: string): Promise<Delivery> {
    const subscription = transport.consume({
      types: [type],
      group: name('g'),
      consumerId: name('c'),
      offset: 'earliest',
      prefetch: 4,
      ackTimeoutMs: 30_000,
    });
    t.after(() => subscription.close());
    const { value, done } = await subscription[Symbol.asyncIterator]().next();
    assert.ok(!done, 'the subscription ended');
    await value.ack();
    return value;
  }

  it('busbar writes a valid CloudEvent: extensions as cloudEvents: properties, other headers apart', async (t) => {
    const type = name('out');
    const transport = await connect(t, [type]);
    const next = await tap(t, type);
    const message = buildMessage(type, 'billing', { total: 7 }, { key: 'customer-7', headers: HEADERS });
    await transport.publish(type, [message]);
    const { event, plain } = toEvent(await next());
    assert.equal(event.validate(), true);
    assert.equal(event.id, message.id);
    assert.equal(event.type, type);
    assert.equal(event.source, 'billing');
    assert.equal(event.datacontenttype, 'application/json');
    assert.equal(event.partitionkey, 'customer-7');
    assert.equal(event.traceparent, HEADERS.traceparent);
    assert.equal(event.tenant, 'acme');
    assert.deepEqual(JSON.parse(String(event.busbarheaders)), {
      'cloudEvents:foo': HEADERS['cloudEvents:foo'],
      cloudEvents_bar: HEADERS.cloudEvents_bar,
      'x-delivery-count': HEADERS['x-delivery-count'],
      'busbar-attempts': HEADERS['busbar-attempts'],
      ['x'.repeat(300)]: 'a name longer than AMQP allows',
    });
    assert.equal(plain['x-tenant'], 'acme corp', 'a plain header, which the binding does not read as an attribute');
    assert.equal(plain.id, 'not the id');

    const back = await take(t, transport, type);
    assert.equal(back.attempt, 1);
    assert.deepEqual(back.message.headers, HEADERS);
  });

  it("a binding producer's extensions arrive as headers and go on unchanged when busbar sends it on", async (t) => {
    const first = name('in');
    const second = name('on');
    const transport = await connect(t, [first, second]);
    const sent = new CloudEvent({
      type: first,
      source: '/jms/producer',
      time: '2026-05-06T07:08:09.000Z',
      subject: 'order-7',
      traceparent: HEADERS.traceparent,
      correlationid: 'c-1',
      partitionkey: 'k-9',
      datacontenttype: 'application/json',
      data: '{"n":1}',
    });
    // The separator the binding prefers for JMS, and the native AMQP timestamp for `time` it allows.
    const headers: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(sent)) {
      if (key !== 'data' && key !== 'datacontenttype' && value !== undefined) headers[`cloudEvents_${key}`] = value;
    }
    headers.cloudEvents_time = { '!': 'timestamp', value: Date.parse(sent.time!) / 1000 };
    const channel = await raw.createConfirmChannel();
    t.after(() => channel.close().catch(() => {}));
    channel.publish('busbar', first, Buffer.from(sent.data as string), { contentType: 'application/json', headers });
    await channel.waitForConfirms();
    const got = await take(t, transport, first);
    assert.equal(got.message.id, sent.id);
    assert.equal(got.message.source, '/jms/producer');
    assert.equal(got.message.time, sent.time);
    assert.equal(got.message.key, 'k-9');
    assert.equal(got.message.contentType, 'application/json');
    assert.deepEqual(got.message.headers, {
      subject: 'order-7',
      traceparent: HEADERS.traceparent,
      correlationid: 'c-1',
    });

    const next = await tap(t, second);
    await transport.publish(second, [{ ...got.message, type: second }]);
    const { event } = toEvent(await next());
    assert.equal(event.validate(), true);
    assert.equal(event.id, sent.id);
    assert.deepEqual(extensionsOf(event), extensionsOf(sent));
    assert.equal(event.data, '{"n":1}');
  });

  it('reads what busbar 0.1 wrote: plain extension headers', async (t) => {
    const type = name('old');
    const transport = await connect(t, [type]);
    const channel = await raw.createConfirmChannel();
    t.after(() => channel.close().catch(() => {}));
    channel.publish('busbar', type, Buffer.from('old'), {
      contentType: 'text/plain',
      headers: {
        'cloudEvents:specversion': '1.0',
        'cloudEvents:id': 'old-1',
        'cloudEvents:source': 'busbar-0.1',
        'cloudEvents:type': type,
        'cloudEvents:time': '2026-05-06T07:08:09.000Z',
        traceparent: HEADERS.traceparent,
        tenant: 'acme',
      },
    });
    await channel.waitForConfirms();
    const got = await take(t, transport, type);
    assert.equal(got.message.id, 'old-1');
    assert.deepEqual(got.message.headers, { traceparent: HEADERS.traceparent, tenant: 'acme' });
  });

  it("through the busbar command: send writes the binding, receive prints a producer's extensions as headers", async (t) => {
    const type = name('cli');
    await connect(t, [type]);
    const next = await tap(t, type);
    const headers = ['traceparent=00-cli-01', 'cloudEvents:foo=x', 'x-tenant=acme corp'];
    const sent = await busbar([
      'send',
      type,
      'hello',
      ...headers.flatMap((h) => ['--header', h]),
      '--broker',
      BROKERS.rabbitmq,
    ]);
    assert.equal(sent.code, 0, sent.stderr);
    const { event, plain } = toEvent(await next());
    assert.equal(event.validate(), true);
    assert.equal(event.traceparent, '00-cli-01');
    assert.deepEqual(JSON.parse(String(event.busbarheaders)), { 'cloudEvents:foo': 'x' });
    assert.equal(plain['x-tenant'], 'acme corp');

    const channel = await raw.createConfirmChannel();
    t.after(() => channel.close().catch(() => {}));
    channel.publish('busbar', type, Buffer.from('from jms'), {
      contentType: 'text/plain',
      headers: {
        cloudEvents_specversion: '1.0',
        cloudEvents_id: 'jms-1',
        cloudEvents_source: '/jms',
        cloudEvents_type: type,
        cloudEvents_traceparent: '00-jms-01',
      },
    });
    await channel.waitForConfirms();
    const received = await busbar([
      'receive',
      type,
      '--group',
      name('g'),
      '--count',
      '2',
      '--json',
      '--broker',
      BROKERS.rabbitmq,
    ]);
    assert.equal(received.code, 0, received.stderr);
    const byBody = Object.fromEntries(
      lines(received)
        .map((l) => JSON.parse(l) as { body: string; headers: unknown })
        .map((m) => [m.body, m.headers]),
    );
    assert.deepEqual(byBody, {
      hello: { traceparent: '00-cli-01', 'cloudEvents:foo': 'x', 'x-tenant': 'acme corp' },
      'from jms': { traceparent: '00-jms-01' },
    });
  });
});
