/**
 * busbar's Kafka and MQTT messages checked with the official CloudEvents SDK (`cloudevents`), on the real brokers:
 * what busbar writes is a valid CloudEvent whose extensions the SDK sees; what the SDK writes arrives with its
 * extensions and goes on unchanged when busbar sends it on; and a producer's odd `time` or `specversion` is
 * normalised or recorded (every transport: cloudevents-time.test.ts). See docs/wire/kafka.md and docs/wire/mqtt.md.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, it, type TestContext } from 'node:test';
import { Consumer, type Message, Producer } from '@platformatic/kafka';
import { CloudEvent, Kafka, MQTT } from 'cloudevents';
import mqtt from 'mqtt';
import { buildMessage, RECEIVED_HEADERS } from '../../src/message/envelope.ts';
import { normaliseTime } from '../../src/transport/cloudevents.ts';
import type { Delivery, Subscription, Transport } from '../../src/transport/contract.ts';
import createKafkaTransport from '../../src/transports/kafka/index.ts';
import createMqttTransport from '../../src/transports/mqtt/index.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const name = (prefix: string) => `ce-${prefix}-${randomUUID().slice(0, 8)}`;

/** Headers of every kind: extensions, names that are not attribute names, and names that look like attributes. */
const HEADERS = {
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  tenant: 'acme',
  'x-tenant': 'acme',
  ce_foo: 'not an attribute',
  'content-type': 'not the content type',
  id: 'not the id',
  'busbar-dlq-reason': 'handler threw',
};

function subscribe(t: TestContext, transport: Transport, type: string): AsyncIterator<Delivery> {
  const subscription: Subscription = transport.consume({
    types: [type],
    group: name('g'),
    consumerId: name('c'),
    offset: 'earliest',
    prefetch: 4,
    ackTimeoutMs: 30_000,
  });
  t.after(() => subscription.close());
  return subscription[Symbol.asyncIterator]();
}

async function take(iterator: AsyncIterator<Delivery>): Promise<Delivery> {
  const { value, done } = await iterator.next();
  assert.ok(!done, 'the subscription ended');
  await value.ack();
  return value;
}

/** The SDK's own extensions: what CloudEvent keeps beyond the core attributes. */
function extensionsOf(event: CloudEvent<unknown>): Record<string, unknown> {
  const core = new Set(['id', 'time', 'type', 'source', 'specversion', 'datacontenttype', 'data', 'data_base64']);
  return Object.fromEntries(Object.entries(event).filter(([k, v]) => !core.has(k) && v !== undefined));
}

/** Without the undefined values the SDK's serializers emit for attributes an event does not have. */
function defined<T extends object>(object: T): Record<string, string> {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined)) as Record<string, string>;
}

describe('kafka: CloudEvents Kafka binding, checked with the SDK', { timeout: 120_000 }, () => {
  const { host, port } = hostPort(BROKERS.kafka, 9092);
  const endpoint = `${host}:${port}`;
  let skip: string | undefined;
  before(async () => {
    skip = await brokerSkipReason('kafka', () => tcpReachable(host, port));
  });

  async function connect(t: TestContext): Promise<Transport> {
    const transport = await createKafkaTransport({ url: BROKERS.kafka, endpoints: [endpoint], options: {} });
    t.after(() => transport.close());
    return transport;
  }

  /** The first record of a topic, as the SDK's KafkaMessage (string headers). */
  async function rawRecord(t: TestContext, topic: string) {
    const consumer = new Consumer({ groupId: name('raw'), clientId: 'raw', bootstrapBrokers: [endpoint] });
    t.after(() => consumer.close(true));
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false });
    const record = await new Promise<Message>((resolve) => stream.once('data', resolve));
    const headers = Object.fromEntries([...record.headers].map(([k, v]) => [k.toString(), v.toString()]));
    return { key: record.key?.toString(), value: record.value, headers, body: record.value };
  }

  async function produce(t: TestContext, topic: string, headers: Record<string, string>, value: Buffer, key?: string) {
    const producer = new Producer({ clientId: 'sdk', bootstrapBrokers: [endpoint] });
    t.after(() => producer.close());
    await producer.send({
      messages: [
        {
          topic,
          key: key === undefined ? undefined : Buffer.from(key),
          value,
          headers: new Map(Object.entries(headers).map(([k, v]) => [Buffer.from(k), Buffer.from(v)])),
        },
      ],
    });
  }

  it('busbar writes a valid CloudEvent: extensions as ce_ headers, other headers kept apart', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('out');
    await transport.admin.ensureType(type);
    const message = buildMessage(type, 'billing', { total: 7 }, { key: 'customer-7', headers: HEADERS });
    await transport.publish(type, [message]);
    const record = await rawRecord(t, type);
    const event = Kafka.toEvent(record) as CloudEvent<unknown>;
    assert.equal(event.validate(), true);
    assert.equal(event.id, message.id);
    assert.equal(event.type, type);
    assert.equal(event.source, 'billing');
    assert.equal(event.datacontenttype, 'application/json');
    assert.deepEqual(event.data, { total: 7 });
    assert.equal(event.partitionkey, 'customer-7');
    assert.equal(event.traceparent, HEADERS.traceparent);
    assert.equal(event.tenant, 'acme');
    assert.deepEqual(JSON.parse(String(event.busbarheaders)), {
      ce_foo: HEADERS.ce_foo,
      'content-type': HEADERS['content-type'],
    });
    assert.equal(record.headers['x-tenant'], 'acme', 'a plain Kafka header, which the binding does not read');
    assert.equal(record.headers.id, 'not the id');

    const back = await take(subscribe(t, transport, type));
    assert.deepEqual(back.message.headers, HEADERS);
  });

  it('an SDK event arrives with its extensions and goes on unchanged when busbar sends it on', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const first = name('sdk');
    const second = name('on');
    await transport.admin.ensureType(first);
    await transport.admin.ensureType(second);
    const sent = new CloudEvent({
      type: first,
      source: '/sdk/producer',
      subject: 'order-7',
      traceparent: HEADERS.traceparent,
      correlationid: 'c-1',
      partitionkey: 'k-9',
      datacontenttype: 'application/json',
      data: { n: 1 },
    });
    const binary = Kafka.binary(sent);
    await produce(t, first, defined(binary.headers), Buffer.from(JSON.stringify(binary.value)), String(binary.key));
    const got = await take(subscribe(t, transport, first));
    assert.equal(got.message.id, sent.id);
    assert.equal(got.message.source, '/sdk/producer');
    assert.equal(got.message.time, sent.time);
    assert.equal(got.message.key, 'k-9');
    assert.equal(got.message.contentType, 'application/json');
    assert.deepEqual(got.message.headers, {
      subject: 'order-7',
      traceparent: HEADERS.traceparent,
      correlationid: 'c-1',
    });

    await transport.publish(second, [{ ...got.message, type: second }]);
    const onward = Kafka.toEvent(await rawRecord(t, second)) as CloudEvent<unknown>;
    assert.equal(onward.validate(), true);
    assert.deepEqual(extensionsOf(onward), extensionsOf(sent));
    assert.equal(onward.id, sent.id);
    assert.deepEqual(onward.data, { n: 1 });
  });

  it('records a specversion other than 1.0 and a time that is not RFC 3339; writes offsets in Z form', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('odd');
    await transport.admin.ensureType(type);
    const base = { ce_id: 'odd-1', ce_source: 'old-producer', ce_type: type, 'content-type': 'text/plain' };
    await produce(t, type, { ...base, ce_specversion: '0.3', ce_time: 'not-a-time' }, Buffer.from('a'));
    await produce(
      t,
      type,
      { ...base, ce_specversion: '1.0', ce_time: '2026-05-06T07:08:09.5+01:00' },
      Buffer.from('b'),
    );
    const iterator = subscribe(t, transport, type);
    const odd = await take(iterator);
    assert.equal(odd.message.headers[RECEIVED_HEADERS.invalidTime], 'not-a-time');
    assert.equal(odd.message.headers[RECEIVED_HEADERS.originalSpecversion], '0.3');
    assert.equal(normaliseTime(odd.message.time), odd.message.time, 'the receipt time replaced it');
    const offset = await take(iterator);
    assert.equal(offset.message.time, '2026-05-06T06:08:09.5Z');
    assert.deepEqual(offset.message.headers, {});
  });

  it('reads what busbar 0.1 wrote: escaped ce_ce_* and ce_content-type headers, plain extensions', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('old');
    await transport.admin.ensureType(type);
    const old = {
      ce_id: 'old-1',
      ce_source: 'busbar-0.1',
      ce_type: type,
      ce_specversion: '1.0',
      ce_time: '2026-05-06T07:08:09.000Z',
      'content-type': 'text/plain',
      traceparent: HEADERS.traceparent,
      ce_ce_foo: 'x',
      'ce_content-type': 'y',
    };
    await produce(t, type, old, Buffer.from('old'));
    const got = await take(subscribe(t, transport, type));
    assert.deepEqual(got.message.headers, { traceparent: HEADERS.traceparent, ce_foo: 'x', 'content-type': 'y' });
  });
});

describe('mqtt: CloudEvents MQTT 5 binding, checked with the SDK', { timeout: 120_000 }, () => {
  const url = BROKERS.mqtt;
  let skip: string | undefined;
  before(async () => {
    const { host, port } = hostPort(url, 1883);
    skip = await brokerSkipReason('mqtt', () => tcpReachable(host, port));
  });

  async function connect(t: TestContext): Promise<Transport> {
    const transport = await createMqttTransport({ url, endpoints: [], options: { sessionExpirySec: '600' } });
    t.after(() => transport.close());
    return transport;
  }

  /** Once `topic` is subscribed by a plain client: the SDK's reading of its next PUBLISH, to come. */
  async function listen(t: TestContext, topic: string): Promise<{ next: Promise<CloudEvent<unknown>> }> {
    const client = await mqtt.connectAsync(url, { protocolVersion: 5 });
    t.after(() => client.endAsync());
    const arrived = new Promise<mqtt.IPublishPacket>((resolve) =>
      client.once('message', (_topic, _payload, packet) => resolve(packet)),
    );
    await client.subscribeAsync(topic, { qos: 1 });
    const next = arrived.then((packet) => {
      const contentType = packet.properties?.contentType;
      const text = Buffer.from(packet.payload).toString('utf8');
      const message = {
        PUBLISH: { 'Content Type': contentType },
        headers: packet.properties?.userProperties ?? {},
        body: contentType?.startsWith('application/json') ? JSON.parse(text) : text,
      };
      return MQTT.toEvent(message as never) as CloudEvent<unknown>;
    });
    return { next };
  }

  async function group(t: TestContext, transport: Transport, type: string) {
    const group = name('g');
    const subscription = transport.consume({
      types: [type],
      group,
      consumerId: name('c'),
      offset: 'latest',
      prefetch: 4,
      ackTimeoutMs: 30_000,
    });
    t.after(() => subscription.close());
    await subscription.ready;
    return { group, deliveries: subscription[Symbol.asyncIterator]() };
  }

  async function next(deliveries: AsyncIterator<Delivery>): Promise<Delivery> {
    const { value, done } = await deliveries.next();
    assert.ok(!done, 'the subscription ended');
    return value;
  }

  it('busbar writes a valid CloudEvent: extensions as user properties, other headers in busbarheaders', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('out');
    const { deliveries } = await group(t, transport, type);
    const event = await listen(t, `busbar/${type}`);
    const message = buildMessage(type, 'billing', { total: 7 }, { key: 'customer-7', headers: HEADERS });
    await transport.publish(type, [message]);
    const read = await event.next;
    assert.equal(read.validate(), true);
    assert.equal(read.id, message.id);
    assert.equal(read.source, 'billing');
    assert.equal(read.datacontenttype, 'application/json');
    assert.deepEqual(read.data, { total: 7 });
    assert.equal(read.partitionkey, 'customer-7');
    assert.equal(read.traceparent, HEADERS.traceparent);
    assert.equal(read.tenant, 'acme');
    const { traceparent: _t, tenant: _n, ...packed } = HEADERS;
    assert.deepEqual(JSON.parse(String(read.busbarheaders)), packed);
    const got = await next(deliveries);
    assert.deepEqual(got.message.headers, HEADERS);
    await got.ack();
  });

  it('a redelivered copy stays a valid CloudEvent: attempt and not-before under valid names', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('redo');
    const { group: g, deliveries } = await group(t, transport, type);
    const copy = await listen(t, `busbar/_group/${g}/${type}`);
    await transport.publish(type, [buildMessage(type, 'billing', 'retry me', { headers: { 'x-tenant': 'acme' } })]);
    const first = await next(deliveries);
    await first.nack({ delayMs: 10 });
    const read = await copy.next;
    assert.equal(read.validate(), true);
    assert.equal(read.busbarattempt, '2');
    assert.ok(Number(read.busbarnotbefore) > 0);
    const again = await next(deliveries);
    assert.equal(again.attempt, 2);
    assert.deepEqual(again.message.headers, { 'x-tenant': 'acme' });
    await again.ack();
  });

  it('an SDK event arrives with its extensions and goes on unchanged when busbar sends it on', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const first = name('sdk');
    const second = name('on');
    const { deliveries } = await group(t, transport, first);
    const sent = new CloudEvent({
      type: first,
      source: '/sdk/producer',
      subject: 'order-7',
      traceparent: HEADERS.traceparent,
      correlationid: 'c-1',
      partitionkey: 'k-9',
      datacontenttype: 'application/json',
      data: { n: 1 },
    });
    const binary = MQTT.binary(sent);
    const client = await mqtt.connectAsync(url, { protocolVersion: 5 });
    t.after(() => client.endAsync());
    await client.publishAsync(`busbar/${first}`, JSON.stringify(binary.body), {
      qos: 1,
      properties: { contentType: binary.PUBLISH?.['Content Type'], userProperties: defined(binary.headers) },
    });
    const got = await next(deliveries);
    await got.ack();
    assert.equal(got.message.id, sent.id);
    assert.equal(got.message.time, sent.time);
    assert.equal(got.message.key, 'k-9');
    assert.deepEqual(got.message.headers, {
      subject: 'order-7',
      traceparent: HEADERS.traceparent,
      correlationid: 'c-1',
    });

    const onward = await listen(t, `busbar/${second}`);
    await transport.publish(second, [{ ...got.message, type: second }]);
    const read = await onward.next;
    assert.equal(read.validate(), true);
    assert.equal(read.id, sent.id);
    assert.deepEqual(extensionsOf(read), extensionsOf(sent));
  });

  it("reads other producers' properties: any name, old busbar names, odd specversion and time", async (t) => {
    if (skip) return t.skip(skip);
    const transport = await connect(t);
    const type = name('odd');
    const { deliveries } = await group(t, transport, type);
    const client = await mqtt.connectAsync(url, { protocolVersion: 5 });
    t.after(() => client.endAsync());
    const user = { specversion: '0.3', id: 'odd-1', time: 'not-a-time', 'x-tenant': 'acme', 'busbar-attempt': '3' };
    await client.publishAsync(`busbar/${type}`, 'a', { qos: 1, properties: { userProperties: user } });
    const odd = await next(deliveries);
    await odd.ack();
    assert.equal(odd.attempt, 3);
    assert.deepEqual(odd.message.headers, {
      'x-tenant': 'acme',
      [RECEIVED_HEADERS.invalidTime]: 'not-a-time',
      [RECEIVED_HEADERS.originalSpecversion]: '0.3',
    });
    assert.equal(normaliseTime(odd.message.time), odd.message.time);
    await client.publishAsync(`busbar/${type}`, 'b', {
      qos: 1,
      properties: { userProperties: { specversion: '1.0', time: '2026-05-06T07:08:09+02:00' } },
    });
    const offset = await next(deliveries);
    await offset.ack();
    assert.equal(offset.message.time, '2026-05-06T05:08:09Z');
  });
});
