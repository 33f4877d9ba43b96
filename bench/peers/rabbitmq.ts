/**
 * RabbitMQ (BUSBAR_TEST_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672): busbar and the libraries users pick
 * instead, each beside raw amqplib (the version busbar itself uses) on a durable queue of its own, at equal
 * durability where the library allows it: persistent messages, publisher confirms, manual ack after the handler,
 * prefetch 100. Each peer declares its queue the way it does by default (a durable classic queue); busbar keeps its
 * own layout (docs/wire/rabbitmq.md: a stream per type plus a quorum queue per group).
 * - rascal: confirms (a publication's 'success'), ackOrNack() after the handler, subscription prefetch.
 * - @nestjs/microservices RMQ transport (ClientRMQ / ServerRMQ, no Nest application around them): emit() resolves
 *   on the confirm (amqp-connection-manager's confirm channel); noAck false, the handler acks through its context.
 * - moleculer + @moleculer/channels (AMQP adapter): NO publisher confirms (a plain channel; publish resolves once
 *   written to the socket), so its publish round ends when the queue holds the round's messages; acks after the
 *   handler; maxInFlight is the channel prefetch.
 * - @message-queue-toolkit/amqp: NO publisher confirms (publish() is synchronous), so its publish round ends when
 *   the queue holds the round's messages; acks after the handler; it has NO prefetch option (unbounded), so its
 *   consumer here sets the channel's prefetch before consuming (a subclass), as the others have it.
 */
import { createRequire } from 'node:module';
import type { BenchCase } from '../harness.ts';
import { Tally } from '../lib/case.ts';
import {
  busbarSide,
  consumeCase,
  idOf,
  MESSAGES,
  PREFETCH,
  type Publisher,
  payload,
  publishCase,
  RoundGate,
  type Side,
  type Subscriber,
  windowed,
} from './common.ts';

const URL = process.env.BUSBAR_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const TRANSPORT = 'rabbitmq peers';
const projectRequire = createRequire(new globalThis.URL('../../package.json', import.meta.url));
/** busbar's own amqplib, not the peers' (message-queue-toolkit pins amqplib 0.10). */
const amqplib = projectRequire('amqplib');

let queues = 0;
function freshQueue(library: string): string {
  return `bench-peers-${library}-${process.pid}-${++queues}`;
}

/** A plain connection to declare, count and delete queues beside a library. */
async function adminChannel() {
  const connection = await amqplib.connect(URL);
  const channel = await connection.createChannel();
  return {
    channel,
    /** Waits until `queue` holds `expected` messages (a library without confirms is done when they are there). */
    async holds(queue: string, expected: number, what: string) {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const { messageCount } = await channel.checkQueue(queue);
        if (messageCount === expected) return;
        if (messageCount > expected) throw new Error(`${what}: ${queue} holds ${messageCount}, expected ${expected}`);
        if (Date.now() > deadline)
          throw new Error(`${what}: ${queue} holds ${messageCount} after 60 s, expected ${expected}`);
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    },
    async close(...deleteQueues: string[]) {
      for (const queue of deleteQueues) await channel.deleteQueue(queue).catch(() => {});
      await connection.close().catch(() => {});
    },
  };
}

/** Stores `count` messages with `publish` before the rounds (a consume case's reservoir). */
async function fill(publisher: Publisher, rounds: number): Promise<void> {
  // A round's worth at a time, as the publish case sends them (moleculer's AMQP adapter throws on a full buffer).
  for (let round = 0; round < rounds; round++) await publisher.publish(MESSAGES, new Tally(0, new Map()));
}

/** Raw amqplib: confirm channel, persistent, one sendToQueue per message with PREFETCH awaiting confirms. */
const raw: Side<Publisher & Subscriber> = {
  name: 'raw amqplib',
  async open(rounds, consume) {
    const admin = await adminChannel();
    const queue = freshQueue('raw');
    await admin.channel.assertQueue(queue, { durable: true });
    const connection = await amqplib.connect(URL);
    const confirms = await connection.createConfirmChannel();
    const consumer = await connection.createChannel();
    let published = 0;
    const side = {
      async publish(count: number, tally: Tally) {
        await windowed(count, PREFETCH, async () => {
          await new Promise<void>((resolve, reject) =>
            confirms.sendToQueue(queue, Buffer.from(payload()), { persistent: true }, (error: unknown) =>
              error ? reject(error) : resolve(),
            ),
          );
          tally.count();
        });
        published += count;
        await admin.holds(queue, published, 'raw amqplib');
      },
      round: (count: number, tally: Tally) => gate.round(count, tally, 'raw amqplib'),
      async close() {
        gate.close();
        await connection.close().catch(() => {});
        await admin.close(queue);
      },
    };
    const gate = new RoundGate();
    if (!consume) return side;
    await fill(side, rounds);
    await consumer.prefetch(PREFETCH);
    await consumer.consume(queue, (m: { content: Buffer } | null) => {
      if (!m) return;
      void gate.take(idOf(m.content)).then((counted) => counted && consumer.ack(m));
    });
    return side;
  },
};

/** rascal: a publication with confirms (its default) and a subscription with prefetch, ackOrNack() after handling. */
const rascal: Side<Publisher & Subscriber> = {
  name: 'rascal',
  async open(rounds, consume) {
    const { default: Rascal } = await import('rascal');
    const queue = freshQueue('rascal');
    const config = Rascal.withDefaultConfig({
      vhosts: {
        '/': {
          connection: { url: URL },
          queues: { [queue]: { options: { durable: true } } },
          publications: { bench: { queue, confirm: true, options: { persistent: true } } },
          subscriptions: { bench: { queue, prefetch: PREFETCH } },
        },
      },
    });
    const broker = await Rascal.BrokerAsPromised.create(config);
    broker.on('error', () => {});
    const admin = await adminChannel();
    const gate = new RoundGate();
    let published = 0;
    const side = {
      async publish(count: number, tally: Tally) {
        await windowed(count, PREFETCH, async () => {
          const publication = await broker.publish('bench', Buffer.from(payload()));
          await new Promise<void>((resolve, reject) => {
            publication
              .on('success', () => resolve())
              .on('error', reject)
              .on('return', () => reject(new Error('returned')));
          });
          tally.count();
        });
        published += count;
        await admin.holds(queue, published, 'rascal');
      },
      round: (count: number, tally: Tally) => gate.round(count, tally, 'rascal'),
      async close() {
        gate.close();
        await broker.shutdown().catch(() => {});
        await admin.close(queue);
      },
    };
    if (!consume) return side;
    await fill(side, rounds);
    const subscription = await broker.subscribe('bench');
    subscription.on('error', () => {});
    subscription.on(
      'message',
      (_message: unknown, content: Buffer | string, ackOrNack: (error?: Error, recovery?: unknown) => void) => {
        void gate.take(idOf(content)).then((counted) => {
          // Closing: give it back, or shutting down waits for it to be settled.
          if (counted) ackOrNack();
          else ackOrNack(new Error('the bench is closing'), { strategy: 'nack', requeue: true });
        });
      },
    );
    return side;
  },
};

/** @nestjs/microservices' RMQ transport: ClientRMQ.emit() (confirmed) and ServerRMQ with manual acks. */
const nest: Side<Publisher & Subscriber> = {
  name: '@nestjs/microservices RMQ',
  async open(rounds, consume) {
    const { ClientRMQ, ServerRMQ } = await import('@nestjs/microservices');
    (await import('@nestjs/common')).Logger.overrideLogger(false);
    const { lastValueFrom } = await import('rxjs');
    const queue = freshQueue('nest');
    const options = { urls: [URL], queue, queueOptions: { durable: true }, persistent: true };
    const client = new ClientRMQ(options);
    await client.connect();
    const admin = await adminChannel();
    const gate = new RoundGate();
    let server: InstanceType<typeof ServerRMQ> | undefined;
    let published = 0;
    const side = {
      async publish(count: number, tally: Tally) {
        await windowed(count, PREFETCH, async () => {
          await lastValueFrom(client.emit('bench', payload()), { defaultValue: undefined });
          tally.count();
        });
        published += count;
        await admin.holds(queue, published, 'nest');
      },
      round: (count: number, tally: Tally) => gate.round(count, tally, 'nest'),
      async close() {
        gate.close();
        await server?.close().catch(() => {});
        await client.close().catch(() => {});
        await admin.close(queue);
      },
    };
    if (!consume) return side;
    await fill(side, rounds);
    server = new ServerRMQ({ ...options, noAck: false, prefetchCount: PREFETCH });
    server.addHandler(
      'bench',
      async (data: string, context: { getChannelRef(): { ack(m: unknown): void }; getMessage(): unknown }) => {
        if (await gate.take(idOf(data))) context.getChannelRef().ack(context.getMessage());
      },
      true,
    );
    await new Promise<void>((resolve, reject) =>
      server!.listen((error?: unknown) => (error ? reject(error) : resolve())),
    );
    return side;
  },
};

/** moleculer + @moleculer/channels' AMQP adapter: no confirms; acks after the channel handler resolves. */
const moleculer: Side<Publisher & Subscriber> = {
  name: 'moleculer + @moleculer/channels AMQP (no confirms)',
  async open(rounds, consume) {
    const { ServiceBroker } = (await import('moleculer')).default;
    const { Middleware } = (await import('@moleculer/channels')).default;
    const channel = freshQueue('moleculer');
    const group = 'bench';
    const queue = `${group}.${channel}`;
    const brokerOf = (node: string) =>
      new ServiceBroker({
        logger: false,
        nodeID: `${channel}-${node}`,
        middlewares: [
          Middleware({ adapter: { type: 'AMQP', options: { amqp: { url: URL }, maxInFlight: PREFETCH } } }),
        ],
      });
    const publisher = brokerOf('publisher');
    let subscriber: ReturnType<typeof brokerOf> | undefined;
    const gate = new RoundGate();
    const admin = await adminChannel();
    // Publishing needs the fanout exchange and the group's queue (the adapter makes them when a service subscribes).
    await admin.channel.assertExchange(channel, 'fanout', { durable: true });
    await admin.channel.assertQueue(queue, { durable: true });
    await admin.channel.bindQueue(queue, channel, '');
    await publisher.start();
    let published = 0;
    const side = {
      async publish(count: number, tally: Tally) {
        await windowed(count, PREFETCH, async () => {
          await publisher.sendToChannel(channel, payload(), { persistent: true });
          tally.count();
        });
        published += count;
        await admin.holds(queue, published, 'moleculer');
      },
      round: (count: number, tally: Tally) => gate.round(count, tally, 'moleculer'),
      async close() {
        gate.close();
        await subscriber?.stop().catch(() => {});
        await publisher.stop().catch(() => {});
        await admin.channel.deleteExchange(channel).catch(() => {});
        await admin.close(queue);
      },
    };
    if (!consume) return side;
    await fill(side, rounds);
    subscriber = brokerOf('subscriber');
    subscriber.createService({
      name: 'bench',
      channels: {
        [channel]: {
          group,
          maxInFlight: PREFETCH,
          async handler(data: string) {
            // Closing: fail the message (the adapter then settles it) so that stopping does not wait for it.
            if (!(await gate.take(idOf(data)))) throw new Error('the bench is closing');
          },
        },
      },
    });
    await subscriber.start();
    return side;
  },
};

/** @message-queue-toolkit/amqp: a queue publisher (no confirms: publish() is synchronous) and a queue consumer. */
const toolkit: Side<Publisher & Subscriber> = {
  name: '@message-queue-toolkit/amqp (no confirms)',
  async open(rounds, consume) {
    const { AbstractAmqpQueueConsumer, AbstractAmqpQueuePublisher, AmqpConnectionManager } = await import(
      '@message-queue-toolkit/amqp'
    );
    const { MessageHandlerConfigBuilder } = await import('@message-queue-toolkit/core');
    const { z } = await import('zod');
    const schema = z.object({ id: z.string(), type: z.literal('bench'), payload: z.string() });
    const { hostname, port, username, password } = new globalThis.URL(URL);
    const logger = silentLogger();
    const manager = new AmqpConnectionManager(
      { hostname, port: Number(port || 5672), username, password, vhost: '', useTls: false },
      logger,
    );
    await manager.init();
    const queue = freshQueue('toolkit');
    const common = {
      creationConfig: { queueName: queue, queueOptions: { durable: true } },
      messageTypeResolver: { messageTypePath: 'type' },
      logMessages: false,
    };
    const dependencies = { amqpConnectionManager: manager, logger, errorReporter: { report() {} } };
    const publisher = new (class extends AbstractAmqpQueuePublisher {})(dependencies, {
      ...common,
      messageSchemas: [schema],
    });
    await publisher.init();
    const admin = await adminChannel();
    const gate = new RoundGate();
    let consumer: { close(): Promise<void> } | undefined;
    let published = 0;
    const side = {
      async publish(count: number, tally: Tally) {
        for (let i = 0; i < count; i++) {
          const body = payload();
          publisher.publish({ id: idOf(body), type: 'bench', payload: body }, { publishOptions: { persistent: true } });
          tally.count();
        }
        published += count;
        await admin.holds(queue, published, 'message-queue-toolkit');
      },
      round: (count: number, tally: Tally) => gate.round(count, tally, 'message-queue-toolkit'),
      async close() {
        gate.close();
        await consumer?.close().catch(() => {});
        await publisher.close().catch(() => {});
        // Closes its receivers and stops its reconnecting, which would keep the process alive.
        await manager.close().catch(() => {});
        await admin.close(queue);
      },
    };
    if (!consume) return side;
    await fill(side, rounds);
    // The toolkit has no prefetch option (the channel's default is unbounded): set it before the consumer starts.
    class Consumer extends AbstractAmqpQueueConsumer {
      override async consume() {
        await this.channel.prefetch(PREFETCH);
        return super.consume();
      }
    }
    const handlers = new MessageHandlerConfigBuilder()
      .addConfig(schema, async (message: { id: string }) => {
        // Closing: never settle it (the toolkit would nack on a closed channel and fail the process); closing the
        // channel returns it to the queue.
        if (await gate.take(message.id)) return { result: 'success' };
        return new Promise(() => {});
      })
      .build();
    const started = new Consumer(
      { ...dependencies, consumerErrorResolver: { processError: (error: unknown) => error } },
      { ...common, handlers },
      undefined,
    );
    await started.start();
    consumer = started;
    return side;
  },
};

/** The toolkit's logger, quiet. */
function silentLogger() {
  const quiet = () => {};
  const logger = {
    level: 'silent',
    silent: quiet,
    trace: quiet,
    debug: quiet,
    info: quiet,
    warn: quiet,
    error: quiet,
    fatal: quiet,
    isLevelEnabled: () => false,
    child: () => logger,
  };
  return logger;
}

export default function cases(): BenchCase[] {
  const busbar = busbarSide(URL);
  const peers = [rascal, nest, moleculer, toolkit];
  return [
    ...[busbar, ...peers].map((peer) => publishCase(TRANSPORT, peer, raw)),
    ...[busbarSide(URL, 'handle'), busbarSide(URL, 'for await'), ...peers].map((peer) =>
      consumeCase(TRANSPORT, peer, raw),
    ),
  ];
}
