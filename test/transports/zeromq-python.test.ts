/**
 * docs/wire/zeromq.md's promise, kept with a real program in another language: a Python script using Debian's
 * python3-zmq (pyzmq), written from that page alone, binds a PUB socket as a fedmsg service does and publishes
 * fedmsg dicts (plain, signed, and with CloudEvents attributes) that busbar receives, and reads what busbar publishes
 * on its own bound socket; a signed message busbar received goes back out with exactly its signed fields.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type Message, MessageBus, message } from '../../src/index.ts';
import { brokerRequired } from '../helpers/brokers.ts';
import { freePort } from '../helpers/zeromq.ts';

const run = promisify(execFile);
const fixture = new URL('./fixtures/zeromq_client.py', import.meta.url).pathname;
/** Debian's interpreter, which has the python3-zmq package (.ci/run installs it). */
const PYTHON = process.env.BUSBAR_TEST_PYTHON ?? '/usr/bin/python3';

async function pythonSkipReason(): Promise<string | undefined> {
  try {
    await run(PYTHON, ['-c', 'import zmq'], { timeout: 30_000 });
    return undefined;
  } catch (error) {
    const reason = `${PYTHON} cannot import zmq (apt-get install python3-zmq): ${(error as Error).message.split('\n')[0]}`;
    if (brokerRequired('zeromq')) throw new Error(`${reason} (required by BUSBAR_REQUIRE_BROKERS)`);
    return reason;
  }
}

interface Event {
  event: string;
  [field: string]: unknown;
}

function startPython(args: string[]) {
  const child: ChildProcess = spawn(PYTHON, [fixture, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async (name: string): Promise<Event> => {
    for (;;) {
      const line = await lines.next();
      if (line.done) throw new Error(`python ended before '${name}' (exit ${await exited}): ${stderr}`);
      const event = JSON.parse(line.value) as Event;
      if (event.event === name) return event;
    }
  };
  const command = (text: string) => child.stdin!.write(`${text}\n`);
  return { child, next, command, exited };
}

describe('zeromq wire mapping: a Python pyzmq program joins a fedmsg bus with busbar', { timeout: 120_000 }, () => {
  let skip: string | undefined;
  let bus: MessageBus | undefined;
  let python: ReturnType<typeof startPython> | undefined;
  before(async () => {
    skip = await pythonSkipReason();
  });
  after(async () => {
    python?.child.kill('SIGKILL');
    await bus?.close();
  });

  it('publishes fedmsg messages busbar receives and reads what busbar publishes', async (t) => {
    if (skip) return t.skip(skip);
    const pythonPort = await freePort();
    const busbarPort = await freePort();
    const inType = `pdc.compose-${randomUUID().slice(0, 8)}`;
    const outType = `busbar.out-${randomUUID().slice(0, 8)}`;
    bus = await MessageBus.connect(`zeromq://127.0.0.1:${pythonPort}?bind=tcp://127.0.0.1:${busbarPort}`);
    const consumer = bus.consumer({ consumerGroup: 'from-python', messageTypes: [inType] });
    await consumer.ready;
    python = startPython([String(pythonPort), String(busbarPort), inType, outType]);
    await python.next('ready');

    // Python -> busbar. Python repeats a hello until busbar's SUB socket has connected (ZeroMQ's slow joiner).
    python.command('hello');
    for (;;) {
      const m = await consumer.receive({ timeout: 30_000 });
      assert.ok(m, 'no hello from python within 30 s');
      await m.ack();
      if (m.body === 'hello') break;
    }
    python.command('send');
    const got: Message[] = [];
    while (got.length < 3) {
      const m = await consumer.receive({ timeout: 30_000 });
      assert.ok(m, `only ${got.length} of python's 3 messages arrived`);
      await m.ack();
      if (m.body !== 'hello') got.push(m);
    }
    const [plain, signed, withAttributes] = got as [Message, Message, Message];
    assert.deepEqual(plain.body, { compose_id: 'Fedora-42-20261202.0', ok: true });
    assert.equal(plain.type, inType);
    assert.equal(plain.source, 'pdc');
    assert.equal(plain.contentType, 'application/json');
    const plainFields = JSON.parse(plain.headers.fedmsg!) as Record<string, unknown>;
    assert.equal(plain.id, plainFields.msg_id);
    assert.match(plain.id, /^\d{4}-[0-9a-f-]{36}$/);
    assert.equal(typeof plainFields.i, 'number');
    assert.equal(typeof plainFields.username, 'string');
    assert.equal(plain.time, new Date((plainFields.timestamp as number) * 1000).toISOString());
    const signedFields = JSON.parse(signed.headers.fedmsg!) as Record<string, unknown>;
    assert.deepEqual(
      [signedFields.crypto, signedFields.signature, signedFields.certificate],
      ['x509', 'c2lnbmF0dXJl', 'Y2VydA=='],
    );
    assert.equal(withAttributes.id, 'py-ce-1');
    assert.equal(withAttributes.source, 'python-producer');
    assert.equal(withAttributes.key, 'k-py');
    assert.equal(withAttributes.time, '2026-12-02T07:00:00Z');
    assert.equal(withAttributes.contentType, 'application/octet-stream');
    assert.deepEqual(
      new Uint8Array(withAttributes.raw),
      new Uint8Array(256).map((_, i) => i),
    );
    assert.equal(withAttributes.headers['x-origin'], 'python');
    assert.equal(withAttributes.headers['x-unicode'], 'grüße');
    assert.equal(withAttributes.headers.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');

    // busbar -> Python: busbar repeats a hello until Python's SUB socket has its subscription.
    const producer = bus.producer({ producerId: 'node-busbar', messageType: outType });
    const subscribed = python.next('subscribed');
    let pythonSubscribed = false;
    void subscribed.then(() => {
      pythonSubscribed = true;
    });
    const deadline = Date.now() + 30_000;
    while (!pythonSubscribed && Date.now() < deadline) {
      await producer.send(['hello']);
      await Promise.race([subscribed, new Promise((resolve) => setTimeout(resolve, 50))]);
    }
    assert.ok(pythonSubscribed, 'python never received busbar hello');
    const binary = new Uint8Array([0, 1, 2, 250, 255]);
    await producer.send([
      message(binary, { key: 'k-bin', headers: { 'x-trace': 'abc', traceparent: '00-aa-bb-01' } }),
      message('grüße, 世界'),
      message({ nested: { list: [1, 2, 3] } }),
    ]);
    // The signed message as busbar received it, published again on its own topic: its fedmsg fields go back out as
    // they came, with no cloudevents, so its signature would still verify.
    await bus.producer({ messageType: inType }).send([message(signed.body, { headers: signed.headers })]);
    const received: Event[] = [];
    for (let i = 0; i < 4; i++) received.push(await python.next('received'));
    const [bin, text, json, resent] = received as [Event, Event, Event, Event];
    assert.equal(bin.body_b64, Buffer.from(binary).toString('base64'));
    assert.equal(bin.key, 'k-bin');
    assert.equal(bin.source, 'node-busbar');
    assert.equal(bin.type, outType);
    assert.deepEqual(bin.headers, { 'x-trace': 'abc' });
    assert.equal(bin.traceparent, '00-aa-bb-01');
    assert.equal(text.body, 'grüße, 世界');
    assert.equal(text.contenttype, 'text/plain; charset=utf-8');
    assert.deepEqual(json.body, { nested: { list: [1, 2, 3] } });
    const dict = json.dict as Record<string, unknown>;
    assert.equal(dict.topic, `com.example.dev.${outType}`);
    assert.match(dict.msg_id as string, /^\d{4}-[0-9a-f-]{36}$/);
    assert.equal(typeof dict.timestamp, 'number');
    assert.equal(typeof dict.i, 'number');
    assert.equal(resent.has_cloudevents, false);
    assert.equal(signedFields.topic, `com.example.dev.${inType}`);
    assert.deepEqual(resent.dict, { ...signedFields, msg: { signed: 1 } });

    python.command('quit');
    await python.next('done');
    assert.equal(await python.exited, 0);
    await consumer.close();
  });
});
