/**
 * 10,000+ malformed or hostile requests (bad JSON, wrong types, huge and empty bodies, odd type names, unicode, path
 * tricks, bad receipts) against a real gateway, with valid publishes interleaved. Every hostile answer must be a 4xx
 * JSON error with a BUSBAR_ERR_* code, the gateway must stay up, and every accepted message must arrive exactly once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { call, EMBEDDED, fresh, gateway, pullAll } from './helpers.ts';

const HOSTILE = Number(process.env.BUSBAR_FUZZ_COUNT ?? 10_000);
const CONCURRENCY = 16;
const SEED = Number(process.env.BUSBAR_FUZZ_SEED ?? 20_240_601);

/** mulberry32: small, seeded, reproducible. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Hostile {
  method: string;
  path: string;
  body?: string | Uint8Array;
  headers?: Record<string, string>;
}

const ODD_NAMES = [
  'ü',
  '日本',
  '😀',
  '..',
  'a..b',
  '.hidden',
  '-dash',
  'a b',
  'x'.repeat(201),
  '%00',
  'a%2Fb',
  '%2E%2E',
  'a%0Ab',
  "o'neil",
  'a;b',
  '*',
  'a$b',
  '%E2%80%AE',
  '\u202e',
];

const BAD_JSON = [
  '{',
  '{"messages":',
  '{"messages":[',
  '[1,',
  '{"receipts":[}',
  'nul',
  '{"a":1,}',
  "{'a':1}",
  '\u0000',
];

function hostileRequest(type: string, realReceipt: string, next: () => number): Hostile {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
  const json = (value: unknown) => JSON.stringify(value);
  const jsonHeaders = { 'content-type': 'application/json' };
  const truncated = (text: string) => text.slice(0, 1 + Math.floor(next() * (text.length - 1)));
  const validBatch = json({ messages: [{ body: { a: 'ü' }, key: 'k', headers: { h: 'v' } }, { body: 'text' }] });
  const tampered = () => {
    const i = Math.floor(next() * realReceipt.length);
    const c = realReceipt[i] === 'A' ? 'B' : 'A';
    return realReceipt.slice(0, i) + c + realReceipt.slice(i + 1);
  };
  const badItems: unknown[] = [
    {},
    { body: 1, key: {} },
    { body: 1, key: 5 },
    { body: 1, key: '' },
    { body: 1, headers: { a: 1 } },
    { body: 1, headers: { 'bad name': 'x' } },
    { body: 1, headers: { a: 'line\nbreak' } },
    { body: 1, headers: [] },
    { body: 1, encoding: 'hex' },
    { body: 5, encoding: 'base64' },
    { body: '!!notbase64', encoding: 'base64' },
    { body: 1, extra: true },
    { body: { x: 1 }, contentType: 'text/plain' },
    { body: 'not json', contentType: 'application/json' },
    { body: 1, contentType: 'nonsense' },
    { body: 1, contentType: 5 },
    { body: 1, id: 'has space' },
    { body: 1, id: '' },
    'just a string',
    null,
    [1],
  ];
  const makers: (() => Hostile)[] = [
    () => ({ method: 'POST', path: `/v1/types/${type}/messages`, body: truncated(validBatch), headers: jsonHeaders }),
    () => ({ method: 'POST', path: `/v1/types/${type}/messages`, body: pick(BAD_JSON), headers: jsonHeaders }),
    () => ({
      method: 'POST',
      path: `/v1/types/${type}/messages`,
      body: json({ messages: pick(badItems) }),
      headers: jsonHeaders,
    }),
    () => ({
      method: 'POST',
      path: `/v1/types/${type}/messages`,
      body: json({ messages: [pick(badItems)] }),
      headers: jsonHeaders,
    }),
    () => ({ method: 'POST', path: `/v1/types/${type}/messages`, body: json({ messages: [] }), headers: jsonHeaders }),
    () => ({
      method: 'POST',
      path: `/v1/types/${type}/messages`,
      body: json({ messages: [{ body: 1 }], more: 1 }),
      headers: jsonHeaders,
    }),
    () => ({ method: 'POST', path: `/v1/types/${type}/messages`, body: '', headers: jsonHeaders }),
    () => ({ method: 'POST', path: `/v1/types/${type}/messages` }),
    () => ({
      method: 'POST',
      path: `/v1/types/${type}/messages`,
      body: new Uint8Array(70_000 + Math.floor(next() * 10_000)),
      headers: { 'content-type': 'application/octet-stream' },
    }),
    () => ({
      method: 'POST',
      path: `/v1/types/${type}/messages`,
      body: json({ messages: Array.from({ length: 101 }, () => ({ body: 1 })) }),
      headers: jsonHeaders,
    }),
    () => ({
      method: 'POST',
      path: `/v1/types/${type}/messages`,
      body: validBatch,
      headers: { ...jsonHeaders, 'idempotency-key': 'k'.repeat(201) },
    }),
    () => ({ method: 'POST', path: `/v1/types/${pick(ODD_NAMES)}/messages`, body: validBatch, headers: jsonHeaders }),
    () => ({ method: 'GET', path: `/v1/types/${pick(ODD_NAMES)}/messages?group=g` }),
    () => ({ method: 'GET', path: `/v1/types/${type}/messages?group=${encodeURIComponent(pick(ODD_NAMES))}` }),
    () => ({
      method: 'GET',
      path: `/v1/types/${type}/messages?${pick([
        '',
        'group=',
        'max=5',
        'group=g&max=0',
        'group=g&max=-1',
        'group=g&max=ten',
        'group=g&max=1.5',
        'group=g&max=100000',
        'group=g&wait=-5',
        'group=g&wait=1e9',
        'group=g&wait=99999999',
        'group=g&lease=0',
        'group=g&lease=99999999999',
        'group=g&autoAck=yes',
        'group=g&offset=middle',
        'group=g&unknown=1',
        'group=a&group=b',
        'group=g&max=1&max=2',
      ])}`,
    }),
    () => ({
      method: 'GET',
      path: `/v1/types/${type}/stream?${pick(['', 'group=%F0%9F%98%80', 'group=g&inflight=0', 'group=g&lease=-1'])}`,
    }),
    () => ({
      method: 'POST',
      path: pick(['/v1/acks', '/v1/nacks']),
      body: pick([
        json({ receipts: [] }),
        json({ receipts: 'x' }),
        json({ receipts: [1] }),
        json({ receipts: [''] }),
        json({ receipts: ['garbage'] }),
        json({ receipts: ['a.b.c'] }),
        json({ receipts: [`${'A'.repeat(40)}.${'B'.repeat(43)}`] }),
        json({ receipts: [tampered()] }),
        json({ receipts: [realReceipt], group: 'not-the-group' }),
        json({ receipts: ['x'.repeat(3000)] }),
        json({ receipts: [realReceipt], extra: 1 }),
        json({}),
        json([]),
        json(null),
        json('receipts'),
        pick(BAD_JSON),
        '',
      ]),
      headers: jsonHeaders,
    }),
    () => ({
      method: 'POST',
      path: '/v1/nacks',
      body: json({ receipts: [realReceipt], delayMs: pick([-1, 'soon', 1e12, 1.5]) }),
      headers: jsonHeaders,
    }),
    () => ({
      method: 'POST',
      path: '/v1/acks',
      body: json({ receipts: [realReceipt] }),
      headers: { 'content-type': 'text/plain' },
    }),
    () => ({
      method: 'PUT',
      path: `/v1/types/${type}`,
      body: json(
        pick([
          { partitions: 0 },
          { partitions: 'two' },
          { partitions: 1.5 },
          { nope: 1 },
          { expireTimeMs: -1 },
          [],
          'x',
        ]),
      ),
      headers: jsonHeaders,
    }),
    () => ({ method: pick(['PUT', 'DELETE', 'POST']), path: `/v1/types/${pick(ODD_NAMES)}${pick(['', '/purge'])}` }),
    () => ({
      method: pick(['GET', 'POST', 'DELETE', 'PATCH', 'PUT']),
      path: pick([
        '/console/', // `GET /` is the web console (200): what is beside it is not
        '/console/app.ts',
        '/v1',
        '/v1/',
        '/v2/types',
        '/V1/types',
        '/v1//types',
        `/v1/types/${type}/messages/extra`,
        '/v1/types/%2e%2e/%2e%2e/etc/passwd',
        '/v1/types/..%2f..%2fetc/messages?group=g',
        '/MessageBus/message/',
        '/MessageBus/message',
        '/%ZZ',
        '/v1/acks/..',
        `/v1/types/${type}/${'x'.repeat(3000)}`,
      ]),
    }),
    () => ({ method: 'PATCH', path: `/v1/types/${type}/messages`, body: validBatch, headers: jsonHeaders }),
    () => ({ method: 'DELETE', path: '/v1/acks' }),
    () => ({
      method: 'POST',
      path: `/MessageBus/message/${pick([type, ...ODD_NAMES])}`,
      body: pick([
        json({ messages: 'x' }),
        json({ messages: [] }),
        json({}),
        json({ messages: [1], x: 1 }),
        pick(BAD_JSON),
        '',
      ]),
      headers: jsonHeaders,
    }),
    () => ({
      method: 'GET',
      path: `/MessageBus/message/${type}${pick(['', '?consumer_group=', '?consumer_group=%C3%BC', '?consumer_group=g&max=0', '?group=g'])}`,
    }),
  ];
  return pick(makers)();
}

test(`fuzz: ${HOSTILE} hostile requests all answer 4xx JSON; accepted messages arrive exactly once`, async (t) => {
  const { url } = await gateway(t, EMBEDDED, { limits: { bodyBytes: 64 * 1024, batchMessages: 100 } });
  const type = fresh('fuzz');
  const next = random(SEED);

  // One real receipt (for a message of another group) to tamper with and misuse.
  await call(url, `/v1/types/${type}/messages`, { body: { messages: [{ body: 'seed' }] } });
  const [seed] = await pullAll(url, `/v1/types/${type}/messages?group=seed&lease=600000&wait=2000`, 1);
  const realReceipt: string = seed.receipt;

  const accepted = new Set<string>();
  const failures: string[] = [];
  let sent = 0;
  let validSent = 0;
  const worker = async () => {
    while (sent < HOSTILE) {
      sent++;
      if (sent % 50 === 0) {
        const body = `valid-${validSent++}`;
        const answer = await call(url, `/v1/types/${type}/messages`, {
          body,
          headers: { 'content-type': 'text/plain' },
        });
        if (answer.status !== 200) failures.push(`valid publish answered ${answer.status}: ${answer.text}`);
        else accepted.add(body);
      }
      const h = hostileRequest(type, realReceipt, next);
      let answer: Awaited<ReturnType<typeof call>>;
      try {
        answer = await call(url, h.path, { method: h.method, body: h.body, headers: h.headers });
      } catch (error) {
        failures.push(`${h.method} ${h.path}: no answer (${(error as Error).message})`);
        continue;
      }
      const ok =
        answer.status >= 400 &&
        answer.status < 500 &&
        /^application\/json/.test(answer.headers.get('content-type') ?? '') &&
        typeof answer.json?.error?.code === 'string' &&
        answer.json.error.code.startsWith('BUSBAR_ERR_') &&
        typeof answer.json.error.message === 'string';
      if (!ok && failures.length < 20) {
        const shown = typeof h.body === 'string' ? h.body.slice(0, 200) : `<${h.body?.length ?? 0} bytes>`;
        failures.push(`${h.method} ${h.path.slice(0, 200)} ${shown} -> ${answer.status} ${answer.text.slice(0, 300)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  assert.deepEqual(failures, [], `seed ${SEED}`);
  assert.equal((await call(url, '/healthz')).status, 200, 'the gateway is still up');

  // Read the group back as a client does: pull a batch, ack it, pull the next, until the gateway has nothing more.
  const bodies: string[] = [];
  for (let empty = 0; empty < 3; ) {
    const answer = await call(url, `/v1/types/${type}/messages?group=check&max=100&wait=1000`);
    assert.equal(answer.status, 200, answer.text);
    const messages: { body: string; receipt: string }[] = answer.json.messages;
    if (messages.length === 0) {
      empty++;
      continue;
    }
    bodies.push(...messages.map((m) => m.body).filter((b) => b !== 'seed'));
    const ack = await call(url, '/v1/acks', { body: { receipts: messages.map((m) => m.receipt) } });
    assert.equal(ack.status, 200, ack.text);
  }
  assert.equal(bodies.length, new Set(bodies).size, 'no accepted message was duplicated');
  assert.deepEqual(new Set(bodies), accepted, 'every accepted message arrived, and nothing else');
});
