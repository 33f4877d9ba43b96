/**
 * What busbar's RabbitMQ layout costs (`npm run bench -- rabbitmq-layout`), with raw amqplib only, so that busbar's
 * code is not part of the difference: busbar stores every message twice, in the type's stream (for replay by new
 * `earliest` groups) and in each group's quorum queue, both bound to the `busbar` exchange (docs/wire/rabbitmq.md,
 * src/transports/rabbitmq/broker.ts). Each case runs that layout ("busbar") beside the same work on the same
 * exchange with the group's quorum queue alone ("baseline"): persistent messages with busbar's properties, publisher
 * confirms per batch of 100, consumers with prefetch 100 acking every message. The ratio is the layout's cost: below
 * 1, the stream slows that path down.
 */
import amqp, { type ConfirmChannel } from 'amqplib';
import { EXCHANGE, groupQueue, logQueue, publishOptions, toBuffer } from '../src/transports/rabbitmq/wire.ts';
import type { BenchCase } from './harness.ts';
import { defineCase, freshName, messagesOf, type Tally } from './lib/case.ts';

const URL = process.env.BUSBAR_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const MESSAGES = 2_000;
const BATCH = 100;
const PREFETCH = 100;
/** busbar's default replayMaxAge. */
const REPLAY_MAX_AGE = '7D';

interface Layout {
  type: string;
  group: string;
  queues: string[];
}

/** The queues of one type with one group, as busbar declares them, with or without the type's stream. */
async function declare(channel: ConfirmChannel, withStream: boolean): Promise<Layout> {
  const type = freshName(withStream ? 'layout-stream' : 'layout-quorum');
  const group = freshName('g');
  await channel.assertExchange(EXCHANGE, 'topic', { durable: true });
  const queues: string[] = [];
  if (withStream) {
    await channel.assertQueue(logQueue(type), {
      durable: true,
      arguments: { 'x-queue-type': 'stream', 'x-max-age': REPLAY_MAX_AGE },
    });
    await channel.bindQueue(logQueue(type), EXCHANGE, type);
    queues.push(logQueue(type));
  }
  await channel.assertQueue(groupQueue(type, group), { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await channel.bindQueue(groupQueue(type, group), EXCHANGE, type);
  queues.push(groupQueue(type, group));
  return { type, group, queues };
}

async function publish(channel: ConfirmChannel, type: string, count: number, tally?: Tally): Promise<void> {
  for (let sent = 0; sent < count; sent += BATCH) {
    for (const m of messagesOf(type, BATCH)) {
      channel.publish(EXCHANGE, type, toBuffer(m.body), publishOptions(m));
    }
    await channel.waitForConfirms();
    tally?.count(BATCH);
  }
}

async function consume(connection: amqp.ChannelModel, layout: Layout, tally: Tally): Promise<void> {
  const channel = await connection.createChannel();
  await channel.prefetch(PREFETCH);
  await new Promise<void>((resolve) => {
    void channel.consume(groupQueue(layout.type, layout.group), (message) => {
      // Past the count, leave them unacked: closing the channel returns them.
      if (!message || tally.handled === MESSAGES) return;
      tally.count();
      channel.ack(message);
      if (tally.handled === MESSAGES) setImmediate(resolve);
    });
  });
  await channel.close();
}

function layoutCase(name: string, consuming: boolean): BenchCase {
  let connection: amqp.ChannelModel | undefined;
  let channel: ConfirmChannel | undefined;
  let busbar: Layout | undefined;
  let quorum: Layout | undefined;
  const open = () => {
    if (!channel || !connection || !busbar || !quorum) throw new Error(`rabbitmq-layout '${name}': used before setup`);
    return { connection, channel, busbar, quorum };
  };
  return defineCase({
    name,
    transport: 'rabbitmq',
    messages: MESSAGES,
    async setup({ rounds }) {
      connection = await amqp.connect(URL);
      channel = await connection.createConfirmChannel();
      busbar = await declare(channel, true);
      quorum = await declare(channel, false);
      if (consuming) {
        // Every round's messages (warm-up, rounds, one spare), stored on both layouts alike before round one.
        for (let i = 0; i < rounds + 2; i++) {
          await publish(channel, busbar.type, MESSAGES);
          await publish(channel, quorum.type, MESSAGES);
        }
      }
    },
    async teardown() {
      for (const queue of [...(busbar?.queues ?? []), ...(quorum?.queues ?? [])]) {
        await channel?.deleteQueue(queue);
      }
      await connection?.close();
    },
    subject: consuming
      ? (tally) => consume(open().connection, open().busbar, tally)
      : (tally) => publish(open().channel, open().busbar.type, MESSAGES, tally),
    baseline: consuming
      ? (tally) => consume(open().connection, open().quorum, tally)
      : (tally) => publish(open().channel, open().quorum.type, MESSAGES, tally),
  });
}

export default async function cases(): Promise<BenchCase[]> {
  return [
    layoutCase(`publish 100B x${BATCH} confirmed: stream + quorum queue (busbar) vs quorum queue only`, false),
    layoutCase(`consume+ack 100B, prefetch ${PREFETCH}: stream + quorum queue (busbar) vs quorum queue only`, true),
  ];
}
