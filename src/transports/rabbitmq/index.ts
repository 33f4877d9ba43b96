/**
 * `amqp://` and `amqps://`: RabbitMQ over AMQP 0-9-1 with amqplib. One topic exchange `busbar` (routing key = message
 * type), a stream per type as its replay log, a quorum queue per (type, group). See docs/wire/rabbitmq.md.
 */
import { BusError, checkTypeName, toBusError } from '../../errors.ts';
import type {
  Capabilities,
  ConsumeOptions,
  GroupStats,
  Offset,
  PeekedMessage,
  PeekOptions,
  Retention,
  Subscription,
  Transport,
  TransportAdmin,
  TransportConfig,
  TransportFactory,
  TransportMessage,
  TypeInfo,
  TypeOptions,
  TypeStats,
} from '../../transport/contract.ts';
import { checkPartitionCount } from '../../transport/rules.ts';
import { Broker } from './broker.ts';
import { ReconnectingConnection } from './connection.ts';
import { rabbitOptions } from './options.ts';
import { peekLog } from './peek.ts';
import type { RegistryDocument } from './registry.ts';
import { InflightCounter, RabbitSubscription } from './subscription.ts';
import { groupQueue, initQueue, logQueue } from './wire.ts';

export const RABBITMQ_CAPABILITIES: Capabilities = Object.freeze({
  // A new `earliest` group is seeded from the type's stream (its replay log, kept for `replayMaxAge`).
  replay: true,
  // Competing consumers on one queue, and redeliveries, reorder messages.
  ordering: 'none',
  // Per-delay TTL queues that dead-letter back into the group queue.
  nackDelay: 'emulated',
  // A timer per delivery nacks it with requeue.
  ackTimeout: 'emulated',
  partitions: false,
  // Queue arguments cannot change after creation over AMQP 0-9-1; retention is a RabbitMQ policy (see docs).
  retention: Object.freeze({ age: false, bytes: false }),
  purge: true,
  lag: true,
  persistence: true,
  // The type's replay log (a stream) read from an x-stream-offset (admin.peek): positions are stream offsets.
  peek: Object.freeze({ position: true, time: true }),
  // The group's quorum queue, declared and bound without a consumer, keeps what is routed to it.
  createGroup: true,
});

const noop = () => {};

function liveTypes(document: RegistryDocument): string[] {
  return Object.entries(document.types)
    .filter(([, entry]) => !entry.deleted)
    .map(([type]) => type)
    .sort();
}

/** Failures of the client library become BusErrors that name the operation. */
async function brokerCall<T>(what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw toBusError(error, 'BUSBAR_ERR_BROKER', `RabbitMQ could not ${what}`);
  }
}

class RabbitAdmin implements TransportAdmin {
  readonly #broker: Broker;
  readonly #inflight: InflightCounter;

  constructor(broker: Broker, inflight: InflightCounter) {
    this.#broker = broker;
    this.#inflight = inflight;
  }

  async ensureType(type: string, options?: TypeOptions): Promise<void> {
    if (options?.partitions !== undefined && options.partitions !== 1) this.#noPartitions(type, options.partitions);
    await brokerCall(`declare type ${type}`, () => this.#broker.ensureType(type));
  }

  ensureGroup(type: string, group: string, offset: Offset): Promise<void> {
    checkTypeName(type);
    checkTypeName(group, 'consumer group');
    return brokerCall(`create group ${group} on ${type}`, () => this.#broker.prepareGroup(type, group, offset));
  }

  deleteType(type: string): Promise<void> {
    return brokerCall(`delete type ${type}`, () => this.#deleteType(type));
  }

  async #deleteType(type: string): Promise<void> {
    const document = await this.#broker.registry.read();
    const groups = Object.keys(document.types[type]?.groups ?? {});
    await this.#broker.withScratchChannel(async (channel) => {
      for (const group of groups) {
        await channel.deleteQueue(groupQueue(type, group));
        await channel.deleteQueue(initQueue(type, group));
      }
      await channel.deleteQueue(logQueue(type));
    });
    this.#broker.forgetType(type);
    await this.#broker.registry.update((doc) => {
      if (!doc.types[type] || doc.types[type].deleted) return false;
      doc.types[type] = { at: Date.now(), deleted: true, groups: {} };
      return true;
    });
  }

  async listTypes(): Promise<TypeInfo[]> {
    const document = await brokerCall('read the type registry', () => this.#broker.registry.read());
    return liveTypes(document).map((type) => ({ type, partitions: 1, retention: {} }));
  }

  async setPartitions(type: string, partitions: number): Promise<void> {
    checkPartitionCount(type, partitions);
    if (partitions !== 1) this.#noPartitions(type, partitions);
    await brokerCall(`declare type ${type}`, () => this.#broker.ensureType(type));
  }

  async setRetention(type: string, retention: Retention): Promise<void> {
    if (retention.maxAgeMs === undefined && retention.maxBytes === undefined) return;
    throw new BusError(
      'BUSBAR_ERR_UNSUPPORTED',
      `RabbitMQ cannot change queue limits of ${type} over AMQP 0-9-1: set a policy instead, e.g. rabbitmqctl set_policy busbar-${type} '^busbar:${type.replace(/[.]/g, '\\.')}(:|$)' '{"max-age":"1h","max-length-bytes":1000000,"message-ttl":3600000}' --apply-to queues`,
    );
  }

  purge(type: string): Promise<void> {
    return brokerCall(`purge type ${type}`, () => this.#purge(type));
  }

  async #purge(type: string): Promise<void> {
    const document = await this.#broker.registry.read();
    const entry = document.types[type];
    if (!entry || entry.deleted) return;
    await this.#broker.withScratchChannel(async (channel) => {
      for (const group of Object.keys(entry.groups)) {
        await channel.purgeQueue(groupQueue(type, group)).catch(noop);
      }
      // A stream cannot be purged: replace the replay log so a new `earliest` group does not see purged messages.
      await channel.deleteQueue(logQueue(type));
    });
    this.#broker.forgetType(type);
    await this.#broker.ensureType(type);
  }

  /** Reads the type's replay log (a stream) from an offset or a time: nothing is consumed (see peek.ts). */
  peek(type: string, options: PeekOptions): Promise<PeekedMessage[]> {
    return brokerCall(`peek at type ${type}`, () => peekLog(this.#broker, type, options));
  }

  async stats(type?: string): Promise<TypeStats[]> {
    const document = await brokerCall('read the type registry', () => this.#broker.registry.read());
    let types = liveTypes(document);
    if (type !== undefined) {
      if (!types.includes(type)) {
        throw new BusError(
          'BUSBAR_ERR_UNKNOWN_TYPE',
          `no message type ${type} on this RabbitMQ: register it or publish to it first`,
        );
      }
      types = [type];
    }
    return Promise.all(
      types.map(async (name): Promise<TypeStats> => {
        const groups = await brokerCall(`read the queues of ${name}`, () =>
          Promise.all(
            Object.keys(document.types[name]!.groups)
              .sort()
              .map((group) => this.#groupStats(name, group)),
          ),
        );
        return { type: name, depth: -1, bytes: -1, partitions: 1, groups: groups.filter((g) => g !== undefined) };
      }),
    );
  }

  async #groupStats(type: string, group: string): Promise<GroupStats | undefined> {
    const queue = groupQueue(type, group);
    try {
      const { messageCount: ready, consumerCount: consumers } = await this.#broker.withScratchChannel((channel) =>
        channel.checkQueue(queue),
      );
      const inflight = this.#inflight.get(queue);
      return { group, unread: ready + inflight, inflight, oldestAgeMs: null, consumers };
    } catch (error) {
      if ((error as { code?: number }).code === 404) return undefined;
      throw error;
    }
  }

  #noPartitions(type: string, partitions: number): never {
    throw new BusError(
      'BUSBAR_ERR_UNSUPPORTED',
      `the RabbitMQ transport has no partitions (asked ${partitions} for ${type}): a group's queue feeds any number of consumers, so add consumers to scale out`,
    );
  }
}

class RabbitTransport implements Transport {
  readonly name = 'rabbitmq';
  readonly capabilities = RABBITMQ_CAPABILITIES;
  readonly admin: TransportAdmin;
  readonly #broker: Broker;
  readonly #inflight = new InflightCounter();
  readonly #subscriptions = new Set<RabbitSubscription>();
  #closing: Promise<void> | undefined;

  constructor(broker: Broker) {
    this.#broker = broker;
    this.admin = new RabbitAdmin(broker, this.#inflight);
  }

  #checkOpen(): void {
    if (this.#closing) throw new BusError('BUSBAR_ERR_CLOSED', 'the RabbitMQ transport is closed: connect a new bus');
  }

  async publish(type: string, batch: readonly TransportMessage[]): Promise<void> {
    this.#checkOpen();
    if (batch.length === 0) return;
    try {
      await this.#broker.publish(type, batch);
    } catch (error) {
      if (error instanceof BusError) throw error;
      // amqplib rejects calls on a channel the broker closed under them with a plain Error ("Channel ended, no reply
      // will be forthcoming"), e.g. while another process declares the same type; the next call opens a new channel.
      throw new BusError(
        'BUSBAR_ERR_PUBLISH',
        `could not publish ${batch.length} message(s) to '${type}': ${(error as Error).message}; retry`,
        { cause: error, retryable: true },
      );
    }
  }

  consume(options: ConsumeOptions): Subscription {
    this.#checkOpen();
    const subscription = new RabbitSubscription(this.#broker, options, this.#inflight, (s) =>
      this.#subscriptions.delete(s),
    );
    this.#subscriptions.add(subscription);
    return subscription;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#subscriptions].map((s) => s.close()));
      await this.#broker.close();
      await this.#broker.connection.close();
    })();
    return this.#closing;
  }
}

const createRabbitTransport: TransportFactory = async (config: TransportConfig) => {
  const options = rabbitOptions(config);
  const connection = new ReconnectingConnection(options);
  await connection.start();
  return new RabbitTransport(new Broker(connection, options));
};

export default createRabbitTransport;
