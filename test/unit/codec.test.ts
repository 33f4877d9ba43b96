import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeBody, encodeBody } from '../../src/message/codec.ts';
import { completeEnvelope } from '../../src/message/envelope.ts';
import { uuidv7 } from '../../src/transport/uuid.ts';

test('codecs are chosen by the body and content type, and bytes stay untouched', () => {
  const bytes = new Uint8Array([0, 255, 10]);
  assert.equal(encodeBody(bytes).bytes, bytes);
  assert.equal(encodeBody(bytes).contentType, 'application/octet-stream');
  assert.equal(encodeBody('hé').contentType, 'text/plain; charset=utf-8');
  assert.deepEqual([...encodeBody('hé').bytes], [104, 195, 169]);
  assert.equal(encodeBody({ a: 1 }).contentType, 'application/json');
  assert.equal(encodeBody('{"a":1}', 'application/json').bytes.byteLength, 7, 'a string with a JSON type is JSON text');
  assert.deepEqual(decodeBody(encodeBody({ a: [1] }).bytes, 'application/cloudevents+json'), { a: [1] });
  assert.equal(decodeBody(new TextEncoder().encode('x'), 'text/csv'), 'x');
  assert.throws(() => encodeBody(undefined), { code: 'BUSBAR_ERR_ENCODE' });
  assert.throws(() => encodeBody(10n), { code: 'BUSBAR_ERR_ENCODE' });
  assert.throws(() => encodeBody({ a: 1 }, 'text/plain'), { code: 'BUSBAR_ERR_ENCODE' });
  assert.throws(() => decodeBody(new TextEncoder().encode('{'), 'application/json'), { code: 'BUSBAR_ERR_DECODE' });
});

test('UUIDv7 ids are well formed and sort by creation', () => {
  const ids = Array.from({ length: 5000 }, () => uuidv7());
  assert.equal(new Set(ids).size, ids.length);
  assert.deepEqual([...ids].sort(), ids);
  for (const id of ids.slice(0, 10))
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test('a bare message from a plain client gets its missing attributes filled', () => {
  const message = completeEnvelope({ body: new Uint8Array([1]) }, 'orders', 'broker-id-7');
  assert.equal(message.id, 'broker-id-7');
  assert.equal(message.type, 'orders');
  assert.equal(message.contentType, 'application/octet-stream');
  assert.ok(!Number.isNaN(Date.parse(message.time)));
  assert.match(completeEnvelope({ body: new Uint8Array() }, 't').id, /^[0-9a-f-]{36}$/);
});
