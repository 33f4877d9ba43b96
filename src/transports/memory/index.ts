/**
 * `memory:` — a fresh broker per connection; `memory:<name>` — a broker shared by every connection in this process
 * that names it. Nothing survives the process: the reference transport and the test double.
 */

import { BusError } from '../../errors.ts';
import type {
  Capabilities,
  ConsumeOptions,
  Offset,
  PeekOptions,
  Subscription,
  Transport,
  TransportConfig,
  TransportFactory,
  TransportMessage,
} from '../../transport/contract.ts';
import { DeliveryQueue } from '../../transport/queue.ts';
import { type Member, MemoryBroker } from './broker.ts';

export const MEMORY_CAPABILITIES: Capabilities = Object.freeze({
  replay: true,
  ordering: 'per-key',
  nackDelay: 'native',
  ackTimeout: 'native',
  partitions: true,
  retention: Object.freeze({ age: true, bytes: true }),
  purge: true,
  peek: Object.freeze({ position: true, time: true }),
  lag: true,
  persistence: false,
  createGroup: true,
});

const shared = new Map<string, { broker: MemoryBroker; users: number }>();

class MemoryTransport implements Transport {
  readonly name = 'memory';
  readonly capabilities = MEMORY_CAPABILITIES;
  readonly #broker: MemoryBroker;
  readonly #release: () => void;
  readonly #subscriptions = new Set<Subscription>();
  #closed = false;
  readonly admin;

  constructor(broker: MemoryBroker, release: () => void) {
    this.#broker = broker;
    this.#release = release;
    this.admin = {
      ensureType: async (type: string, options?: { partitions?: number }) =>
        broker.ensureType(type, options?.partitions),
      deleteType: async (type: string) => broker.deleteType(type),
      listTypes: async () => broker.listTypes(),
      setPartitions: async (type: string, partitions: number) => broker.setPartitions(type, partitions),
      setRetention: async (type: string, retention: { maxAgeMs?: number; maxBytes?: number }) =>
        broker.setRetention(type, retention),
      purge: async (type: string) => broker.purge(type),
      stats: async (type?: string) => broker.stats(type),
      peek: async (type: string, options: PeekOptions) => broker.peek(type, options),
      ensureGroup: async (type: string, group: string, offset: Offset) => broker.ensureGroup(type, group, offset),
    };
  }

  #checkOpen(): void {
    if (this.#closed) throw new BusError('BUSBAR_ERR_CLOSED', 'the memory transport is closed');
  }

  async publish(type: string, batch: readonly TransportMessage[]): Promise<void> {
    this.#checkOpen();
    this.#broker.publish(type, batch);
  }

  consume(options: ConsumeOptions): Subscription {
    this.#checkOpen();
    const broker = this.#broker;
    const queue = new DeliveryQueue({ onLeave: () => close() });
    const members = options.types.map((type) => {
      const member: Member = {
        prefetch: options.prefetch,
        ackTimeoutMs: options.ackTimeoutMs,
        outstanding: 0,
        deliver: (delivery) => queue.push(delivery),
      };
      return { type, member };
    });
    for (const { type, member } of members) broker.join(type, options.group, options.offset, member);
    const subscriptions = this.#subscriptions;
    const close = async () => {
      if (queue.ended) return;
      queue.end();
      queue.drain();
      for (const { type, member } of members) broker.leave(type, options.group, member);
      subscriptions.delete(subscription);
    };
    const subscription: Subscription = {
      ready: Promise.resolve(),
      close,
      [Symbol.asyncIterator]: () => queue[Symbol.asyncIterator](),
    };
    subscriptions.add(subscription);
    options.signal?.addEventListener('abort', () => void close(), { once: true });
    return subscription;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#subscriptions].map((s) => s.close()));
    this.#release();
  }
}

const createMemoryTransport: TransportFactory = async (config: TransportConfig) => {
  const name = config.url.replace(/^memory:/i, '').replace(/^\/+/, '');
  if (!name) {
    const broker = new MemoryBroker();
    return new MemoryTransport(broker, () => broker.close());
  }
  let entry = shared.get(name);
  if (!entry) {
    entry = { broker: new MemoryBroker(), users: 0 };
    shared.set(name, entry);
  }
  entry.users++;
  const held = entry;
  return new MemoryTransport(held.broker, () => {
    if (--held.users === 0) {
      held.broker.close();
      shared.delete(name);
    }
  });
};

export default createMemoryTransport;
