/**
 * Kafka (BUSBAR_TEST_KAFKA_URL, default kafka://127.0.0.1:9092): busbar and the kafkajs-based libraries users pick
 * instead, each beside raw @platformatic/kafka (busbar's own client and version), on topics of 4 partitions made
 * for the run and deleted after it. Durability: every producer waits for acks from all in-sync replicas (kafkajs'
 * and @platformatic/kafka's acks -1); an ack is an offset commit after the handler. Kafka has no prefetch: each
 * consumer here holds at most 100 unacked messages where the library lets it say so.
 * - @nestjs/microservices Kafka transport (ClientKafka / ServerKafka, no Nest application around them): emit()
 *   resolves on kafkajs' send(); ServerKafka runs kafkajs' autoCommit: an offset is committed (every 5 s or 100
 *   messages, kafkajs' defaults) once the handler has resolved; one message at a time per partition.
 * - moleculer + @moleculer/channels' Kafka adapter: sendToChannel() resolves on kafkajs' send(); the adapter commits
 *   each message's offset after the handler (autoCommit off), one message at a time per partition.
 * The kafkajs peers' consume reservoirs are stored in their own encoding by the raw producer (their one-message
 * sends would take minutes).
 * - raw @platformatic/kafka: sends of 100 messages, one at a time (many single sends in flight trip its idempotent
 *   producer's sequence numbers); a stream consumer that pauses at PREFETCH
 *   unacked messages and commits after the handler, one commit in flight with the offsets meanwhile folded in.
 */
import { Admin, Consumer, type Message, Producer } from '@platformatic/kafka';
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

const URL = process.env.BUSBAR_TEST_KAFKA_URL ?? 'kafka://127.0.0.1:9092';
const BROKERS = URL.replace(/^kafka:\/\//, '').split(',');
const TRANSPORT = 'kafka peers';
const PARTITIONS = 4;

let topics = 0;
/** A topic of PARTITIONS partitions, made with @platformatic/kafka's admin, deleted on close. */
async function freshTopic(library: string) {
  const name = `bench-peers-${library}-${process.pid}-${++topics}`;
  const admin = new Admin({ clientId: 'bench-peers', bootstrapBrokers: BROKERS });
  await admin.createTopics({ topics: [name], partitions: PARTITIONS, replicas: 1 });
  // The controller has it; wait until the metadata lists every partition, as a producer will look for them.
  for (const deadline = Date.now() + 30_000; ; ) {
    const metadata = await admin.metadata({ topics: [name], forceUpdate: true }).catch(() => undefined);
    if ((metadata?.topics.get(name)?.partitionsCount ?? 0) >= PARTITIONS) break;
    if (Date.now() > deadline) throw new Error(`kafka: topic ${name} not in the metadata after 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    name,
    async delete() {
      await admin.deleteTopics({ topics: [name] }).catch(() => {});
      await admin.close().catch(() => {});
    },
  };
}

/**
 * Stores `rounds` rounds' messages as the library would have sent them (`encode` gives its record value), in
 * batches through the raw producer: kafkajs-based peers send one message per request, which would take minutes.
 */
async function fillRaw(topic: string, rounds: number, encode: (payload: string) => string): Promise<void> {
  const producer = new Producer({ clientId: 'bench-peers', bootstrapBrokers: BROKERS, idempotent: true, acks: -1 });
  try {
    for (let sent = 0; sent < MESSAGES * rounds; sent += PREFETCH) {
      const messages = Array.from({ length: PREFETCH }, () => ({ topic, value: Buffer.from(encode(payload())) }));
      await producer.send({ messages });
    }
  } finally {
    await producer.close();
  }
}

async function fill(publisher: Publisher, rounds: number): Promise<void> {
  for (let round = 0; round < rounds; round++) await publisher.publish(MESSAGES, new Tally(0, new Map()));
}

const raw: Side<Publisher & Subscriber> = {
  name: 'raw @platformatic/kafka',
  async open(rounds, consume) {
    const topic = await freshTopic('raw');
    const producer = new Producer({ clientId: 'bench-peers', bootstrapBrokers: BROKERS, idempotent: true, acks: -1 });
    let consumer: Consumer | undefined;
    const gate = new RoundGate();
    const side = {
      async publish(count: number, tally: Tally) {
        // Batches, one at a time: single-message sends with many in flight trip the idempotent producer's
        // sequence numbers (OUT_OF_ORDER_SEQUENCE_NUMBER) in this client.
        for (let sent = 0; sent < count; sent += PREFETCH) {
          const size = Math.min(PREFETCH, count - sent);
          const messages = Array.from({ length: size }, () => ({ topic: topic.name, value: Buffer.from(payload()) }));
          await producer.send({ messages });
          tally.count(size);
        }
      },
      round: (count: number, tally: Tally) => gate.round(count, tally, 'raw @platformatic/kafka'),
      async close() {
        gate.close();
        await consumer?.close(true).catch(() => {});
        await producer.close().catch(() => {});
        await topic.delete();
      },
    };
    if (!consume) return side;
    await fill(side, rounds);
    consumer = new Consumer({ groupId: `${topic.name}-g`, clientId: 'bench-peers', bootstrapBrokers: BROKERS });
    const stream = await consumer.consume({ topics: [topic.name], mode: 'earliest', autocommit: false });
    type Record = Message<Buffer, Buffer, Buffer, Buffer>;
    const latest = new Map<number, Record>();
    let inflight: Promise<void> | undefined;
    let unacked = 0;
    const flush = (): void => {
      if (inflight || latest.size === 0 || !consumer) return;
      const offsets = [...latest.values()].map((m) => ({
        topic: m.topic,
        partition: m.partition,
        offset: m.offset + 1n,
        leaderEpoch: -1,
      }));
      latest.clear();
      inflight = consumer
        .commit({ offsets })
        .catch(() => {})
        .finally(() => {
          inflight = undefined;
          flush();
        });
    };
    stream.on('data', (message: Record) => {
      if (++unacked >= PREFETCH) stream.pause();
      void gate.take(idOf(message.value)).then((counted) => {
        if (!counted) return;
        const last = latest.get(message.partition);
        if (!last || last.offset < message.offset) latest.set(message.partition, message);
        flush();
        if (--unacked < PREFETCH && stream.isPaused()) stream.resume();
      });
    });
    stream.on('error', () => {});
    return side;
  },
};

/** @nestjs/microservices' Kafka transport. */
const nest: Side<Publisher & Subscriber> = {
  name: '@nestjs/microservices Kafka (kafkajs)',
  async open(rounds, consume) {
    const { ClientKafka, ServerKafka } = await import('@nestjs/microservices');
    (await import('@nestjs/common')).Logger.overrideLogger(false);
    const { lastValueFrom } = await import('rxjs');
    const topic = await freshTopic('nest');
    const client = new ClientKafka({
      client: { clientId: topic.name, brokers: BROKERS, logLevel: 0 },
      producerOnlyMode: true,
    });
    await client.connect();
    let server: InstanceType<typeof ServerKafka> | undefined;
    const gate = new RoundGate();
    const side = {
      async publish(count: number, tally: Tally) {
        await windowed(count, PREFETCH, async () => {
          await lastValueFrom(client.emit(topic.name, payload()), { defaultValue: undefined });
          tally.count();
        });
      },
      round: (count: number, tally: Tally) => gate.round(count, tally, 'nest kafka'),
      async close() {
        gate.close();
        await server?.close().catch(() => {});
        await client.close().catch(() => {});
        await topic.delete();
      },
    };
    if (!consume) return side;
    // ClientKafka sends a string value as it is.
    await fillRaw(topic.name, rounds, (body) => body);
    server = new ServerKafka({
      client: { clientId: topic.name, brokers: BROKERS, logLevel: 0 },
      consumer: { groupId: `${topic.name}-g` },
      subscribe: { fromBeginning: true },
    });
    server.addHandler(
      topic.name,
      async (data: unknown) => {
        // Closing: fail it, so that kafkajs does not commit a message this round never counted.
        if (!(await gate.take(idOf(String(data))))) throw new Error('the bench is closing');
      },
      true,
    );
    await new Promise<void>((resolve, reject) =>
      server!.listen((error?: unknown) => (error ? reject(error) : resolve())),
    );
    return side;
  },
};

/** moleculer + @moleculer/channels' Kafka adapter. */
const moleculer: Side<Publisher & Subscriber> = {
  name: 'moleculer + @moleculer/channels Kafka (kafkajs)',
  async open(rounds, consume) {
    const { ServiceBroker } = (await import('moleculer')).default;
    const { Middleware } = (await import('@moleculer/channels')).default;
    const topic = await freshTopic('moleculer');
    const brokerOf = (node: string) =>
      new ServiceBroker({
        logger: false,
        nodeID: `${topic.name}-${node}`,
        middlewares: [
          Middleware({
            adapter: { type: 'Kafka', options: { kafka: { brokers: BROKERS, logLevel: 0 }, maxInFlight: PREFETCH } },
          }),
        ],
      });
    const publisher = brokerOf('publisher');
    await publisher.start();
    let subscriber: ReturnType<typeof brokerOf> | undefined;
    const gate = new RoundGate();
    const side = {
      async publish(count: number, tally: Tally) {
        await windowed(count, PREFETCH, async () => {
          await publisher.sendToChannel(topic.name, payload());
          tally.count();
        });
      },
      round: (count: number, tally: Tally) => gate.round(count, tally, 'moleculer kafka'),
      async close() {
        gate.close();
        await subscriber?.stop().catch(() => {});
        await publisher.stop().catch(() => {});
        await topic.delete();
      },
    };
    if (!consume) return side;
    // The adapter's JSON serializer.
    await fillRaw(topic.name, rounds, (body) => JSON.stringify(body));
    subscriber = brokerOf('subscriber');
    subscriber.createService({
      name: 'bench',
      channels: {
        [topic.name]: {
          group: 'bench',
          maxInFlight: PREFETCH,
          kafka: { fromBeginning: true },
          async handler(data: string) {
            if (!(await gate.take(idOf(data)))) throw new Error('the bench is closing');
          },
        },
      },
    });
    await subscriber.start();
    return side;
  },
};

export default function cases(): BenchCase[] {
  const peers = [nest, moleculer];
  return [
    ...[busbarSide(URL, undefined, PARTITIONS), ...peers].map((peer) => publishCase(TRANSPORT, peer, raw)),
    ...[busbarSide(URL, 'handle', PARTITIONS), busbarSide(URL, 'for await', PARTITIONS), ...peers].map((peer) =>
      consumeCase(TRANSPORT, peer, raw),
    ),
  ];
}
