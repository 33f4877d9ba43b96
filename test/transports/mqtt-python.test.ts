/**
 * docs/wire/mqtt.md's promise, kept with a real program in another language: a Python script using paho-mqtt 1.6
 * (Debian's python3-paho-mqtt, which has no manual ack), written from that page alone, joins a consumer group as a
 * member busbar knows about (member record and Will), publishes into the bus, reads what busbar published, nacks with
 * a delay and honours the `busbarnotbefore` time of busbar's delayed redeliveries; when it leaves or dies, a busbar
 * member adopts its session, so nothing stays queued in it.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { type Message, MessageBus, message } from '../../src/index.ts';
import { buildMessage } from '../../src/message/envelope.ts';
import { publishProperties, Topics } from '../../src/transports/mqtt/wire.ts';
import { BROKERS, brokerRequired, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const run = promisify(execFile);
const fixture = new URL('./fixtures/mqtt_client.py', import.meta.url).pathname;
/** Debian's interpreter, which has the python3-paho-mqtt package (.ci/run installs it). */
const PYTHON = process.env.BUSBAR_TEST_PYTHON ?? '/usr/bin/python3';
const { host, port } = hostPort(BROKERS.mqtt, 1883);

async function pythonSkipReason(): Promise<string | undefined> {
  try {
    await run(PYTHON, ['-c', 'import paho.mqtt.client'], { timeout: 30_000 });
    return undefined;
  } catch (error) {
    const reason = `${PYTHON} cannot import paho.mqtt (apt-get install python3-paho-mqtt): ${(error as Error).message.split('\n')[0]}`;
    if (brokerRequired('mqtt')) throw new Error(`${reason} (required by BUSBAR_REQUIRE_BROKERS)`);
    return reason;
  }
}

interface Event {
  event: string;
  [field: string]: unknown;
}

/** The Python program, with its stdout as a stream of JSON events to wait for. */
function startPython(args: string[]) {
  const child: ChildProcess = spawn(PYTHON, [fixture, host, String(port), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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
  return { child, next, exited };
}

describe('mqtt wire mapping: a Python paho-mqtt 1.6 program joins the bus', { timeout: 180_000 }, () => {
  let skip: string | undefined;
  let bus: MessageBus;
  before(async () => {
    skip = (await brokerSkipReason('mqtt', () => tcpReachable(host, port))) ?? (await pythonSkipReason());
    // Sessions of these consumers expire 10 minutes after they leave, instead of a week, on a shared broker.
    if (!skip)
      bus = await MessageBus.connect(`${BROKERS.mqtt}${BROKERS.mqtt.includes('?') ? '&' : '?'}sessionExpirySec=600`);
  });
  after(async () => {
    await bus?.close();
  });

  it('publishes, reads as a group member, nacks with a delay and honours not-before; its session is adopted when it leaves', async (t) => {
    if (skip) return t.skip(skip);
    const type = `py-${randomUUID().slice(0, 8)}`;
    const pyGroup = `py-${randomUUID().slice(0, 8)}`;
    const reader = bus.consumer({ consumerGroup: `g-${randomUUID().slice(0, 8)}`, messageTypes: [type] });
    t.after(() => reader.close());
    await reader.ready;

    const python = startPython([type, pyGroup, 'member', '3']);
    t.after(() => python.child.kill('SIGKILL'));
    await python.next('ready');
    const producer = bus.producer({ producerId: 'node-shop', messageType: type });
    await producer.send([
      message({ item: 'thé' }, { key: 'c-1', headers: { traceparent: '00-node-01' } }),
      message({ nack: true }),
    ]);
    // A delayed redelivery exactly as a busbar member of the group republishes it after nack({ delayMs }): Python,
    // the group's only member, receives it and must wait out its not-before time.
    const notBefore = Date.now() + 1500;
    const raw = await mqtt.connectAsync(BROKERS.mqtt, { protocolVersion: 5 });
    t.after(() => raw.endAsync());
    await raw.publishAsync(new Topics('busbar').redeliveries(pyGroup, type), JSON.stringify({ delayed: true }), {
      qos: 1,
      properties: publishProperties(buildMessage(type, 'node-shop', { delayed: true }), { attempt: 2, notBefore }),
    });
    const done = (await python.next('done')) as Event & {
      sent: (string | null)[];
      handled: {
        type: string;
        source: string;
        contentType: string;
        key: string | null;
        traceparent: string | null;
        attempt: number;
        notBefore: number;
        handledAt: number;
        body: unknown;
      }[];
    };
    assert.equal(await python.exited, 0);

    // What busbar published, as the Python member handled it.
    const item = done.handled.find((h) => JSON.stringify(h.body) === JSON.stringify({ item: 'thé' }));
    assert.ok(item, `python did not handle the JSON message: ${JSON.stringify(done)}`);
    assert.equal(item.type, type);
    assert.equal(item.source, 'node-shop');
    assert.equal(item.contentType, 'application/json');
    assert.equal(item.key, 'c-1');
    assert.equal(item.traceparent, '00-node-01');
    assert.equal(item.attempt, 1);
    const nacked = done.handled.find((h) => JSON.stringify(h.body) === JSON.stringify({ nack: true }));
    assert.ok(nacked, 'the message python nacked never came back to it');
    assert.equal(nacked.attempt, 2);
    assert.ok(nacked.notBefore > 0, 'the redelivery carries busbar-not-before');
    assert.ok(nacked.handledAt >= nacked.notBefore, 'python handled the redelivery before its not-before time');
    const delayed = done.handled.find((h) => JSON.stringify(h.body) === JSON.stringify({ delayed: true }));
    assert.ok(delayed, "busbar's delayed redelivery never reached python");
    assert.equal(delayed.attempt, 2, 'python read the attempt of a busbar redelivery');
    assert.equal(delayed.notBefore, notBefore, 'python read the not-before time of a busbar redelivery');
    assert.ok(delayed.handledAt >= notBefore, "python handled busbar's delayed redelivery before its not-before time");

    // What Python published, as a busbar consumer receives it.
    // Read until both arrived (a redelivered copy may come between them), each within its own patience.
    const bareBytes = [...Buffer.from('bare '), 0xff];
    const isBare = (m: Message | null) => m !== null && Buffer.from(m.raw).equals(Buffer.from(bareBytes));
    const got: (Message | null)[] = [];
    while (!(got.some((m) => m?.source === 'py-billing') && got.some(isBare))) {
      const m = await reader.receive({ timeout: 10_000 });
      if (!m) break;
      got.push(m);
      await m.ack();
    }
    const full = got.find((m) => m?.source === 'py-billing');
    assert.ok(full, 'the complete Python message did not arrive');
    assert.equal(full.id, done.sent[0]);
    assert.equal(full.type, type);
    assert.equal(full.contentType, 'application/json');
    assert.deepEqual(full.body, { total: 42, note: 'café' });
    assert.equal(full.key, 'customer-7');
    // A user property sent twice: the first wins; a comma inside one value stays a comma.
    assert.deepEqual(full.headers, { 'x-tag': 'first', 'x-list': 'a,b' });
    const bare = got.find(isBare);
    assert.ok(bare, 'the bare Python message did not arrive');
    assert.deepEqual([...bare.raw], [...Buffer.from('bare '), 0xff]);
    assert.equal(bare.contentType, 'application/octet-stream');

    // Python left the group as the doc says; what the group gets meanwhile waits in its session, and the next busbar
    // member of the group adopts that session and delivers it.
    await bus.send(type, 'after python left');
    const successor = bus.consumer({ consumerGroup: pyGroup, messageTypes: [type] });
    t.after(() => successor.close());
    const left = await successor.receive({ timeout: 30_000 });
    assert.equal(left?.body, 'after python left', "the message queued in python's session was never adopted");
    await left?.ack();
  });

  it('a Python member that dies holding a message: its Will lets a busbar member adopt the session', async (t) => {
    if (skip) return t.skip(skip);
    const type = `py-${randomUUID().slice(0, 8)}`;
    const group = `py-${randomUUID().slice(0, 8)}`;
    const python = startPython([type, group, 'die']);
    t.after(() => python.child.kill('SIGKILL'));
    await python.next('ready');
    await bus.send(type, 'unfinished work');
    await python.next('taken');
    python.child.kill('SIGKILL');
    await python.exited;

    const survivor = bus.consumer({ consumerGroup: group, messageTypes: [type] });
    t.after(() => survivor.close());
    const got = await survivor.receive({ timeout: 60_000 });
    assert.equal(got?.body, 'unfinished work', "the dead member's message never came back to its group");
    assert.equal(got?.attempt, 2);
    await got?.ack();
  });
});
