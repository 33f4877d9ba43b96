/**
 * `embedded:` — busbar's default broker: a durable bus in one local SQLite file (node:sqlite, WAL), shared by every
 * process on the host that opens the same file. No server to run. docs/wire/embedded.md describes the file.
 */
import { BusError, checkTypeName } from '../../errors.ts';
import type {
  Capabilities,
  ConsumeOptions,
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
import { checkBatch, checkPartitionCount, checkRetention, partitionsCannotShrink } from '../../transport/rules.ts';
import { closedError, Engine } from './engine.ts';
import { parseEmbeddedOptions } from './options.ts';
import { toMessage } from './rows.ts';
import { openDatabase } from './schema.ts';
import { Store } from './store.ts';
import { EmbeddedSubscription } from './subscription.ts';

export const EMBEDDED_CAPABILITIES: Capabilities = Object.freeze({
  replay: true,
  ordering: 'per-key',
  nackDelay: 'native',
  ackTimeout: 'native',
  // Stored and grow-only, but they change nothing here: one log per type, ordered per key across all consumers.
  partitions: true,
  retention: Object.freeze({ age: true, bytes: true }),
  purge: true,
  lag: true,
  persistence: true,
  peek: Object.freeze({ position: true, time: true }),
  createGroup: true,
});

class EmbeddedTransport implements Transport {
  readonly name = 'embedded';
  readonly capabilities = EMBEDDED_CAPABILITIES;
  readonly admin: TransportAdmin;
  readonly #engine: Engine;
  readonly #subscriptions = new Set<EmbeddedSubscription>();
  #closing: Promise<void> | undefined;

  constructor(engine: Engine) {
    this.#engine = engine;
    this.admin = new EmbeddedAdmin(engine);
  }

  publish(type: string, batch: readonly TransportMessage[]): Promise<void> {
    if (this.#closing) return Promise.reject(closedError());
    checkTypeName(type);
    if (batch.length === 0) return Promise.resolve();
    checkBatch(batch);
    return this.#engine.run(
      this.#engine.publishOperation(type, batch),
      'BUSBAR_ERR_PUBLISH',
      `publishing to '${type}'`,
    );
  }

  consume(options: ConsumeOptions): Subscription {
    if (this.#closing) throw closedError();
    if (options.types.length === 0) {
      throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', 'consume needs at least one message type in types');
    }
    for (const type of options.types) checkTypeName(type);
    checkTypeName(options.group, 'consumer group');
    const subscription = new EmbeddedSubscription(this.#engine, options, (s) => this.#subscriptions.delete(s));
    this.#subscriptions.add(subscription);
    return subscription;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all([...this.#subscriptions].map((s) => s.close()));
      this.#engine.close();
    })();
    return this.#closing;
  }
}

class EmbeddedAdmin implements TransportAdmin {
  readonly #engine: Engine;

  constructor(engine: Engine) {
    this.#engine = engine;
  }

  /** Admin writes go through the engine's queue so they serialise with publishes and claims of this process. */
  #write(what: string, apply: Parameters<Engine['run']>[0]): Promise<void> {
    return this.#engine.run(apply, 'BUSBAR_ERR_BROKER', what);
  }

  async #read<T>(read: () => T): Promise<T> {
    if (this.#engine.closed) throw closedError();
    return read();
  }

  ensureType(type: string, options: TypeOptions = {}): Promise<void> {
    checkTypeName(type);
    const partitions = checkPartitionCount(type, options.partitions ?? 1);
    return this.#write(`creating type '${type}'`, (store, now) => store.ensureType(type, partitions, now));
  }

  deleteType(type: string): Promise<void> {
    checkTypeName(type);
    return this.#write(`deleting type '${type}'`, (store) => store.deleteType(type));
  }

  /** Reads the messages table directly (a read transaction of its own; nothing is claimed). */
  peek(type: string, options: PeekOptions): Promise<PeekedMessage[]> {
    checkTypeName(type);
    const from = options.from === undefined ? 0 : Number(options.from);
    return this.#read(() => {
      const statement = this.#engine.store.db.prepare(
        'SELECT seq, published_ms, id, source, time, content_type, key, headers, body FROM messages ' +
          'WHERE type = ? AND seq >= ? AND published_ms >= ? ORDER BY seq LIMIT ?',
      );
      statement.setReturnArrays(true);
      const rows = statement.all(
        type,
        Number.isSafeInteger(from) ? from : 0,
        options.fromTime ?? 0,
        options.count,
      ) as unknown as unknown[][];
      return rows.map((row) => ({
        position: String(row[0]),
        storedAt: Number(row[1]),
        message: toMessage(type, Number(row[0]), row, 2),
      }));
    });
  }

  listTypes(): Promise<TypeInfo[]> {
    return this.#read(() =>
      this.#engine.store.listTypes().map(({ type, partitions, retention }) => ({ type, partitions, retention })),
    );
  }

  async setPartitions(type: string, partitions: number): Promise<void> {
    checkTypeName(type);
    checkPartitionCount(type, partitions);
    const current = (await this.#read(() => this.#engine.store.typeInfo(type)))?.partitions ?? 1;
    if (partitions < current) throw partitionsCannotShrink(type, current, partitions);
    await this.#write(`setting partitions of '${type}'`, (store, now) => {
      store.ensureType(type, partitions, now);
      store.growPartitions(type, partitions);
    });
  }

  setRetention(type: string, retention: Retention): Promise<void> {
    checkTypeName(type);
    checkRetention(retention);
    return this.#write(`setting retention of '${type}'`, (store, now) => {
      store.ensureType(type, 1, now);
      store.setRetention(type, retention);
      const info = store.typeInfo(type)!;
      store.trim(type, info.retention, info.bytes, now);
    });
  }

  purge(type: string): Promise<void> {
    checkTypeName(type);
    return this.#write(`purging '${type}'`, (store) => store.purge(type));
  }

  ensureGroup(type: string, group: string, offset: Offset): Promise<void> {
    checkTypeName(type);
    checkTypeName(group, 'consumer group');
    return this.#write(`creating group '${group}' on '${type}'`, (store, now) => {
      store.attach(type, group, offset, now);
    });
  }

  async stats(type?: string): Promise<TypeStats[]> {
    if (type !== undefined) checkTypeName(type);
    // Trim first so the figures honour retention even between timer runs.
    await this.#engine.run((store, now) => store.trimAll(now), 'BUSBAR_ERR_BROKER', 'enforcing retention', false);
    return this.#read(() => {
      const store = this.#engine.store;
      const now = Date.now();
      const names = type === undefined ? store.listTypes().map((t) => t.type) : [type];
      const stats: TypeStats[] = [];
      store.db.exec('BEGIN');
      try {
        for (const name of names) {
          const one = store.stats(name, now);
          if (one) stats.push(one);
        }
      } finally {
        store.db.exec('COMMIT');
      }
      return stats;
    });
  }
}

const createEmbeddedTransport: TransportFactory = async (config: TransportConfig) => {
  const options = parseEmbeddedOptions(config);
  const db = openDatabase(options);
  return new EmbeddedTransport(new Engine(new Store(db), options));
};

export default createEmbeddedTransport;
