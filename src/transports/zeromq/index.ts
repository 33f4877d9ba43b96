/**
 * `zeromq://host:port,...` (also `zmq+tcp://`): fedmsg's ZeroMQ bus (docs/wire/zeromq.md). There is no broker:
 * messages go from a PUB socket to every SUB socket subscribed to their topic, at most once. Consumer groups live
 * in the consuming process (groups.ts); nothing is stored, so nothing survives a restart and a group only sees what
 * was published while it existed here.
 */
import { userInfo } from 'node:os';
import { BusError } from '../../errors.ts';
import type {
  Capabilities,
  ConsumeOptions,
  Subscription,
  Transport,
  TransportAdmin,
  TransportConfig,
  TransportFactory,
  TransportMessage,
  TypeInfo,
  TypeStats,
} from '../../transport/contract.ts';
import { DeliveryQueue } from '../../transport/queue.ts';
import { LocalGroup, type Member } from './groups.ts';
import { type ZeromqOptions, zeromqOptions } from './options.ts';
import { openPublisher, type PublisherHandle } from './publisher.ts';
import { SubscriberSocket } from './subscriber.ts';
import { decodeDict, encodeDict, type Publisher, Topics } from './wire.ts';

export const ZEROMQ_CAPABILITIES: Capabilities = Object.freeze({
  replay: false,
  ordering: 'per-key',
  nackDelay: 'emulated',
  ackTimeout: 'emulated',
  partitions: false,
  retention: Object.freeze({ age: false, bytes: false }),
  purge: false,
  lag: true,
  persistence: false,
  // No broker keeps anything for a group that has no subscriber yet.
  createGroup: false,
});

function currentUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'busbar';
  }
}

function port(endpoint: string): string | undefined {
  return /:(\d+)$/.exec(endpoint)?.[1];
}

/** Whether this transport's publications come back to its SUB socket, so a probe can tell when it is subscribed. */
function loopsBack(options: ZeromqOptions): boolean {
  if (options.subscribe.length === 0) return false;
  if (options.relay.length > 0) return true;
  const ports = new Set(options.subscribe.map(port));
  return options.bind.some((endpoint) => ports.has(port(endpoint)));
}

function unsupported(what: string): BusError {
  return new BusError(
    'BUSBAR_ERR_UNSUPPORTED',
    `the zeromq transport cannot ${what}: ZeroMQ has no broker that stores messages (see docs/transports.md); ` +
      'use a broker transport (embedded, kafka, rabbitmq, ...) and `busbar bridge` from the ZeroMQ bus to it',
  );
}

class ZeromqTransport implements Transport {
  readonly name = 'zeromq';
  readonly capabilities = ZEROMQ_CAPABILITIES;
  readonly admin: TransportAdmin;
  readonly #options: ZeromqOptions;
  readonly #topics: Topics;
  readonly #publisher: PublisherHandle | undefined;
  readonly #subscriber: SubscriberSocket | undefined;
  readonly #identity: Publisher;
  /** Types known to this transport (registered, published or consumed here), with their groups. */
  readonly #types = new Map<string, Map<string, LocalGroup>>();
  /** Open subscriptions, each with the function that ends it with an error (the SUB socket failed). */
  readonly #subscriptions = new Map<Subscription, (error: unknown) => void>();
  #closed = false;

  constructor(options: ZeromqOptions, publisher: PublisherHandle | undefined) {
    this.#options = options;
    this.#topics = new Topics(options.topicPrefix, options.environment);
    this.#publisher = publisher;
    let i = 0;
    this.#identity = { username: currentUser(), nextI: () => ++i };
    this.#subscriber =
      options.subscribe.length > 0
        ? new SubscriberSocket(
            options.subscribe,
            options.highWaterMark,
            this.#topics,
            (type, frame) => this.#receive(type, frame),
            (error) => this.#fail(error),
          )
        : undefined;
    this.admin = {
      ensureType: async (type) => void this.#type(type),
      deleteType: async (type) => this.#deleteType(type),
      listTypes: async () => [...this.#types.keys()].map((type): TypeInfo => ({ type, partitions: 1, retention: {} })),
      setPartitions: async () => {
        throw unsupported('add partitions');
      },
      setRetention: async () => {
        throw unsupported('keep messages for a time or a size (retention)');
      },
      purge: async () => {
        throw unsupported('purge a type');
      },
      stats: async (type) => this.#stats(type),
    };
  }

  #checkOpen(): void {
    if (this.#closed) throw new BusError('BUSBAR_ERR_CLOSED', 'the zeromq transport is closed');
  }

  #type(type: string): Map<string, LocalGroup> {
    let groups = this.#types.get(type);
    if (!groups) {
      groups = new Map();
      this.#types.set(type, groups);
    }
    return groups;
  }

  #receive(type: string, frame: Uint8Array): void {
    const groups = this.#types.get(type);
    if (!groups || groups.size === 0) return;
    const message = decodeDict(type, frame);
    for (const group of groups.values()) group.offer(message);
  }

  #fail(error: unknown): void {
    const cause = new BusError('BUSBAR_ERR_CONNECTION', `the zeromq subscriber failed: ${(error as Error).message}`, {
      cause: error,
    });
    for (const fail of [...this.#subscriptions.values()]) fail(cause);
  }

  async publish(type: string, batch: readonly TransportMessage[]): Promise<void> {
    this.#checkOpen();
    if (!this.#publisher) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_CONFIG',
        'this zeromq bus cannot publish: add ?bind=tcp://*:<port> to publish on your own endpoint, or ' +
          '?relay=tcp://<relay host>:<port> to publish through a fedmsg-relay',
      );
    }
    this.#type(type);
    const topic = this.#topics.topic(type);
    const frames = batch.map((message) => [topic, encodeDict(message, topic, this.#identity)] as const);
    await this.#publisher.socket.send(frames);
  }

  consume(options: ConsumeOptions): Subscription {
    this.#checkOpen();
    const subscriber = this.#subscriber;
    if (!subscriber) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_CONFIG',
        'this zeromq bus has no endpoints to subscribe to: list them in the URL, zeromq://host:port,host:port',
      );
    }
    const queue = new DeliveryQueue({ onLeave: () => close() });
    const joined: { group: LocalGroup; member: Member }[] = [];
    const created: LocalGroup[] = [];
    for (const type of options.types) {
      const groups = this.#type(type);
      let group = groups.get(options.group);
      if (!group) {
        group = new LocalGroup(type, options.group, this.#options.groupBuffer);
        groups.set(options.group, group);
        created.push(group);
      }
      subscriber.subscribe(type);
      const member: Member = {
        prefetch: options.prefetch,
        ackTimeoutMs: options.ackTimeoutMs,
        outstanding: 0,
        deliver: (delivery) => queue.push(delivery),
      };
      group.join(member);
      joined.push({ group, member });
    }
    if (created.length > 0) {
      const probeVia = loopsBack(this.#options) ? this.#publisher?.socket : undefined;
      const armed = (async () => {
        if (probeVia) await subscriber.probe(probeVia, this.#options.readyTimeoutMs);
        for (const group of created) group.arm();
      })();
      for (const group of created) group.armed = armed;
    }
    const ready = Promise.all(joined.map(({ group }) => group.armed)).then(() => {});
    const subscriptions = this.#subscriptions;
    const end = (error?: unknown) => {
      if (queue.ended) return;
      queue.end(error);
      queue.drain();
      for (const { group, member } of joined) group.leave(member);
      subscriptions.delete(subscription);
    };
    const close = async () => end();
    const subscription: Subscription = {
      ready,
      close,
      [Symbol.asyncIterator]: () => queue[Symbol.asyncIterator](),
    };
    subscriptions.set(subscription, end);
    options.signal?.addEventListener('abort', () => void close(), { once: true });
    return subscription;
  }

  #deleteType(type: string): void {
    const groups = this.#types.get(type);
    if (!groups) return;
    this.#types.delete(type);
    for (const group of groups.values()) group.close();
    this.#subscriber?.unsubscribe(type);
  }

  #stats(type?: string): TypeStats[] {
    const types = type === undefined ? [...this.#types.keys()] : this.#types.has(type) ? [type] : [];
    return types.map((name) => ({
      type: name,
      depth: -1,
      bytes: -1,
      partitions: 1,
      groups: [...this.#types.get(name)!.values()].map((group) => group.stats()),
    }));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#subscriptions.keys()].map((s) => s.close()));
    for (const groups of this.#types.values()) for (const group of groups.values()) group.close();
    await Promise.all([this.#subscriber?.close(), this.#publisher?.release()]);
  }
}

const createZeromqTransport: TransportFactory = async (config: TransportConfig) => {
  const options = zeromqOptions(config);
  const publisher = await openPublisher(options);
  return new ZeromqTransport(options, publisher);
};

export default createZeromqTransport;
