/**
 * `amqp10://` and `amqps10://`: AMQP 1.0 with rhea, proven on Apache ActiveMQ Artemis. An address per message type
 * (multicast), a durable queue per consumer group `<type>:<group>`, read by its fully qualified name; admin and stats
 * through Artemis's management address. Several endpoints fail over (connection.ts). See docs/wire/amqp10.md.
 */
import type { Connection } from 'rhea';
import { BusError, toBusError } from '../../errors.ts';
import type {
  Capabilities,
  ConsumeOptions,
  GroupStats,
  Offset,
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
import { FailoverConnection } from './connection.ts';
import { Management } from './management.ts';
import { type Amqp10Options, amqp10Options } from './options.ts';
import { Publisher } from './publisher.ts';
import { Amqp10Subscription, createGroupQueue, type Site } from './subscription.ts';
import { GROUP_SEPARATOR, groupQueue, toAmqp } from './wire.ts';

export const AMQP10_CAPABILITIES: Capabilities = Object.freeze({
  // A group is a queue: it holds what was sent after it was created, nothing older (a multicast address keeps no log).
  replay: false,
  // Competing consumers on one queue, and redeliveries, reorder messages.
  ordering: 'none',
  // Artemis's scheduled delivery (x-opt-delivery-delay) on a copy sent to the group's queue.
  nackDelay: 'native',
  // A timer per subscription returns deliveries held past ackTimeoutMs (`modified`, delivery-failed).
  ackTimeout: 'emulated',
  partitions: false,
  // Artemis address settings are broker configuration, not reachable per address over AMQP management here.
  retention: Object.freeze({ age: false, bytes: false }),
  purge: true,
  lag: true,
  persistence: true,
  // A durable queue on the type's address, made before any receiver attaches.
  createGroup: true,
});

/** Addresses that are not message types: Artemis's own, and the temporary reply queues of management requests. */
const INTERNAL = /^(activemq\.|\$sys\.|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$)/i;
/** How long purge keeps removing messages a detached receiver returns to its queue. */
const PURGE_SETTLE_MS = 3000;
/** How often a publisher re-reads a type's queues, to carry them to another broker after a failover. */
const GROUP_REFRESH_MS = 5000;

async function brokerCall<T>(what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw toBusError(error, 'BUSBAR_ERR_BROKER', `the AMQP 1.0 broker could not ${what}`);
  }
}

function asList(value: unknown): string[] {
  return Array.isArray(value) ? value.map(String) : [];
}

/**
 * The groups of each type this process publishes to, as last read from a broker. Before the first send to a type on
 * a connection, its known group queues are created on that broker (idempotent): after a failover to a broker that
 * never saw the group, sends are then kept for it instead of being dropped by a multicast address with no queue.
 */
class GroupCarrier {
  readonly #failover: FailoverConnection;
  readonly #management: Management;
  readonly #known = new Map<string, Set<string>>();
  readonly #prepared = new Map<string, { connection: Connection; at: number; ready: boolean; done: Promise<void> }>();

  constructor(failover: FailoverConnection, management: Management) {
    this.#failover = failover;
    this.#management = management;
  }

  /** Undefined once the groups were carried to the current connection's broker: nothing to wait for. */
  prepare(address: string): Promise<void> | undefined {
    if (address.includes('::')) return undefined;
    const connection = this.#failover.current;
    if (!connection) return undefined;
    const entry = this.#prepared.get(address);
    if (entry && entry.connection === connection) {
      if (Date.now() - entry.at > GROUP_REFRESH_MS) {
        entry.at = Date.now();
        void this.#read(address).catch(() => {});
      }
      return entry.ready ? undefined : entry.done;
    }
    const made = {
      connection,
      at: Date.now(),
      ready: false,
      done: this.#carry(address)
        .catch(() => {})
        .then(() => {
          made.ready = true;
        }),
    };
    this.#prepared.set(address, made);
    return made.done;
  }

  /** A group created by admin: carried to the next broker after a failover like the groups read from one. */
  note(type: string, group: string): void {
    const known = this.#known.get(type) ?? new Set<string>();
    known.add(groupQueue(type, group));
    this.#known.set(type, known);
  }

  forget(type: string): void {
    this.#known.delete(type);
    this.#prepared.delete(type);
  }

  async #carry(type: string): Promise<void> {
    for (const queue of this.#known.get(type) ?? []) {
      const group = queue.slice(type.length + 1);
      await createGroupQueue(this.#management, type, group);
    }
    await this.#read(type);
  }

  async #read(type: string): Promise<void> {
    const names = asList(await this.#management.call(`address.${type}`, 'getQueueNames'));
    const known = this.#known.get(type) ?? new Set<string>();
    for (const name of names) if (name.startsWith(`${type}${GROUP_SEPARATOR}`)) known.add(name);
    this.#known.set(type, known);
  }
}

class Amqp10Admin implements TransportAdmin {
  readonly #management: Management;
  readonly #carrier: GroupCarrier;

  constructor(management: Management, carrier: GroupCarrier) {
    this.#management = management;
    this.#carrier = carrier;
  }

  async #addresses(): Promise<string[]> {
    const names = asList(await this.#management.call('broker', 'getAddressNames'));
    return names.filter((name) => !INTERNAL.test(name)).sort();
  }

  async #queues(type: string): Promise<string[]> {
    const names = asList(await this.#management.call(`address.${type}`, 'getQueueNames'));
    return names.filter((name) => name.startsWith(`${type}${GROUP_SEPARATOR}`)).sort();
  }

  async ensureType(type: string, options?: TypeOptions): Promise<void> {
    if (options?.partitions !== undefined && options.partitions !== 1) this.#noPartitions(type, options.partitions);
    await brokerCall(`create type ${type}`, async () => {
      if ((await this.#addresses()).includes(type)) return;
      await this.#management.call('broker', 'createAddress', type, 'MULTICAST');
    });
  }

  /**
   * The group's durable queue on the type's address: the multicast address copies every later message into it,
   * consumer or not. AMQP 1.0 on Artemis keeps no log, so `offset` cannot reach older messages: a new group starts
   * at the latest message whatever it asks (capabilities.replay is false).
   */
  async ensureGroup(type: string, group: string, _offset: Offset): Promise<void> {
    await this.ensureType(type);
    await brokerCall(`create group ${group} on ${type}`, () => createGroupQueue(this.#management, type, group));
    this.#carrier.note(type, group);
  }

  deleteType(type: string): Promise<void> {
    return brokerCall(`delete type ${type}`, async () => {
      if (!(await this.#addresses()).includes(type)) return;
      await this.#management.call('broker', 'deleteAddress', type, true);
      this.#carrier.forget(type);
    });
  }

  async listTypes(): Promise<TypeInfo[]> {
    const types = await brokerCall('list types', () => this.#addresses());
    return types.map((type) => ({ type, partitions: 1, retention: {} }));
  }

  async setPartitions(type: string, partitions: number): Promise<void> {
    if (!Number.isInteger(partitions) || partitions < 1) {
      throw new BusError(
        'BUSBAR_ERR_PARTITIONS',
        `cannot set ${type} to ${partitions} partitions: AMQP 1.0 types have 1`,
      );
    }
    if (partitions !== 1) this.#noPartitions(type, partitions);
    await this.ensureType(type);
  }

  async setRetention(type: string, retention: Retention): Promise<void> {
    if (retention.maxAgeMs === undefined && retention.maxBytes === undefined) return;
    throw new BusError(
      'BUSBAR_ERR_UNSUPPORTED',
      `the AMQP 1.0 transport cannot set retention on ${type}: configure an address-setting for it in the broker (Artemis: expiry-delay, max-size-bytes with address-full-policy DROP)`,
    );
  }

  /**
   * removeAllMessages skips messages out for delivery, and a receiver that just detached has its messages returned to
   * the queue a moment later: purge removes again while such messages come back (at most PURGE_SETTLE_MS).
   */
  purge(type: string): Promise<void> {
    return brokerCall(`purge type ${type}`, async () => {
      for (const queue of await this.#queues(type)) {
        const resource = `queue.${queue}`;
        const deadline = Date.now() + PURGE_SETTLE_MS;
        for (;;) {
          // Counted before removing: once none are out for delivery, this removal takes every message that came back.
          const delivering = Number(await this.#management.call(resource, 'getDeliveringCount'));
          await this.#management.call(resource, 'removeAllMessages');
          if (!(delivering > 0) || Date.now() >= deadline) break;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    });
  }

  async stats(type?: string): Promise<TypeStats[]> {
    let types = await brokerCall('list types', () => this.#addresses());
    if (type !== undefined) {
      if (!types.includes(type)) {
        throw new BusError(
          'BUSBAR_ERR_UNKNOWN_TYPE',
          `no message type ${type} on this broker: register it or publish to it first`,
        );
      }
      types = [type];
    }
    return brokerCall('read stats', () => Promise.all(types.map((name) => this.#typeStats(name))));
  }

  async #typeStats(type: string): Promise<TypeStats> {
    const groups: GroupStats[] = [];
    for (const queue of await this.#queues(type)) {
      const resource = `queue.${queue}`;
      const unread = Number(await this.#management.call(resource, 'getMessageCount'));
      const inflight = Number(await this.#management.call(resource, 'getDeliveringCount'));
      const age = await this.#management.call(resource, 'getFirstMessageAge');
      groups.push({
        group: queue.slice(type.length + 1),
        unread,
        inflight,
        oldestAgeMs: typeof age === 'number' && unread > 0 ? age : null,
      });
    }
    const bytes = Number(await this.#management.call(`address.${type}`, 'getAddressSize'));
    // Each group's queue holds its own copy of a message and a type keeps no log of its own: a depth of the type
    // (what it was sent, as on a log-based broker) is not something Artemis can tell, so it is -1; see each group.
    return { type, depth: -1, bytes: Number.isFinite(bytes) ? bytes : -1, partitions: 1, groups };
  }

  #noPartitions(type: string, partitions: number): never {
    throw new BusError(
      'BUSBAR_ERR_UNSUPPORTED',
      `the AMQP 1.0 transport has no partitions (asked ${partitions} for ${type}): a group's queue feeds any number of consumers, so add consumers to scale out`,
    );
  }
}

class Amqp10Transport implements Transport {
  readonly name = 'amqp10';
  readonly capabilities = AMQP10_CAPABILITIES;
  readonly admin: TransportAdmin;
  readonly #primary: FailoverConnection;
  readonly #management: Management;
  readonly #options: Amqp10Options;
  /** Made at the first consume(): a bus that only publishes keeps one connection. */
  #sites: readonly Site[] | undefined;
  readonly #publisher: Publisher;
  readonly #subscriptions = new Set<Amqp10Subscription>();
  #closing: Promise<void> | undefined;

  constructor(primary: FailoverConnection, management: Management, options: Amqp10Options) {
    this.#primary = primary;
    this.#management = management;
    this.#options = options;
    const carrier = new GroupCarrier(primary, management);
    this.#publisher = new Publisher(primary, options.publishTimeoutMs, (address) => carrier.prepare(address));
    this.admin = new Amqp10Admin(management, carrier);
  }

  #checkOpen(): void {
    if (this.#closing) throw new BusError('BUSBAR_ERR_CLOSED', 'the AMQP 1.0 transport is closed: connect a new bus');
  }

  async publish(type: string, batch: readonly TransportMessage[]): Promise<void> {
    this.#checkOpen();
    if (batch.length === 0) return;
    await this.#publisher.send(type, batch.map(toAmqp));
  }

  /**
   * One endpoint: consumers share the primary connection. Several: a consumer reads each of them over its own
   * connection (so messages stored on a broker that was down are delivered once it is back).
   */
  #consumerSites(): readonly Site[] {
    if (this.#sites) return this.#sites;
    const options = this.#options;
    this.#sites =
      options.endpoints.length > 1
        ? options.endpoints.map((endpoint) => {
            const failover = new FailoverConnection({ ...options, endpoints: [endpoint] });
            failover.startInBackground();
            return { failover, management: new Management(failover) };
          })
        : [{ failover: this.#primary, management: this.#management }];
    return this.#sites;
  }

  consume(options: ConsumeOptions): Subscription {
    this.#checkOpen();
    const subscription = new Amqp10Subscription(this.#consumerSites(), this.#publisher, options, (s) =>
      this.#subscriptions.delete(s),
    );
    this.#subscriptions.add(subscription);
    return subscription;
  }

  /** Bounded: each subscription and connection closes within its own time limit, whatever the broker does. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#subscriptions].map((s) => s.close()));
      const connections = new Set([this.#primary, ...(this.#sites ?? []).map((s) => s.failover)]);
      await Promise.allSettled([...connections].map((f) => f.close()));
    })();
    return this.#closing;
  }
}

const createAmqp10Transport: TransportFactory = async (config: TransportConfig) => {
  const options = amqp10Options(config);
  const primary = new FailoverConnection(options);
  await primary.start();
  return new Amqp10Transport(primary, new Management(primary), options);
};

export default createAmqp10Transport;
