/**
 * `redis://` and `rediss://` — Redis Streams (Redis >= 7.0) through node-redis. One stream per message type,
 * one consumer group per busbar group; the wire mapping is in docs/wire/redis.md.
 */
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
import { RedisAdmin } from './admin.ts';
import { type Arg, parseSettings, RedisConnection, redisError } from './connection.ts';
import { RedisSubscription } from './subscription.ts';
import { encodeFields, Keys } from './wire.ts';

export const REDIS_CAPABILITIES: Capabilities = Object.freeze({
  replay: true,
  // A stream is totally ordered, but a group hands entries to its consumers in parallel and redeliveries come
  // back out of order: nothing per key can be promised.
  ordering: 'none',
  // Nacked entries stay pending; a per-group sorted set holds when each may be claimed again.
  nackDelay: 'emulated',
  // Consumers claim entries idle longer than their ack timeout (XPENDING IDLE + XCLAIM in one script).
  ackTimeout: 'emulated',
  partitions: false,
  retention: Object.freeze({ age: true, bytes: false }),
  purge: true,
  lag: true,
  // As durable as the server's persistence (appendonly yes + appendfsync always makes an XADD reply durable).
  persistence: true,
  peek: Object.freeze({ position: true, time: true }),
  // XGROUP CREATE without a consumer: the stream keeps entries for the group.
  createGroup: true,
});

/** How long a process trusts its cached registration and retention of a type before reading them again. */
const TYPE_CACHE_MS = 5000;

interface TypeState {
  checkedAt: number;
  maxAgeMs: number | undefined;
  refreshing: Promise<void> | undefined;
}

class RedisTransport implements Transport {
  readonly name = 'redis';
  readonly capabilities = REDIS_CAPABILITIES;
  readonly admin: RedisAdmin;
  readonly connection: RedisConnection;
  readonly keys: Keys;
  readonly #subscriptions = new Set<RedisSubscription>();
  readonly #types = new Map<string, TypeState>();
  readonly #replicas: number;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(connection: RedisConnection) {
    this.connection = connection;
    this.#replicas = connection.settings.replicas;
    this.keys = new Keys(connection.settings.prefix);
    this.admin = new RedisAdmin({
      connection,
      keys: this.keys,
      invalidate: (type) => this.#types.delete(type),
      checkOpen: () => this.#checkOpen(),
    });
  }

  #checkOpen(): void {
    if (this.#closed) throw new BusError('BUSBAR_ERR_CLOSED', 'the redis transport is closed: open a new one');
  }

  async publish(type: string, batch: readonly TransportMessage[]): Promise<void> {
    this.#checkOpen();
    checkTypeName(type);
    if (batch.length === 0) return;
    const commands = batch.map((message) => encodeFields(message));
    try {
      const state = await this.#typeState(type);
      const stream = this.keys.stream(type);
      const trim: Arg[] = state.maxAgeMs === undefined ? [] : ['MINID', String(Date.now() - state.maxAgeMs)];
      await Promise.all(commands.map((fields) => this.connection.send(['XADD', stream, ...trim, '*', ...fields])));
      if (this.#replicas > 0) await this.#waitForReplicas(batch.length, type);
    } catch (error) {
      throw redisError(error, 'BUSBAR_ERR_PUBLISH', `publishing ${batch.length} message(s) to '${type}'`);
    }
  }

  /**
   * WAIT covers every earlier write of the shared connection, these XADDs included. Too few replicas: the entries
   * are on the master but a failover could lose them, so the publish fails retryably (a retry may duplicate).
   */
  async #waitForReplicas(count: number, type: string): Promise<void> {
    const { commandTimeoutMs } = this.connection.settings;
    const timeoutMs = Math.max(1, Math.floor(commandTimeoutMs / 2));
    const acked = await this.connection.send<number>(['WAIT', String(this.#replicas), String(timeoutMs)], {
      timeout: commandTimeoutMs,
    });
    if (acked < this.#replicas) {
      throw new BusError(
        'BUSBAR_ERR_PUBLISH',
        `publishing ${count} message(s) to '${type}': only ${acked} of ${this.#replicas} replicas confirmed within ${timeoutMs} ms (option replicas): check the replicas, then retry`,
        { retryable: true },
      );
    }
  }

  /** Registers the type (at most every few seconds per process) and returns its cached retention. */
  async #typeState(type: string): Promise<TypeState> {
    let state = this.#types.get(type);
    if (!state) {
      state = { checkedAt: 0, maxAgeMs: undefined, refreshing: undefined };
      this.#types.set(type, state);
    }
    if (!state.refreshing && Date.now() - state.checkedAt > TYPE_CACHE_MS) {
      const refreshing = this.#refresh(type, state);
      refreshing.catch(() => undefined);
      state.refreshing = refreshing;
    }
    // Only the first use waits; later refreshes run beside the publishes.
    if (state.checkedAt === 0) await state.refreshing;
    return state;
  }

  async #refresh(type: string, state: TypeState): Promise<void> {
    try {
      const [, maxAge] = await Promise.all([
        this.connection.send(['SADD', this.keys.types, type]),
        this.connection.send<string | null>(['HGET', this.keys.meta(type), 'maxAgeMs']),
        this.connection.send(['HSETNX', this.keys.meta(type), 'partitions', '1']),
      ]);
      state.maxAgeMs = maxAge === null ? undefined : Number(maxAge);
      state.checkedAt = Date.now();
    } finally {
      state.refreshing = undefined;
    }
  }

  consume(options: ConsumeOptions): Subscription {
    this.#checkOpen();
    if (options.types.length === 0) {
      throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', 'consume needs at least one message type');
    }
    for (const type of options.types) checkTypeName(type);
    checkTypeName(options.group, 'consumer group');
    const subscription = new RedisSubscription(
      {
        connection: this.connection,
        keys: this.keys,
        ensureType: (type) => this.#typeState(type).then(() => undefined),
        wakeGroup: (type, group, except) => {
          for (const other of this.#subscriptions) {
            if (other !== except && other.group === group && other.types.includes(type)) other.wake();
          }
        },
        forget: (s) => this.#subscriptions.delete(s),
      },
      options,
    );
    this.#subscriptions.add(subscription);
    return subscription;
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#subscriptions].map((s) => s.close()));
    await this.connection.close();
  }
}

const createRedisTransport: TransportFactory = async (config: TransportConfig) => {
  const connection = await RedisConnection.open(parseSettings(config));
  return new RedisTransport(connection);
};

export default createRedisTransport;
