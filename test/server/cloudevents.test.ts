/**
 * The CloudEvents HTTP binding on the real gateway over a socket, checked with the official SDK: binary, structured
 * and batch mode POSTs keep the event's id, source, time and extensions; pull (`?format=cloudevents` or
 * `Accept: application/cloudevents-batch+json`) and stream (`?format=cloudevents`) give events the SDK reads and
 * validates; JSON data stays byte-exact; what busbar cannot take is refused with a 400 that says why.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CloudEvent, HTTP } from 'cloudevents';
import { call, fresh, gateway } from './helpers.ts';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

function sdkEvent(type: string, extra: Record<string, unknown> = {}) {
  return new CloudEvent({
    type,
    source: '/orders/service',
    subject: 'order-7',
    traceparent: TRACEPARENT,
    partitionkey: 'customer-7',
    time: '2026-05-06T07:08:09.123Z',
    datacontenttype: 'application/json',
    data: { total: 42 },
    ...extra,
  });
}

/**
 * Pulls as CloudEvents until `count` arrived, reading each answer with the SDK (batch mode). With `count` > 1 it acks
 * by the receipts each event carries: later messages of the same key wait for that.
 */
async function pullEvents(url: string, type: string, group: string, how: 'query' | 'accept' = 'query', count = 1) {
  const query = how === 'query' ? '&format=cloudevents' : '';
  const headers: Record<string, string> = how === 'accept' ? { accept: 'application/cloudevents-batch+json' } : {};
  const events: CloudEvent<unknown>[] = [];
  while (events.length < count) {
    const answer = await call(url, `/v1/types/${type}/messages?group=${group}&wait=5000${query}`, { headers });
    assert.equal(answer.status, 200, answer.text);
    assert.match(answer.headers.get('content-type') ?? '', /^application\/cloudevents-batch\+json/);
    const got = HTTP.toEvent({ headers: Object.fromEntries(answer.headers), body: answer.text });
    assert.ok(Array.isArray(got) && got.length > 0, answer.text);
    events.push(...(got as CloudEvent<unknown>[]));
    if (count > 1) {
      const receipts = (got as CloudEvent<unknown>[]).map((e) => e.busbarreceipt);
      assert.equal((await call(url, '/v1/acks', { body: { receipts } })).status, 200);
    }
  }
  return { events };
}

function sameEvent(got: CloudEvent<unknown>, sent: CloudEvent<unknown>) {
  assert.equal(got.validate(), true);
  for (const name of ['id', 'source', 'type', 'time', 'subject', 'traceparent', 'partitionkey', 'datacontenttype']) {
    assert.equal(got[name as keyof CloudEvent<unknown>], sent[name as keyof CloudEvent<unknown>], name);
  }
  assert.deepEqual(got.data, sent.data);
}

test('a binary-mode POST keeps id, source, time and extensions; the pull gives the same event back', async (t) => {
  const { url } = await gateway(t);
  const type = fresh('bin');
  const sent = sdkEvent(type);
  const { headers, body } = HTTP.binary(sent);
  const posted = await call(url, `/v1/types/${type}/messages`, {
    body: String(body),
    headers: { ...(headers as Record<string, string>), 'busbar-header-x-tenant': 'acme' },
  });
  assert.equal(posted.status, 200, posted.text);
  assert.deepEqual(posted.json, { ids: [sent.id] });
  const { events } = await pullEvents(url, type, 'g1');
  assert.equal(events.length, 1);
  sameEvent(events[0]!, sent);
  assert.deepEqual(JSON.parse(String(events[0]!.busbarheaders)), { 'x-tenant': 'acme' });
  assert.equal(events[0]!.busbarattempt, '1');
  const acked = await call(url, '/v1/acks', { body: { receipts: [events[0]!.busbarreceipt] } });
  assert.equal(acked.status, 200, acked.text);

  const plain = await call(url, `/v1/types/${type}/messages?group=g2&wait=5000`);
  const [message] = plain.json.messages;
  assert.equal(message.id, sent.id);
  assert.equal(message.source, '/orders/service');
  assert.equal(message.time, '2026-05-06T07:08:09.123Z');
  assert.equal(message.key, 'customer-7');
  assert.deepEqual(message.headers, { subject: 'order-7', traceparent: TRACEPARENT, 'x-tenant': 'acme' });
  assert.deepEqual(message.body, { total: 42 });
});

test('structured and batch mode POSTs publish the events, not an opaque body', async (t) => {
  const { url } = await gateway(t);
  const type = fresh('str');
  const one = sdkEvent(type);
  const structured = HTTP.structured(one);
  const posted = await call(url, `/v1/types/${type}/messages`, {
    body: String(structured.body),
    headers: structured.headers as Record<string, string>,
  });
  assert.equal(posted.status, 200, posted.text);
  assert.deepEqual(posted.json, { ids: [one.id] });
  const two = sdkEvent(type, { subject: 'order-8', data: 'plain text', datacontenttype: 'text/plain' });
  const three = sdkEvent(type, { subject: 'order-9', data: new Uint8Array([0, 1, 255]), datacontenttype: undefined });
  const batch = await call(url, `/v1/types/${type}/messages`, {
    body: `[${two.toString()},${three.toString()}]`,
    headers: { 'content-type': 'application/cloudevents-batch+json' },
  });
  assert.equal(batch.status, 200, batch.text);
  assert.deepEqual(batch.json, { ids: [two.id, three.id] });
  const { events } = await pullEvents(url, type, 'g', 'accept', 3);
  assert.equal(events.length, 3);
  sameEvent(events[0]!, one);
  sameEvent(events[1]!, two);
  assert.equal(events[2]!.validate(), true);
  assert.equal(events[2]!.datacontenttype, 'application/octet-stream');
  assert.deepEqual([...(events[2]!.data as Uint8Array)], [0, 1, 255]);

  // A pulled event posted again is a new message: its delivery state (receipt, attempt) does not become headers.
  const again = HTTP.structured(events[0]!.cloneWith({ id: 'again-1' }));
  const reposted = await call(url, `/v1/types/${type}/messages`, {
    body: String(again.body),
    headers: again.headers as Record<string, string>,
  });
  assert.equal(reposted.status, 200, reposted.text);
  const [last] = (await pullEvents(url, type, 'g', 'query')).events;
  assert.equal(last!.id, 'again-1');
  assert.deepEqual(
    Object.keys(last!).filter((k) => k.startsWith('busbar')),
    ['busbarattempt', 'busbarreceipt', 'busbarleaseexpiresat'],
  );
  assert.equal(last!.busbarattempt, '1');
});

test('JSON data stays byte-exact from a structured POST to a CloudEvents pull', async (t) => {
  const { url } = await gateway(t);
  const type = fresh('exact');
  const data = '{"id": 12345678901234567890, "big": 1e400, "dup": 1, "dup": 2}';
  // Strings holding quotes, brackets and escapes, a member named with an escape, and data that is not an object.
  const tricky = '[ "a\\"}]", {"k": "\\\\"}, -0.0e-0, true, null ]';
  const odd = '"\\u0041\\"data\\": 1"';
  const events = [
    `{"specversion":"1.0","id":"e-1","source":"py","type":"${type}","data": ${data} }`,
    `{"d\\u0061ta_x":"{\\"data\\":0}","specversion":"1.0","id":"e-2","source":"py","type":"${type}",\n"data":${tricky}}`,
    `{"specversion":"1.0","id":"e-3","source":"py","type":"${type}","datacontenttype":"application/json","data":${odd}}`,
  ];
  const posted = await call(url, `/v1/types/${type}/messages`, {
    body: `[${events.join(' , ')}]`,
    headers: { 'content-type': 'application/cloudevents-batch+json; charset=utf-8' },
  });
  assert.equal(posted.status, 200, posted.text);
  const plain = await call(url, `/v1/types/${type}/messages?group=g2&wait=5000&autoAck=true&max=3`);
  assert.equal(plain.json.messages.length, 3, plain.text);
  const [first, second, third] = plain.json.messages;
  assert.deepEqual(second.headers, { data_x: '{"data":0}' });
  assert.deepEqual(second.body, ['a"}]', { k: '\\' }, 0, true, null]);
  assert.equal(third.body, 'A"data": 1');
  assert.equal(first.id, 'e-1');
  const exact = await call(url, `/v1/types/${type}/messages?group=g3&wait=5000&autoAck=true&max=3&format=cloudevents`);
  for (const raw of [data, tricky, odd]) assert.ok(exact.text.includes(`"data":${raw}}`), `${raw} in ${exact.text}`);
});

test('the stream sends structured events the SDK reads, each with its receipt', async (t) => {
  const { url } = await gateway(t);
  const type = fresh('sse');
  const sent = sdkEvent(type, { data: { lines: 'one\ntwo' } });
  const structured = HTTP.structured(sent);
  // Pretty-printed data: the stream must split it over several `data:` lines and keep it intact.
  const body = String(structured.body).replace('"data":{"lines":"one\\ntwo"}', '"data":{\n  "lines": "one\\ntwo"\n}');
  const posted = await call(url, `/v1/types/${type}/messages`, { body, headers: structured.headers as never });
  assert.equal(posted.status, 200, posted.text);
  const controller = new AbortController();
  t.after(() => controller.abort());
  const response = await fetch(`${url}/v1/types/${type}/stream?group=g&format=cloudevents`, {
    signal: controller.signal,
  });
  assert.equal(response.status, 200);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  while (!buffer.includes('event: message') || !buffer.slice(buffer.indexOf('event: message')).includes('\n\n')) {
    const { value, done } = await reader.read();
    assert.ok(!done, `the stream ended: ${buffer}`);
    buffer += decoder.decode(value, { stream: true });
  }
  const block = buffer.slice(buffer.indexOf('event: message')).split('\n\n')[0]!;
  const json = block
    .split('\n')
    .filter((line) => line.startsWith('data: '))
    .map((line) => line.slice(6))
    .join('\n');
  assert.ok(json.includes('"data":{\n  "lines": "one\\ntwo"\n}'), json);
  const got = new CloudEvent(JSON.parse(json));
  sameEvent(got, sent);
  const acked = await call(url, '/v1/acks', { body: { receipts: [got.busbarreceipt] } });
  assert.equal(acked.status, 200, acked.text);
});

test('what busbar cannot take is refused with a 400 that says why', async (t) => {
  const { url } = await gateway(t);
  const type = fresh('bad');
  const binary = (headers: Record<string, string>) =>
    call(url, `/v1/types/${type}/messages`, {
      body: 'x',
      headers: { 'content-type': 'text/plain', 'ce-specversion': '1.0', 'ce-id': 'a', 'ce-source': 's', ...headers },
    });
  const half = await call(url, `/v1/types/${type}/messages`, {
    body: 'x',
    headers: { 'content-type': 'text/plain', 'ce-id': 'a', 'ce-source': 's' },
  });
  assert.equal(half.status, 400);
  assert.match(half.json.error.message, /header ce-\w+ without ce-specversion: add 'ce-specversion: 1.0'/);
  const old = await binary({ 'ce-specversion': '0.3' });
  assert.equal(old.status, 400);
  assert.match(old.json.error.message, /specversion "0.3" is not supported: busbar speaks CloudEvents 1.0 only/);
  const other = await binary({ 'ce-type': 'com.example.other' });
  assert.equal(other.status, 400);
  assert.match(other.json.error.message, /post it to \/v1\/types\/com.example.other\/messages/);
  const when = await binary({ 'ce-time': 'not a time' });
  assert.equal(when.status, 400);
  assert.match(when.json.error.message, /time "not a time" is not an RFC 3339 timestamp/);
  const offset = await binary({ 'ce-time': '2026-05-06T09:08:09+02:00', 'ce-id': 'with-offset' });
  assert.equal(offset.status, 200, offset.text);
  const pulled = await call(url, `/v1/types/${type}/messages?group=g&wait=5000&autoAck=true`);
  assert.equal(pulled.json.messages[0].time, '2026-05-06T07:08:09Z');
  const structured = await call(url, `/v1/types/${type}/messages`, {
    body: '{"specversion":"1.0","id":"a","source":"s","type":"t2"}',
    headers: { 'content-type': 'application/cloudevents+json' },
  });
  assert.equal(structured.status, 400);
  assert.match(structured.json.error.message, /type "t2" differs from the message type/);
  const empty = await call(url, `/v1/types/${type}/messages`, {
    body: '[]',
    headers: { 'content-type': 'application/cloudevents-batch+json' },
  });
  assert.equal(empty.status, 400);
  assert.match(empty.json.error.message, /is a JSON array of events/);
});
