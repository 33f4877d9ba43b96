/**
 * docs/wire/stomp.md's promise, kept with a real program in another language: a Python script using stomp.py
 * (Debian's python3-stomp), written from that page alone, publishes into the bus and reads what busbar published as a
 * group of its own, on the real Artemis; body bytes and attributes are compared exactly.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { MessageBus, message } from '../../src/index.ts';
import { BROKERS, brokerRequired, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const run = promisify(execFile);
const fixture = new URL('./fixtures/stomp_client.py', import.meta.url).pathname;
/** Debian's interpreter, which has the python3-stomp package (.ci/run installs it). */
const PYTHON = process.env.BUSBAR_TEST_PYTHON ?? '/usr/bin/python3';
const { host, port } = hostPort(BROKERS.stomp, 61613);

async function pythonSkipReason(): Promise<string | undefined> {
  try {
    await run(PYTHON, ['-c', 'import stomp'], { timeout: 30_000 });
    return undefined;
  } catch (error) {
    const reason = `${PYTHON} cannot import stomp (apt-get install python3-stomp): ${(error as Error).message.split('\n')[0]}`;
    if (brokerRequired('stomp')) throw new Error(`${reason} (required by BUSBAR_REQUIRE_BROKERS)`);
    return reason;
  }
}

describe('stomp wire mapping: a Python stomp.py program joins the bus', { timeout: 180_000 }, () => {
  let skip: string | undefined;
  before(async () => {
    skip = (await brokerSkipReason('stomp', () => tcpReachable(host, port))) ?? (await pythonSkipReason());
  });

  it('publishes messages busbar receives exactly, and reads what busbar published', async (t) => {
    if (skip) return t.skip(skip);
    const bus = await MessageBus.connect(BROKERS.stomp);
    const type = `py-${randomUUID().slice(0, 8)}`;
    t.after(async () => {
      await bus
        .admin()
        .deregisterMessageType(type)
        .catch(() => {});
      await bus.close();
    });

    // Python -> busbar
    const consumer = bus.consumer({ consumerGroup: 'busbar-side', messageTypes: [type] });
    await consumer.ready;
    const { stdout } = await run(PYTHON, [fixture, 'publish', host, String(port), type], { timeout: 60_000 });
    const ids = JSON.parse(stdout) as string[];
    const got = [];
    for (let i = 0; i < 2; i++) {
      const m = await consumer.receive({ timeout: 30_000 });
      assert.ok(m, 'busbar did not receive what Python published');
      got.push(m);
      await m.ack();
    }
    const [binary, json] = got;
    assert.deepEqual(
      got.map((m) => m.id),
      ids,
    );
    assert.deepEqual(
      new Uint8Array(binary!.raw),
      new Uint8Array(256).map((_, i) => i),
    );
    assert.equal(binary!.contentType, 'application/octet-stream');
    assert.equal(binary!.source, 'python-stomp');
    assert.equal(binary!.type, type);
    assert.equal(binary!.key, 'k-py');
    // Python writes +00:00 with microseconds: read as UTC, the fraction kept as written.
    assert.equal(binary!.time, '2026-01-02T03:04:05.678000Z');
    assert.deepEqual(binary!.headers, { 'x-tenant': 'acme', 'x-odd': 'a:b\\c\nd' });
    assert.equal(binary!.attempt, 1);
    assert.deepEqual(json!.body, { order: 42 });
    assert.equal(json!.key, undefined);
    await consumer.close();

    // busbar -> Python, as a group of its own
    const python = spawn(PYTHON, [fixture, 'consume', host, String(port), type, 'python-side', '2'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => python.kill());
    const lines = createInterface({ input: python.stdout })[Symbol.asyncIterator]();
    assert.equal((await lines.next()).value, 'ready');
    const bytes = new Uint8Array(300).map((_, i) => (i * 7) % 256);
    const producer = bus.producer({ producerId: 'busbar-producer', messageType: type });
    await producer.send([
      message(bytes, { key: 'k:1', headers: { 'x-tenant': 'acme', 'x-odd': 'a:b\\c\nd\\n', destination: 'mine' } }),
      message('grüße 🚌'),
    ]);
    const frames = [];
    for (let i = 0; i < 2; i++) {
      const line = (await lines.next()).value as string;
      frames.push(JSON.parse(line) as { headers: Record<string, string>; body: string });
    }
    const [first, second] = frames;
    assert.equal(first!.body, Buffer.from(bytes).toString('hex'));
    assert.equal(first!.headers['content-type'], 'application/octet-stream');
    assert.equal(first!.headers['ce-source'], 'busbar-producer');
    assert.equal(first!.headers['ce-type'], type);
    assert.equal(first!.headers['ce-specversion'], '1.0');
    assert.equal(first!.headers['ce-partitionkey'], 'k:1');
    assert.match(first!.headers['ce-id']!, /^[0-9a-f-]{36}$/);
    assert.ok(!Number.isNaN(Date.parse(first!.headers['ce-time']!)));
    assert.equal(first!.headers['x-tenant'], 'acme');
    assert.equal(first!.headers['x-odd'], 'a:b\\c\nd\\n');
    assert.equal(first!.headers['busbar-header-destination'], 'mine');
    assert.equal(Buffer.from(second!.body, 'hex').toString('utf8'), 'grüße 🚌');
    assert.equal(second!.headers['content-type'], 'text/plain; charset=utf-8');
    await new Promise((resolve) => python.once('exit', resolve));
    assert.equal(python.exitCode, 0);
  });
});
