/**
 * Bearer tokens and scopes, refusing to listen beyond loopback without tokens, every limit's 4xx, JSON errors
 * for malformed HTTP, TLS, and a clean shutdown that returns leased messages.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { isBusError } from '../../src/errors.ts';
import { startServer } from '../../src/server/index.ts';
import { call, EMBEDDED, fresh, gateway, pullAll } from './helpers.ts';

const ADMIN = 'admin-token-0123456789abcdef';
const WRITER = 'writer-token-0123456789abcdef';
const READER = 'reader-token-0123456789abcdef';
const tokens = [
  { name: 'ops', token: ADMIN, admin: ['*'], publish: ['*'], consume: ['*'] },
  { name: 'writer', token: WRITER, publish: ['orders.*'] },
  { name: 'reader', token: READER, consume: ['orders.*'] },
];

test('tokens: 401 without or with an unknown token, 403 without the scope, per-type patterns', async (t) => {
  const { url } = await gateway(t, EMBEDDED, { tokens });
  const type = fresh('orders.eu');
  const noToken = await call(url, `/v1/types/${type}/messages`, { body: { messages: [{ body: 1 }] } });
  assert.equal(noToken.status, 401);
  assert.equal(noToken.json.error.code, 'BUSBAR_ERR_UNAUTHORIZED');
  assert.match(noToken.headers.get('www-authenticate') ?? '', /^Bearer/);
  const unknown = await call(url, '/v1/types', { token: 'not-a-real-token-at-all' });
  assert.equal(unknown.status, 401);
  const published = await call(url, `/v1/types/${type}/messages`, { body: { messages: [{ body: 1 }] }, token: WRITER });
  assert.equal(published.status, 200, published.text);
  const elsewhere = await call(url, '/v1/types/billing/messages', { body: { messages: [{ body: 1 }] }, token: WRITER });
  assert.equal(elsewhere.status, 403);
  assert.equal(elsewhere.json.error.code, 'BUSBAR_ERR_FORBIDDEN');
  const writerPull = await call(url, `/v1/types/${type}/messages?group=g`, { token: WRITER });
  assert.equal(writerPull.status, 403);
  const [m] = await pullAll(url, `/v1/types/${type}/messages?group=g&wait=2000`, 1, 10, READER);
  assert.equal(m.body, 1);
  const writerAck = await call(url, '/v1/acks', { body: { receipts: [m.receipt] }, token: WRITER });
  assert.equal(writerAck.status, 403, 'acking needs the consume scope of the receipt type');
  const readerAck = await call(url, '/v1/acks', { body: { receipts: [m.receipt] }, token: READER });
  assert.equal(readerAck.status, 200);
  const readerDelete = await call(url, `/v1/types/${type}`, { method: 'DELETE', token: READER });
  assert.equal(readerDelete.status, 403);
  const cortx = await call(url, `/MessageBus/message/${type}`, { body: { messages: ['x'] }, token: READER });
  assert.equal(cortx.status, 403);
  const listed = await call(url, '/v1/types', { token: READER });
  assert.ok(listed.json.types.every((x: { type: string }) => x.type.startsWith('orders.')));
  assert.equal((await call(url, '/metrics')).status, 401);
  assert.equal((await call(url, '/healthz')).status, 200, 'health needs no token');
  assert.equal((await call(url, '/openapi.json')).status, 200);
});

test('refuses to listen beyond loopback without tokens unless insecure', async () => {
  await assert.rejects(
    startServer({ config: 'memory:', host: '0.0.0.0', port: 0 }),
    (error) => isBusError(error, 'BUSBAR_ERR_INVALID_CONFIG') && /--insecure/.test(error.message),
  );
  const server = await startServer({ config: 'memory:', host: '0.0.0.0', port: 0, insecure: true });
  await server.close();
  const guarded = await startServer({ config: 'memory:', host: '0.0.0.0', port: 0, tokens });
  await guarded.close();
  await assert.rejects(
    startServer({ config: { broker: 'memory:', server: { tokens: [{ name: 'x', token: 'short' }] } }, port: 0 }),
    (error) => isBusError(error, 'BUSBAR_ERR_INVALID_CONFIG') && /tokens\[0\]\.token/.test(error.message),
  );
});

test('limits: body, batch, header size, wait, max and open streams each answer a clear 4xx', async (t) => {
  const { url } = await gateway(t, EMBEDDED, {
    limits: { bodyBytes: 4096, batchMessages: 10, headerBytes: 4096, streams: 1 },
  });
  const type = fresh('t');
  const big = await call(url, `/v1/types/${type}/messages`, {
    body: 'x'.repeat(5000),
    headers: { 'content-type': 'text/plain' },
  });
  assert.equal(big.status, 413);
  assert.equal(big.json.error.code, 'BUSBAR_ERR_PAYLOAD_TOO_LARGE');
  const batch = await call(url, `/v1/types/${type}/messages`, {
    body: { messages: Array.from({ length: 11 }, () => ({ body: 1 })) },
  });
  assert.equal(batch.status, 413);
  assert.match(batch.json.error.message, /limit of 10/);
  const headers = await call(url, '/healthz', { headers: { 'x-padding': 'y'.repeat(6000) } });
  assert.equal(headers.status, 431);
  assert.equal(headers.json.error.code, 'BUSBAR_ERR_PAYLOAD_TOO_LARGE');
  const wait = await call(url, `/v1/types/${type}/messages?group=g&wait=999999`);
  assert.equal(wait.status, 400);
  assert.match(wait.json.error.message, /wait/);
  const max = await call(url, `/v1/types/${type}/messages?group=g&max=0`);
  assert.equal(max.status, 400);
  // Nothing above was published: register the type, or the streams would be a 404 for an unknown type.
  assert.equal((await call(url, `/v1/types/${type}`, { method: 'PUT', body: {} })).status, 200);
  const controller = new AbortController();
  t.after(() => controller.abort());
  const first = await fetch(`${url}/v1/types/${type}/stream?group=g`, { signal: controller.signal });
  assert.equal(first.status, 200);
  const second = await call(url, `/v1/types/${type}/stream?group=g`);
  assert.equal(second.status, 429);
  assert.equal(second.json.error.code, 'BUSBAR_ERR_LIMIT');
  assert.ok(second.headers.get('retry-after'));
  controller.abort();
});

test('a group holding prefetch unsettled leases gets a 429 that says to settle them, and nothing is lost', async (t) => {
  const { url } = await gateway(t, EMBEDDED, { prefetch: 5 });
  const type = fresh('t');
  const sent = await call(url, `/v1/types/${type}/messages`, {
    body: { messages: Array.from({ length: 8 }, (_, i) => ({ body: `m${i}` })) },
  });
  assert.equal(sent.status, 200, sent.text);
  const first = await pullAll(url, `/v1/types/${type}/messages?group=g&max=10&wait=1000`, 5);
  assert.equal(first.length, 5, 'prefetch caps what one group holds');
  const full = await call(url, `/v1/types/${type}/messages?group=g&max=10&wait=1000`);
  assert.equal(full.status, 429, full.text);
  assert.equal(full.json.error.code, 'BUSBAR_ERR_LIMIT');
  assert.match(full.json.error.message, /5 unsettled leases.*ack or nack/);
  assert.ok(full.headers.get('retry-after'));
  const ack = await call(url, '/v1/acks', { body: { receipts: first.map((m) => m.receipt) } });
  assert.equal(ack.status, 200, ack.text);
  const rest = await pullAll(url, `/v1/types/${type}/messages?group=g&max=10&wait=1000`, 3);
  assert.deepEqual([...first, ...rest].map((m) => m.body).sort(), ['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7']);
});

test('a pull while the group is at its lease limit queues, and is served as soon as a lease ends', async (t) => {
  const { url } = await gateway(t, EMBEDDED, { prefetch: 5 });
  const type = fresh('t');
  const sent = await call(url, `/v1/types/${type}/messages`, {
    body: { messages: Array.from({ length: 8 }, (_, i) => ({ body: `m${i}` })) },
  });
  assert.equal(sent.status, 200, sent.text);
  const first = await pullAll(url, `/v1/types/${type}/messages?group=g&max=10&wait=1000`, 5);
  assert.equal(first.length, 5);
  const queued = call(url, `/v1/types/${type}/messages?group=g&max=10&wait=30000`);
  // The gauge shows the pull waiting for room (bounded: only a pull that never queues keeps it at 0 for 30 s).
  for (const deadline = Date.now() + 30_000; ; ) {
    const metrics = await call(url, '/metrics');
    if (/^busbar_gateway_queued_pulls 1$/m.test(metrics.text)) break;
    assert.ok(Date.now() < deadline, 'the pull never queued behind the 5 leases out');
  }
  // Acking two leases makes room for two: the queued pull gets messages, long before its 30 s wait is over.
  const ack = await call(url, '/v1/acks', { body: { receipts: first.slice(0, 2).map((m) => m.receipt) } });
  assert.equal(ack.status, 200, ack.text);
  const got = await queued;
  assert.equal(got.status, 200, got.text);
  assert.ok(got.json.messages.length >= 1 && got.json.messages.length <= 2, got.text);
  const receipts = [...first.slice(2), ...got.json.messages].map((m: { receipt: string }) => m.receipt);
  assert.equal((await call(url, '/v1/acks', { body: { receipts } })).status, 200);
});

test('a receipt from before a restart is recognised with the same secret (410), and named with another (400)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'busbar-restart-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const broker = `embedded:${join(dir, 'bus.db')}`;
  const secret = 'a receipt secret of at least thirty-two characters';
  const start = (receiptSecret: string) => startServer({ config: { broker, server: { receiptSecret } }, port: 0 });
  const first = await start(secret);
  const type = fresh('t');
  await call(first.url, `/v1/types/${type}/messages`, { body: { messages: [{ body: 1 }, { body: 2 }] } });
  const pulled = await pullAll(first.url, `/v1/types/${type}/messages?group=g&max=2&wait=2000`, 2);
  assert.equal(pulled.length, 2);
  await first.close();

  const again = await start(secret);
  t.after(() => again.close());
  const stale = await call(again.url, '/v1/acks', { body: { receipts: [pulled[0].receipt] } });
  assert.equal(stale.status, 410, `genuine but from before the restart: ${stale.text}`);
  const altered = pulled[1].receipt.replace(/.$/, (c: string) => (c === 'A' ? 'B' : 'A'));
  const forged = await call(again.url, '/v1/acks', { body: { receipts: [altered] } });
  assert.equal(forged.status, 400, `altered: ${forged.text}`);
  const other = await start('another receipt secret, also thirty-two characters');
  t.after(() => other.close());
  const foreign = await call(other.url, '/v1/acks', { body: { receipts: [pulled[1].receipt] } });
  assert.equal(foreign.status, 400, foreign.text);
  assert.match(foreign.json.error.message, /signed under another receipt secret/);
});

test('malformed HTTP gets a JSON 400 on the socket', async (t) => {
  const { url } = await gateway(t, EMBEDDED);
  const { port } = new URL(url);
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => socket.write('GARBAGE / HTTP/9.9\r\n\r\n'));
    let data = '';
    socket.on('data', (chunk) => {
      data += chunk;
    });
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
  });
  assert.match(answer, /^HTTP\/1\.1 400/);
  assert.match(answer, /"code":"BUSBAR_ERR_INVALID_ARGUMENT"/);
});

test('TLS when given a cert and key', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'busbar-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const server = await startServer({ config: 'memory:', port: 0, tls: { cert, key } });
  t.after(() => server.close());
  assert.match(server.url, /^https:/);
  // Async: the gateway answers from this very process.
  const { stdout } = await promisify(execFile)('curl', ['-sk', '--max-time', '10', `${server.url}/healthz`]);
  assert.deepEqual(JSON.parse(stdout), { status: 'ok' });
});

test('close returns leased messages to their group and ends open streams', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'busbar-close-'));
  try {
    const broker = `embedded:${join(dir, 'bus.db')}`;
    const type = fresh('t');
    const server = await startServer({ config: broker, port: 0 });
    await call(server.url, `/v1/types/${type}/messages`, { body: { messages: [{ body: 'kept' }] } });
    const [m] = await pullAll(server.url, `/v1/types/${type}/messages?group=g&wait=2000`, 1);
    assert.equal(m.body, 'kept');
    // A stream is open when the gateway closes: it must end, not hold the shutdown.
    const { ended } = await new Promise<{ ended: Promise<void> }>((opened) => {
      const req = httpRequest(`${server.url}/v1/types/${type}/stream?group=other`, (res) => {
        res.resume();
        opened({ ended: new Promise<void>((resolve) => res.on('close', () => resolve())) });
      });
      req.end();
    });
    await Promise.all([server.close(), server.close(), ended]);
    const again = await startServer({ config: broker, port: 0 });
    const [back] = await pullAll(again.url, `/v1/types/${type}/messages?group=g&wait=3000`, 1);
    assert.equal(back.id, m.id, 'the leased message came back after the gateway closed');
    await call(again.url, '/v1/acks', { body: { receipts: [back.receipt] } });
    await again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
