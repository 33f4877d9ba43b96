/**
 * A plain NATS client that follows only docs/wire/nats.md can publish into the bus and read from it: these tests use
 * the raw client library (no busbar code on the raw side) against the real server.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import { MessageBus } from '../../src/index.ts';
import { freshGroup, freshType, NATS_URL, natsConfig, skipReason } from './nats-helpers.ts';

const skip = await skipReason();

/** The documented name mapping, written out again as a plain client would. */
const escapeToken = (name: string) => name.replaceAll('_', '_5F').replaceAll('.', '_2E');
const streamOf = (type: string) => `BUSBAR_${escapeToken(type)}`;
const subjectOf = (type: string) => `busbar.${type.endsWith('.') ? `${type}~` : type}`;

describe('nats wire mapping, from a plain client', { skip }, () => {
  test('a bare body published by a plain client reaches the bus with its attributes filled in', async (t) => {
    const bus = await MessageBus.connect({ broker: NATS_URL });
    const nc = await connect({ servers: [...natsConfig().endpoints] });
    const type = `${freshType()}.orders_v1`;
    t.after(async () => {
      await bus.admin().deregisterMessageType(type);
      await Promise.all([bus.close(), nc.close()]);
    });
    const consumer = bus.consumer({ consumerGroup: freshGroup(), messageTypes: [type], offset: 'earliest' });
    await consumer.ready;

    const js = jetstream(nc);
    const before = Date.now();
    await js.publish(subjectOf(type), new Uint8Array([1, 2, 3]));
    const h = headers();
    h.set('Content-Type', 'application/json');
    h.set('Nats-Msg-Id', 'order-42');
    h.set('x-tenant', 'acme');
    await js.publish(subjectOf(type), JSON.stringify({ total: 42 }), { headers: h });

    const bare = await consumer.receive({ timeout: 30_000 });
    assert.ok(bare, 'the bare message did not arrive');
    assert.deepEqual([...bare.raw], [1, 2, 3]);
    assert.equal(bare.type, type);
    assert.ok(bare.id.length > 0);
    assert.equal(bare.source, 'unknown');
    assert.equal(bare.contentType, 'application/octet-stream');
    assert.ok(Date.parse(bare.time) >= before - 1000, `time ${bare.time}`);
    assert.equal(bare.attempt, 1);
    assert.deepEqual(bare.headers, {});
    await bare.ack();

    const withHeaders = await consumer.receive({ timeout: 30_000 });
    assert.ok(withHeaders);
    assert.equal(withHeaders.id, 'order-42');
    assert.equal(withHeaders.contentType, 'application/json');
    assert.deepEqual(withHeaders.body, { total: 42 });
    assert.deepEqual(withHeaders.headers, { 'x-tenant': 'acme' });
    await withHeaders.ack();
    await consumer.close();
  });

  test('a plain client reads what the bus sent: body untouched, attributes in ce- headers', async (t) => {
    const bus = await MessageBus.connect({ broker: NATS_URL });
    const nc = await connect({ servers: [...natsConfig().endpoints] });
    const type = freshType();
    t.after(async () => {
      await bus.admin().deregisterMessageType(type);
      await Promise.all([bus.close(), nc.close()]);
    });
    await bus.send(
      type,
      { hello: 'wörld' },
      {
        key: 'customer 7',
        headers: { 'x-trace': 'a b%c', 'x-utf': 'héllo wörld', 'x-lines': 'one\r\ntwo', 'x-pad': '  padded ' },
      },
    );

    const jsm = await jetstreamManager(nc);
    const group = `plain_${freshGroup()}`;
    await jsm.consumers.add(streamOf(type), {
      durable_name: escapeToken(group),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: subjectOf(type),
    });
    const consumer = await jetstream(nc).consumers.get(streamOf(type), escapeToken(group));
    const m = await consumer.next({ expires: 5000 });
    assert.ok(m, 'the plain client got nothing');
    assert.equal(m.subject, subjectOf(type));
    assert.equal(new TextDecoder().decode(m.data), '{"hello":"wörld"}');
    const h = m.headers!;
    const ce = (name: string) => h.get(`ce-${name}`);
    assert.equal(ce('specversion'), '1.0');
    assert.equal(ce('type'), type);
    assert.equal(ce('datacontenttype'), 'application/json');
    assert.equal(ce('partitionkey'), 'customer 7');
    assert.match(ce('id'), /^[0-9a-f-]{36}$/);
    assert.equal(h.get('Nats-Msg-Id'), ce('id'));
    assert.ok(!Number.isNaN(Date.parse(ce('time'))));
    assert.ok(ce('source').length > 0);
    // Values travel as they are; only what NATS cannot carry is percent-encoded, and named in busbar-encoded.
    assert.equal(h.get('x-trace'), 'a b%c');
    assert.equal(h.get('x-utf'), 'héllo wörld');
    assert.equal(h.get('busbar-encoded'), 'x-lines x-pad');
    assert.equal(decodeURIComponent(h.get('x-lines')), 'one\r\ntwo');
    assert.equal(decodeURIComponent(h.get('x-pad')), '  padded ');
    assert.equal(m.info.deliveryCount, 1);
    m.ack();
    await m.ackAck().catch(() => {});
  });

  test("a plain client's header values arrive exactly as sent; only values it names in busbar-encoded are decoded", async (t) => {
    const bus = await MessageBus.connect({ broker: NATS_URL });
    const nc = await connect({ servers: [...natsConfig().endpoints] });
    const type = freshType();
    t.after(async () => {
      await bus.admin().deregisterMessageType(type);
      await Promise.all([bus.close(), nc.close()]);
    });
    const consumer = bus.consumer({ consumerGroup: freshGroup(), messageTypes: [type] });
    t.after(() => consumer.close());
    await consumer.ready;
    const h = headers();
    h.set('ce-id', 'order%2042');
    h.set('Content-Type', 'text/plain; charset=utf-8');
    h.set('x-pct', 'a%20b');
    h.set('x-utf', 'héllo wörld');
    h.set('x-quoted', '"q"');
    h.set('x-bad', '100%');
    h.set('x-enc', 'one%0Atwo');
    h.set('busbar-encoded', 'x-enc');
    await jetstream(nc).publish(subjectOf(type), 'plain', { headers: h });
    const got = await consumer.receive({ timeout: 30_000 });
    assert.ok(got, 'the plain message did not arrive');
    assert.equal(got.id, 'order%2042');
    assert.equal(got.contentType, 'text/plain; charset=utf-8');
    assert.equal(got.body, 'plain');
    assert.deepEqual(got.headers, {
      'x-pct': 'a%20b',
      'x-utf': 'héllo wörld',
      'x-quoted': '"q"',
      'x-bad': '100%',
      'x-enc': 'one\ntwo',
    });
    await got.ack();

    // And through the bus and back: every value, awkward or not, arrives as it was sent.
    const awkward = {
      'x-pct': 'a%20b',
      'x-lines': 'one\r\ntwo',
      'x-pad': ' p ',
      'busbar-encoded': 'mine',
      'x-empty': '',
    };
    await bus.send(type, 'round trip', { key: ' k%41 ', headers: awkward });
    const back = await consumer.receive({ timeout: 30_000 });
    assert.ok(back);
    assert.equal(back.key, ' k%41 ');
    assert.deepEqual(back.headers, awkward);
    assert.equal(back.contentType, 'text/plain; charset=utf-8');
    await back.ack();
  });

  test('a group a plain client made without a subject filter still gets large messages whole, once', async (t) => {
    const bus = await MessageBus.connect({ broker: NATS_URL });
    const nc = await connect({ servers: [...natsConfig().endpoints] });
    const type = freshType();
    t.after(async () => {
      await bus.admin().deregisterMessageType(type);
      await Promise.all([bus.close(), nc.close()]);
    });
    await bus.admin().registerMessageType(type);
    const group = freshGroup();
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add(streamOf(type), {
      durable_name: escapeToken(group),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
    });
    const big = new Uint8Array(2 * 1024 * 1024).map((_, i) => i % 251);
    await bus.send(type, big);
    const consumer = bus.consumer({ consumerGroup: group, messageTypes: [type] });
    const m = await consumer.receive({ timeout: 30_000 });
    assert.ok(m && Buffer.from(m.raw).equals(Buffer.from(big)), 'the large message did not arrive whole');
    await m.ack();
    assert.equal(await consumer.receive({ timeout: 1000 }), null, 'a part was delivered as a message');
    await consumer.close();
  });
});
