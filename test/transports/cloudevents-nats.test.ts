/**
 * busbar's NATS messages against the CloudEvents NATS binding's binary content mode (docs/wire/nats.md), on the real
 * server with a raw @nats-io client. The JS SDK has no NATS binding, so the raw side reads and writes headers the way
 * the binding says and the Go SDK does (every `ce-<name>` header is the attribute or extension `<name>`, a
 * `content-type` header the datacontenttype) and lets the SDK's CloudEvent validate the result.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type MsgHdrs, type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { CloudEvent } from 'cloudevents';
import { buildMessage } from '../../src/message/envelope.ts';
import type { Delivery, Transport } from '../../src/transport/contract.ts';
import { busbar, lines } from '../cli/process.ts';
import { freshGroup, NATS_URL, natsConfig, open, skipReason, tempType } from './nats-helpers.ts';

const skip = await skipReason();

const escapeToken = (name: string) => name.replaceAll('_', '_5F').replaceAll('.', '_2E');
const streamOf = (type: string) => `BUSBAR_${escapeToken(type)}`;
const subjectOf = (type: string) => `busbar.${type}`;

/** Headers of every kind: extensions, plain names, and names a NATS reader would take for something else. */
const HEADERS = {
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  tenant: 'acme',
  'x-tenant': 'acme corp',
  Traceparent: 'not an extension name',
  'ce-foo': 'not an attribute',
  'Content-Type': 'not the content type',
  'Nats-Expected-Stream': 'not for JetStream',
  'busbar-encoded': 'not the marker',
  'x tenant': 'a name NATS cannot carry',
  'x:tenant': 'nor this one',
  id: 'not the id',
  'busbar-dlq-reason': 'handler threw',
};

async function raw(t: TestContext): Promise<NatsConnection> {
  const nc = await connect({ servers: [...natsConfig().endpoints] });
  t.after(() => nc.close());
  return nc;
}

/** The newest message on a type's subject, as a CloudEvent read the binding's way; also its raw headers. */
async function rawEvent(nc: NatsConnection, type: string) {
  const jsm = await jetstreamManager(nc);
  const stored = await jsm.streams.getMessage(streamOf(type), { last_by_subj: subjectOf(type) });
  assert.ok(stored?.header, 'no message with headers on the subject');
  const attributes: Record<string, string> = {};
  const plain: Record<string, string> = {};
  for (const [name, values] of stored.header as MsgHdrs) {
    if (name.toLowerCase().startsWith('ce-')) attributes[name.slice(3)] = values[0]!;
    else if (name.toLowerCase() === 'content-type') attributes.datacontenttype = values[0]!;
    else plain[name] = values[0]!;
  }
  const event = new CloudEvent<unknown>({ ...attributes, data: new TextDecoder().decode(stored.data) } as never);
  return { event, plain };
}

function subscribe(t: TestContext, transport: Transport, type: string): AsyncIterator<Delivery> {
  const subscription = transport.consume({
    types: [type],
    group: freshGroup(),
    consumerId: freshGroup(),
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

/** The extensions a CloudEvent carries beyond the core attributes. */
function extensionsOf(event: CloudEvent<unknown>): Record<string, unknown> {
  const core = new Set(['id', 'time', 'type', 'source', 'specversion', 'datacontenttype', 'data', 'data_base64']);
  return Object.fromEntries(Object.entries(event).filter(([k, v]) => !core.has(k) && v !== undefined));
}

describe('nats: CloudEvents NATS binding, binary content mode', { skip, timeout: 120_000 }, () => {
  it('busbar writes a valid CloudEvent: extensions as ce- headers, other headers never read as attributes', async (t) => {
    const transport = await open(t);
    const type = tempType(transport);
    await transport.admin.ensureType(type);
    const nc = await raw(t);
    const message = buildMessage(type, 'billing', { total: 7 }, { key: 'customer-7', headers: HEADERS });
    await transport.publish(type, [message]);
    const { event, plain } = await rawEvent(nc, type);
    assert.equal(event.validate(), true);
    assert.equal(event.id, message.id);
    assert.equal(event.type, type);
    assert.equal(event.source, 'billing');
    assert.equal(event.datacontenttype, 'application/json');
    assert.equal(event.partitionkey, 'customer-7');
    assert.equal(event.traceparent, HEADERS.traceparent);
    assert.equal(event.tenant, 'acme');
    assert.deepEqual(JSON.parse(String(event.busbarheaders)), {
      'ce-foo': HEADERS['ce-foo'],
      'Content-Type': HEADERS['Content-Type'],
      'Nats-Expected-Stream': HEADERS['Nats-Expected-Stream'],
      'busbar-encoded': HEADERS['busbar-encoded'],
      'x tenant': HEADERS['x tenant'],
      'x:tenant': HEADERS['x:tenant'],
    });
    assert.equal(plain['x-tenant'], 'acme corp', 'a plain header, its value as it was');
    assert.equal(plain.Traceparent, HEADERS.Traceparent);
    assert.equal(plain.id, 'not the id');

    const back = await take(subscribe(t, transport, type));
    assert.deepEqual(back.message.headers, HEADERS);
  });

  it("a binding producer's extensions arrive as headers and go on unchanged when busbar sends it on", async (t) => {
    const transport = await open(t);
    const first = tempType(transport);
    const second = tempType(transport);
    await transport.admin.ensureType(first);
    await transport.admin.ensureType(second);
    const nc = await raw(t);
    const sent = new CloudEvent({
      type: first,
      source: '/go/producer',
      subject: 'order-7',
      traceparent: HEADERS.traceparent,
      correlationid: 'c-1',
      partitionkey: 'k-9',
      datacontenttype: 'application/json',
      data: '{"n":1}',
    });
    // As the Go SDK's NATS JetStream binding writes it: every attribute and extension as ce-<name>.
    const h = natsHeaders();
    for (const [name, value] of Object.entries(sent)) {
      if (name !== 'data' && value !== undefined) h.set(`ce-${name}`, String(value));
    }
    await jetstream(nc).publish(subjectOf(first), sent.data as string, { headers: h });
    const got = await take(subscribe(t, transport, first));
    assert.equal(got.message.id, sent.id);
    assert.equal(got.message.source, '/go/producer');
    assert.equal(got.message.time, sent.time);
    assert.equal(got.message.key, 'k-9');
    assert.equal(got.message.contentType, 'application/json');
    assert.deepEqual(got.message.headers, {
      subject: 'order-7',
      traceparent: HEADERS.traceparent,
      correlationid: 'c-1',
    });

    await transport.publish(second, [{ ...got.message, type: second }]);
    const { event } = await rawEvent(nc, second);
    assert.equal(event.validate(), true);
    assert.equal(event.id, sent.id);
    assert.deepEqual(extensionsOf(event), extensionsOf(sent));
    assert.equal(event.data, '{"n":1}');
  });

  it('reads what busbar wrote before: escaped ce-ce-* / ce-Nats-* headers and plain extensions', async (t) => {
    const transport = await open(t);
    const type = tempType(transport);
    await transport.admin.ensureType(type);
    const nc = await raw(t);
    const h = natsHeaders();
    h.set('ce-specversion', '1.0');
    h.set('ce-id', 'old-1');
    h.set('ce-source', 'busbar-0.1');
    h.set('ce-type', type);
    h.set('ce-time', '2026-05-06T07:08:09.000Z');
    h.set('ce-datacontenttype', 'text/plain');
    h.set('traceparent', HEADERS.traceparent);
    h.set('ce-ce-foo', 'x');
    h.set('ce-Nats-Foo', 'y');
    h.set('ce-busbar-encoded', 'z');
    await jetstream(nc).publish(subjectOf(type), 'old', { headers: h });
    const got = await take(subscribe(t, transport, type));
    assert.deepEqual(got.message.headers, {
      traceparent: HEADERS.traceparent,
      'ce-foo': 'x',
      'Nats-Foo': 'y',
      'busbar-encoded': 'z',
    });
  });

  it("through the busbar command: send writes the binding, receive prints a producer's extensions as headers", async (t) => {
    const transport = await open(t);
    const type = tempType(transport);
    await transport.admin.ensureType(type);
    const nc = await raw(t);
    const headers = ['traceparent=00-cli-01', 'ce-foo=x', 'x-tenant=acme corp'];
    const sent = await busbar([
      'send',
      type,
      'hello',
      ...headers.flatMap((h) => ['--header', h]),
      '--broker',
      NATS_URL,
    ]);
    assert.equal(sent.code, 0, sent.stderr);
    const { event, plain } = await rawEvent(nc, type);
    assert.equal(event.validate(), true);
    assert.equal(event.traceparent, '00-cli-01');
    assert.deepEqual(JSON.parse(String(event.busbarheaders)), { 'ce-foo': 'x' });
    assert.equal(plain['x-tenant'], 'acme corp');

    const h = natsHeaders();
    for (const [k, v] of Object.entries({
      specversion: '1.0',
      id: 'go-1',
      source: '/go',
      type,
      datacontenttype: 'text/plain',
      traceparent: '00-go-01',
    })) {
      h.set(`ce-${k}`, v);
    }
    await jetstream(nc).publish(subjectOf(type), 'from go', { headers: h });
    const received = await busbar([
      'receive',
      type,
      '--group',
      freshGroup(),
      '--count',
      '2',
      '--json',
      '--broker',
      NATS_URL,
    ]);
    assert.equal(received.code, 0, received.stderr);
    const byBody = Object.fromEntries(
      lines(received)
        .map((l) => JSON.parse(l) as { body: string; headers: unknown })
        .map((m) => [m.body, m.headers]),
    );
    assert.deepEqual(byBody, {
      hello: { traceparent: '00-cli-01', 'ce-foo': 'x', 'x-tenant': 'acme corp' },
      'from go': { traceparent: '00-go-01' },
    });
  });
});
