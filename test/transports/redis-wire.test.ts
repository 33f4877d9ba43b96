/**
 * docs/wire/redis.md, followed by a plain client: raw node-redis commands only (XADD, XGROUP, XREADGROUP, XACK),
 * talking to a MessageBus on the same Redis.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { RESP_TYPES } from 'redis';
import { MessageBus, message } from '../../src/index.ts';
import { REDIS_URL, rawClient, skipReason } from './redis-helpers.ts';

let skip: string | undefined;

type Entries = [string, [Buffer, Buffer[]][]][] | null;

describe('redis wire mapping: a plain client joins the bus', { concurrency: 1 }, () => {
  before(async () => {
    skip = await skipReason();
  });

  it('a bare body XADDed by a plain client reaches the bus with every attribute filled in', async (t) => {
    if (skip) return t.skip(skip);
    const bus = await MessageBus.connect({ broker: REDIS_URL });
    const type = `wire-${randomUUID()}`;
    t.after(async () => {
      await bus.admin().deregisterMessageType(type);
      await bus.close();
    });
    const raw = await rawClient(t);
    const consumer = bus.consumer({ consumerGroup: `g-${randomUUID()}`, messageTypes: [type], offset: 'earliest' });
    await consumer.ready;

    const body = Buffer.from([0, 1, 2, 250, 255, 10, 13]);
    const entryId = await raw.sendCommand<string>(['XADD', `busbar:{${type}}`, '*', 'data', body]);
    await raw.sendCommand([
      'XADD',
      `busbar:{${type}}`,
      '*',
      'ce_id',
      'order-17',
      'ce_source',
      'python-shop',
      'content-type',
      'application/json',
      'ce_partitionkey',
      'customer-9',
      'ce_traceparent',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      'x-tenant',
      'acme',
      'data',
      '{"total":12.5}',
    ]);

    const bare = await consumer.receive({ timeout: 30_000 });
    assert.ok(bare, 'the bare message never arrived');
    assert.ok(Buffer.from(bare.raw).equals(body));
    assert.equal(bare.id, entryId);
    assert.equal(bare.type, type);
    assert.equal(bare.source, 'unknown');
    assert.equal(bare.contentType, 'application/octet-stream');
    assert.equal(bare.time, new Date(Number(entryId.split('-')[0])).toISOString());
    assert.equal(bare.attempt, 1);
    await bare.ack();

    const full = await consumer.receive({ timeout: 30_000 });
    assert.ok(full, 'the message with attributes never arrived');
    assert.equal(full.id, 'order-17');
    assert.equal(full.source, 'python-shop');
    assert.equal(full.key, 'customer-9');
    assert.deepEqual(full.body, { total: 12.5 });
    assert.deepEqual(full.headers, {
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      'x-tenant': 'acme',
    });
    await full.ack();
  });

  it('what the bus publishes, a plain client reads: body bytes untouched, attributes in ce_* fields', async (t) => {
    if (skip) return t.skip(skip);
    const bus = await MessageBus.connect({ broker: REDIS_URL });
    const type = `wire-${randomUUID()}`;
    t.after(async () => {
      await bus.admin().deregisterMessageType(type);
      await bus.close();
    });
    const raw = await rawClient(t);
    const stream = `busbar:{${type}}`;
    const group = `plain-${randomUUID()}`;
    await raw.sendCommand(['XGROUP', 'CREATE', stream, group, '$', 'MKSTREAM']);

    const producer = bus.producer({ producerId: 'shop-frontend', messageType: type });
    await producer.send([message({ item: 'bus ticket', price: 2.9 }, { key: 'k-1', headers: { 'x-request': 'r-1' } })]);

    const reply = await raw.sendCommand<Entries>(
      ['XREADGROUP', 'GROUP', group, 'python-1', 'COUNT', '10', 'BLOCK', '5000', 'STREAMS', stream, '>'],
      { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } },
    );
    assert.ok(reply, 'the plain client read nothing');
    const [[, entries]] = reply as [[string, [Buffer, Buffer[]][]]];
    assert.equal(entries.length, 1);
    const [entryId, flat] = entries[0]!;
    const fields = new Map<string, Buffer>();
    for (let i = 0; i < flat.length; i += 2) fields.set(flat[i]!.toString(), flat[i + 1]!);
    const text = (name: string) => fields.get(name)?.toString();
    assert.match(text('ce_id')!, /^[0-9a-f-]{36}$/);
    assert.equal(text('ce_type'), type);
    assert.equal(text('ce_source'), 'shop-frontend');
    assert.equal(text('ce_specversion'), '1.0');
    assert.ok(!Number.isNaN(Date.parse(text('ce_time')!)));
    assert.equal(text('content-type'), 'application/json');
    assert.equal(text('ce_partitionkey'), 'k-1');
    assert.equal(text('x-request'), 'r-1');
    assert.deepEqual(JSON.parse(text('data')!), { item: 'bus ticket', price: 2.9 });
    assert.equal(await raw.sendCommand(['XACK', stream, group, entryId]), 1);
  });
});
