/**
 * MQTT transport: what the conformance suite does not cover — a plain MQTT client following only docs/wire/mqtt.md
 * publishes into and reads from the bus; configuration errors; publishes during a broker outage wait and succeed.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { MessageBus } from '../../src/index.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { PrivateMosquitto } from './mqtt-broker.ts';

const url = BROKERS.mqtt;
const skip = await brokerSkipReason('mqtt', async () => {
  const { host, port } = hostPort(url, 1883);
  await tcpReachable(host, port);
});
const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('mqtt transport', { skip }, () => {
  let bus: MessageBus;
  before(async () => {
    // Sessions of these consumers expire 10 minutes after they leave, instead of a week, on a shared broker.
    bus = await MessageBus.connect(`${url}${url.includes('?') ? '&' : '?'}sessionExpirySec=600`);
  });
  after(async () => {
    await bus?.close();
  });

  it('a plain MQTT client publishes a bare body; the bus receives it with filled attributes', async (t) => {
    const type = `plain-${randomUUID()}`;
    const consumer = bus.consumer({ consumerGroup: `g-${randomUUID()}`, messageTypes: [type] });
    t.after(() => consumer.close());
    await consumer.ready;
    const raw = await mqtt.connectAsync(url, { protocolVersion: 5 });
    t.after(() => raw.endAsync());
    const before = Date.now();
    await raw.publishAsync(`busbar/${type}`, Buffer.from([0, 1, 2, 255]), { qos: 1 });
    const got = await consumer.receive({ timeout: 30_000 });
    assert.ok(got, 'the bus did not receive the plain publish');
    assert.deepEqual([...got.raw], [0, 1, 2, 255]);
    assert.equal(got.type, type);
    assert.match(got.id, UUID7);
    assert.ok(Date.parse(got.time) >= before - 1000, `time ${got.time} is not the receipt time`);
    assert.equal(got.contentType, 'application/octet-stream');
    assert.equal(got.attempt, 1);
    await got.ack();
  });

  it('a plain MQTT client reads what the bus publishes: body untouched, attributes as properties', async (t) => {
    const type = `plain-${randomUUID()}`;
    const group = `g-${randomUUID()}`;
    const raw = await mqtt.connectAsync(url, { protocolVersion: 5 });
    t.after(() => raw.endAsync());
    const received = new Promise<{ topic: string; payload: Buffer; packet: mqtt.IPublishPacket }>((resolve) =>
      raw.once('message', (topic, payload, packet) => resolve({ topic, payload, packet })),
    );
    await raw.subscribeAsync(`$share/${group}/busbar/${type}`, { qos: 1 });
    const { message } = await import('../../src/index.ts');
    await bus
      .producer({ producerId: 'orders-service', messageType: type })
      .send([message({ total: 42 }, { key: 'customer-7', headers: { traceparent: '00-abc-def-01' } })]);
    const { topic, payload, packet } = await received;
    assert.equal(topic, `busbar/${type}`);
    assert.deepEqual(JSON.parse(payload.toString('utf8')), { total: 42 });
    assert.equal(packet.qos, 1);
    assert.equal(packet.properties?.contentType, 'application/json');
    const user = packet.properties?.userProperties ?? {};
    assert.equal(user.specversion, '1.0');
    assert.equal(user.type, type);
    assert.equal(user.source, 'orders-service');
    assert.equal(user.partitionkey, 'customer-7');
    assert.equal(user.traceparent, '00-abc-def-01');
    assert.match(String(user.id), UUID7);
    assert.ok(!Number.isNaN(Date.parse(String(user.time))));
  });

  /** A plain MQTT client joining `group` as docs/wire/mqtt.md describes, that takes one message and never acks it. */
  async function doomedMember(group: string, type: string) {
    const session = `busbar.${group}.doomed.0123456789ab`;
    const record = (state: string) =>
      JSON.stringify({ state, types: [type], consumerId: 'doomed', at: new Date().toISOString() });
    const client = mqtt.connect(url, {
      protocolVersion: 5,
      clientId: session,
      clean: false,
      reconnectPeriod: 0,
      properties: { sessionExpiryInterval: 600 },
      will: {
        topic: `busbar/_members/${group}/${session}`,
        payload: Buffer.from(record('offline')),
        qos: 1,
        retain: true,
        properties: { willDelayInterval: 1, messageExpiryInterval: 600 },
      },
    });
    const taken = new Promise<void>((resolve) => {
      // Never calls back: the message stays unacknowledged, as in a process that dies mid-work.
      client.handleMessage = () => resolve();
    });
    await new Promise((resolve) => client.once('connect', resolve));
    await client.subscribeAsync([`$share/${group}/busbar/${type}`, `$share/${group}/busbar/_group/${group}/${type}`], {
      qos: 1,
    });
    await client.publishAsync(`busbar/_members/${group}/${session}`, record('online'), { qos: 1, retain: true });
    return { client, taken };
  }

  it('a member that dies without closing: a live member of its group adopts its session and redelivers', async (t) => {
    const type = `death-${randomUUID()}`;
    const group = `g-${randomUUID()}`;
    const doomed = await doomedMember(group, type);
    t.after(() => doomed.client.end(true));
    await bus.send(type, 'unfinished work');
    await doomed.taken;

    const survivor = bus.consumer({ consumerGroup: group, messageTypes: [type] });
    t.after(() => survivor.close());
    await survivor.ready;
    doomed.client.end(true); // no DISCONNECT: the broker publishes the Will after its delay
    const got = await survivor.receive({ timeout: 15_000 });
    assert.ok(got, "the dead member's message never came back to its group");
    assert.equal(got.body, 'unfinished work');
    assert.equal(got.attempt, 2);
    await got.ack();
  });

  it('a stale online record (a member that died unseen) does not stop adoption: others fall back', async (t) => {
    const type = `stale-${randomUUID()}`;
    const group = `g-${randomUUID()}`;
    // Sorts before every real session id, so it would be the leader forever if leadership were all there is.
    const ghost = `busbar/_members/${group}/busbar.${group}.0-ghost`;
    const raw = await mqtt.connectAsync(url, { protocolVersion: 5 });
    t.after(async () => {
      await raw.publishAsync(ghost, '', { qos: 1, retain: true });
      await raw.endAsync();
    });
    const online = JSON.stringify({
      state: 'online',
      types: [type],
      consumerId: 'ghost',
      at: new Date().toISOString(),
    });
    await raw.publishAsync(ghost, online, { qos: 1, retain: true });
    const doomed = await doomedMember(group, type);
    t.after(() => doomed.client.end(true));
    await bus.send(type, 'work of the dead');
    await doomed.taken;

    const survivor = bus.consumer({ consumerGroup: group, messageTypes: [type] });
    t.after(() => survivor.close());
    await survivor.ready;
    doomed.client.end(true);
    const got = await survivor.receive({ timeout: 30_000 });
    assert.ok(got, 'the departed session was never adopted');
    assert.equal(got.body, 'work of the dead');
    await got.ack();
  });

  it('lists types registered by retained records and refuses what MQTT cannot do', async () => {
    const admin = bus.admin();
    const type = `adm-${randomUUID()}`;
    await admin.registerMessageType(type);
    assert.ok((await admin.listMessageTypes()).some((info) => info.type === type));
    await assert.rejects(admin.purge(type), { code: 'BUSBAR_ERR_UNSUPPORTED' });
    await assert.rejects(admin.addConcurrency(type, 2), { code: 'BUSBAR_ERR_UNSUPPORTED' });
    await assert.rejects(admin.setExpiry(type, { dataLimitBytes: 10 }), { code: 'BUSBAR_ERR_UNSUPPORTED' });
    await admin.deregisterMessageType(type);
    assert.ok(!(await admin.listMessageTypes()).some((info) => info.type === type));
  });

  it('connects through the next endpoint of a list when the first is down', async (t) => {
    const { host, port } = hostPort(url, 1883);
    const other = await MessageBus.connect(`mqtt://127.0.0.1:1,${host}:${port}?reconnectPeriodMs=100`);
    t.after(() => other.close());
    await other.send(`multi-${randomUUID()}`, 'through the second endpoint');
  });

  it('rejects bad configuration with a clear BusError', async () => {
    await assert.rejects(MessageBus.connect('mqtt://127.0.0.1:1883?topicPrefix=a%2B'), {
      code: 'BUSBAR_ERR_INVALID_CONFIG',
    });
    await assert.rejects(MessageBus.connect('mqtt://127.0.0.1:1?connectTimeoutMs=500'), {
      code: 'BUSBAR_ERR_CONNECTION',
    });
  });
});

describe('mqtt transport over TLS with a username and password', () => {
  let broker: PrivateMosquitto | undefined;
  let reason: string | undefined;
  before(async () => {
    try {
      PrivateMosquitto.check();
      broker = await PrivateMosquitto.start({ secure: true });
    } catch (error) {
      reason = `cannot start a private TLS mosquitto: ${(error as Error).message}`;
    }
  });
  after(async () => {
    await broker?.stop();
  });

  it('round-trips over mqtts:// with the CA from tls.ca and the credentials; refuses a wrong password', async (t) => {
    if (reason) return t.skip(reason);
    const tls = { ca: join(broker!.dir, 'ca.pem') };
    const brokerUrl = `mqtts://127.0.0.1:${broker!.port}`;
    const bus = await MessageBus.connect({ broker: brokerUrl, tls, username: 'busbar', password: 's3cret' });
    t.after(() => bus.close());
    const type = `tls-${randomUUID()}`;
    const consumer = bus.consumer({ consumerGroup: `g-${randomUUID()}`, messageTypes: [type] });
    await consumer.ready;
    await bus.send(type, 'over TLS');
    const got = await consumer.receive({ timeout: 30_000 });
    assert.equal(got?.body, 'over TLS');
    await got!.ack();
    await consumer.close();
    await assert.rejects(MessageBus.connect({ broker: brokerUrl, tls, username: 'busbar', password: 'wrong' }), {
      code: 'BUSBAR_ERR_AUTH',
    });
  });
});

describe('mqtt transport across a broker outage', () => {
  let broker: PrivateMosquitto | undefined;
  let reason: string | undefined;
  before(async () => {
    try {
      PrivateMosquitto.check();
      broker = await PrivateMosquitto.start();
    } catch (error) {
      reason = `cannot start a private mosquitto: ${(error as Error).message}`;
    }
  });
  after(async () => {
    await broker?.stop();
  });

  it('a publish made while the broker is down waits and succeeds once it is back', async (t) => {
    if (reason) return t.skip(reason);
    const bus = await MessageBus.connect(broker!.url);
    t.after(() => bus.close());
    const type = `outage-${randomUUID()}`;
    const consumer = bus.consumer({ consumerGroup: `g-${randomUUID()}`, messageTypes: [type] });
    await consumer.ready;
    await broker!.stopOnly();
    const sending = bus.send(type, 'sent during the outage');
    await new Promise((resolve) => setTimeout(resolve, 500));
    await broker!.startAgain();
    await sending;
    const got = await consumer.receive({ timeout: 10_000 });
    assert.equal(got?.body, 'sent during the outage');
    await got!.ack();
    await consumer.close();
  });
});
