/**
 * `kafka://h1:9092,h2:9092` — Apache Kafka through @platformatic/kafka (pure TypeScript, maintained).
 * A message type is a topic; publish is an idempotent producer with acks=all; consumer groups are Kafka's, with
 * per-message acks, ack timeouts and delayed nacks emulated on top of offsets (see subscription.ts).
 * Wire mapping: docs/wire/kafka.md.
 */
import { Admin, compatibilityPartitioner, Producer } from '@platformatic/kafka';
import { BusError, checkTypeName } from '../../errors.ts';
import type {
  Capabilities,
  ConsumeOptions,
  Subscription,
  Transport,
  TransportConfig,
  TransportFactory,
  TransportMessage,
} from '../../transport/contract.ts';
import { KafkaAdmin } from './admin.ts';
import { hasKafkaError, kafkaError } from './errors.ts';
import { type KafkaSettings, kafkaSettings } from './options.ts';
import { KafkaSubscription, type SubscriptionHost } from './subscription.ts';
import { checkKafkaType, type KafkaRecord, toRecord } from './wire.ts';

export const KAFKA_CAPABILITIES: Capabilities = Object.freeze({
  replay: true,
  // Records of one key land in one partition, which one group member reads in order.
  ordering: 'per-key',
  // Delayed nacks go through the type's retry topic; Kafka itself has no per-message redelivery.
  nackDelay: 'emulated',
  ackTimeout: 'emulated',
  partitions: true,
  // Kafka trims whole closed segments (1 MiB at the least), so a byte limit below a segment never trims.
  retention: Object.freeze({ age: true, bytes: false }),
  purge: true,
  lag: true,
  persistence: true,
  // Fetch without a group (admin.peek): positions are <partition>:<offset>, times via ListOffsets by timestamp.
  peek: Object.freeze({ position: true, time: true }),
  // The group's committed offsets, set without a member (admin.ensureGroup).
  createGroup: true,
});

type Records = Producer<Buffer, Buffer, Buffer, Buffer>;

interface PendingSend {
  records: KafkaRecord[];
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * A produce against a broker that is gone: the client's own attempts before it gives up (250 ms apart), and how
 * long busbar then keeps looking the leaders up again and resending (see #send).
 */
const CLIENT_SEND_RETRIES = 8;
const FAILOVER_PATIENCE_MS = 60_000;
const FAILOVER_PAUSE_MS = 250;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Limits of one folded send (a Kafka request holds many batches; keep each well under the broker's limits). */
const MAX_SEND_RECORDS = 5000;
const MAX_SEND_BYTES = 8 * 1024 * 1024;

class KafkaTransport implements Transport, SubscriptionHost {
  readonly name = 'kafka';
  readonly capabilities = KAFKA_CAPABILITIES;
  readonly settings: KafkaSettings;
  readonly admin: KafkaAdmin;
  readonly #client: Admin;
  readonly #producer: Records;
  readonly #subscriptions = new Set<KafkaSubscription>();
  readonly #waiting: PendingSend[] = [];
  /** The loop sending waiting batches, while there are any. */
  #sendLoop: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(settings: KafkaSettings) {
    this.settings = settings;
    const base = {
      bootstrapBrokers: [...settings.bootstrapBrokers],
      connectTimeout: settings.connectTimeoutMs,
      ...(settings.tls ? { tls: settings.tls } : {}),
      ...(settings.sasl ? { sasl: settings.sasl } : {}),
    };
    this.#client = new Admin({ ...base, clientId: `${settings.clientId}-admin` });
    this.#producer = new Producer<Buffer, Buffer, Buffer, Buffer>({
      ...base,
      clientId: `${settings.clientId}-producer`,
      idempotent: true,
      acks: -1,
      // Same partition for a key as Java clients and librdkafka's murmur2_random partitioner.
      partitioner: compatibilityPartitioner,
      retries: CLIENT_SEND_RETRIES,
      retryDelay: 250,
    });
    this.admin = new KafkaAdmin(this.#client, settings, (group, type) => this.#inflight(group, type));
    // Client errors surface through the calls that hit them; unhandled 'error' events must not end the process.
    this.#client.on('error', () => {});
    this.#producer.on('error', () => {});
  }

  #inflight(group: string, type: string): number | undefined {
    let found = false;
    let total = 0;
    for (const s of this.#subscriptions) {
      if (s.group === group && s.types.includes(type)) {
        found = true;
        total += s.inflight;
      }
    }
    return found ? total : undefined;
  }

  /** Resolves once a broker answered a metadata request. */
  async ping(): Promise<void> {
    await this.#client.metadata({ topics: [] });
  }

  #checkOpen(): void {
    if (this.#closing) throw new BusError('BUSBAR_ERR_CLOSED', 'the kafka transport is closed: connect a new bus');
  }

  async ensureTypes(types: readonly string[]): Promise<void> {
    for (const type of types) await this.admin.ensureKnown(type);
  }

  /**
   * Sends one batch at a time, folding batches that wait into the next send: the idempotent producer of
   * @platformatic/kafka 1.x gives concurrent sends to a partition the same sequence number, and the broker then
   * drops all but one as duplicates while acknowledging every one (platformatic/kafka#326).
   */
  produce(records: KafkaRecord[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#waiting.push({ records, resolve, reject });
      this.#sendLoop ??= this.#sendWaiting();
    });
  }

  async #sendWaiting(): Promise<void> {
    while (this.#waiting.length > 0) {
      const taken: PendingSend[] = [];
      let count = 0;
      let bytes = 0;
      while (this.#waiting.length > 0 && (taken.length === 0 || (count < MAX_SEND_RECORDS && bytes < MAX_SEND_BYTES))) {
        const next = this.#waiting.shift()!;
        taken.push(next);
        count += next.records.length;
        bytes += next.records.reduce((sum, r) => sum + (r.value?.byteLength ?? 0), 0);
      }
      try {
        await this.#send(taken.flatMap((t) => t.records));
        for (const t of taken) t.resolve();
      } catch (error) {
        for (const t of taken) t.reject(error);
      }
    }
    this.#sendLoop = undefined;
  }

  /**
   * One produce, through a failover. The client retries a produce against the leader it looked up first for as long
   * as it has retries, also when that broker is dead and another replica has taken over (@platformatic/kafka 1.35 and
   * 2.12; an idempotent producer's default is unlimited retries, so a send hung for ever). busbar gives the client a
   * few retries, then drops its metadata and sends again, until the new leader takes the batch or the patience runs
   * out. A resend of a batch the old leader did write is dropped by the broker: the idempotent producer's sequence
   * numbers only move on success.
   */
  async #send(records: KafkaRecord[]): Promise<void> {
    const giveUpAt = Date.now() + FAILOVER_PATIENCE_MS;
    for (;;) {
      try {
        await this.#producer.send({ messages: records });
        return;
      } catch (error) {
        if (this.#closing || Date.now() >= giveUpAt || kafkaError(error, 'BUSBAR_ERR_PUBLISH', '').retryable !== true) {
          throw error;
        }
        this.#producer.clearMetadata();
        await sleep(FAILOVER_PAUSE_MS);
      }
    }
  }

  closed(subscription: KafkaSubscription): void {
    this.#subscriptions.delete(subscription);
  }

  async publish(type: string, batch: readonly TransportMessage[]): Promise<void> {
    this.#checkOpen();
    checkKafkaType(type);
    if (batch.length === 0) return;
    await this.admin.ensureKnown(type);
    const records = batch.map((message) => toRecord(type, message));
    try {
      await this.produce(records);
    } catch (error) {
      if (hasKafkaError(error, 'UNKNOWN_TOPIC_OR_PARTITION') && !this.#closing) {
        // Deleted behind this process's back: create it again, once.
        this.admin.forget(type);
        await this.admin.ensureKnown(type);
        try {
          await this.produce(records);
          return;
        } catch (again) {
          throw kafkaError(again, 'BUSBAR_ERR_PUBLISH', `could not publish ${batch.length} message(s) to '${type}'`);
        }
      }
      if (this.#closing) {
        throw new BusError('BUSBAR_ERR_CLOSED', `the kafka transport closed while publishing to '${type}'`, {
          cause: error,
        });
      }
      throw kafkaError(error, 'BUSBAR_ERR_PUBLISH', `could not publish ${batch.length} message(s) to '${type}'`);
    }
  }

  consume(options: ConsumeOptions): Subscription {
    this.#checkOpen();
    for (const type of options.types) checkKafkaType(type);
    checkTypeName(options.group, 'consumer group');
    const subscription = new KafkaSubscription(this, options);
    this.#subscriptions.add(subscription);
    return subscription;
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    // Subscriptions hand unacked messages back through the retry topic, so the producer closes after them.
    await Promise.allSettled([...this.#subscriptions].map((s) => s.close()));
    await this.#sendLoop;
    await Promise.allSettled([this.#producer.close(), this.#client.close()]);
  }
}

const createKafkaTransport: TransportFactory = async (config: TransportConfig) => {
  const transport = new KafkaTransport(kafkaSettings(config));
  try {
    await transport.ping();
  } catch (error) {
    await transport.close();
    throw kafkaError(
      error,
      'BUSBAR_ERR_CONNECTION',
      `could not reach Kafka at ${config.endpoints.join(',') || '127.0.0.1:9092'}: is the broker running? (scripts/brokers/kafka start)`,
    );
  }
  return transport;
};

export default createKafkaTransport;
