/**
 * admin.peek on RabbitMQ (BUSBAR_TEST_RABBITMQ_URL): the type's replay log (stream `busbar:<type>`) read from a stream
 * offset; positions are offsets, log markers are never shown, a position past the end shows nothing (the peek still
 * ends), bad positions are refused, and a peek declares no queue. The conformance suite (scenario P1) checks that a
 * peek consumes nothing and starts from a position and from a time.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { buildMessage } from '../../src/message/envelope.ts';
import type { Transport, TransportConfig } from '../../src/transport/contract.ts';
import createRabbitTransport from '../../src/transports/rabbitmq/index.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const { host, port } = hostPort(BROKERS.rabbitmq, 5672);
const endpoint = `${host}:${port}`;
const skip = await brokerSkipReason('rabbitmq', () => tcpReachable(host, port));
const newType = () => `rmq-peek-${randomUUID().slice(0, 8)}`;
const config: TransportConfig = {
  url: `amqp://${endpoint}`,
  endpoints: [endpoint],
  username: 'guest',
  password: 'guest',
  options: {},
};

describe('rabbitmq admin.peek', { skip, timeout: 120_000 }, () => {
  let transport: Transport;
  const types: string[] = [];
  before(async () => {
    transport = await createRabbitTransport(config);
  });
  after(async () => {
    for (const type of types) await transport.admin.deleteType(type).catch(() => {});
    await transport.close();
  });

  it('shows stream offsets in order, pages from a position, hides its markers, ends past the end', async () => {
    const type = newType();
    types.push(type);
    const sent = ['a', 'b', 'c', 'd'].map((body) => buildMessage(type, 'test', body));
    for (const m of sent) await transport.publish(type, [m]);
    const all = await transport.admin.peek!(type, { count: 10 });
    assert.deepEqual(
      all.map((p) => p.message.id),
      sent.map((m) => m.id),
    );
    for (const p of all) assert.match(p.position, /^\d+$/);
    // Again: the markers the first peek appended are not messages.
    const again = await transport.admin.peek!(type, { count: 10 });
    assert.deepEqual(
      again.map((p) => p.position),
      all.map((p) => p.position),
    );
    const page = await transport.admin.peek!(type, { from: all[2]!.position, count: 10 });
    assert.deepEqual(
      page.map((p) => p.message.id),
      sent.slice(2).map((m) => m.id),
    );
    assert.deepEqual(await transport.admin.peek!(type, { from: '999999999', count: 10 }), []);
  });

  it('refuses a bad position with what to give instead; an unknown type shows nothing and declares nothing', async () => {
    const type = newType();
    types.push(type);
    await transport.admin.ensureType(type);
    await assert.rejects(transport.admin.peek!(type, { from: '1:2', count: 1 }), {
      code: 'BUSBAR_ERR_INVALID_ARGUMENT',
      message: /stream offset/,
    });
    const missing = newType();
    assert.deepEqual(await transport.admin.peek!(missing, { count: 5 }), []);
    const connection = await amqp.connect(`amqp://guest:guest@${endpoint}`);
    try {
      const channel = await connection.createChannel();
      channel.on('error', () => {});
      await assert.rejects(channel.checkQueue(`busbar:${missing}`), { code: 404 });
    } finally {
      await connection.close().catch(() => {});
    }
  });
});
