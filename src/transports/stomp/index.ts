/**
 * `stomp://` and `stomps://` (alias `stomp+ssl://`): Apache ActiveMQ Artemis over STOMP 1.2 with @stomp/stompjs on
 * plain TCP (@stomp/tcp-wrapper) or TLS. An address per message type (multicast), a durable queue per group
 * (`<type>:<group>`, subscribed by its fully qualified name); persistent sends confirmed by receipts; admin and stats
 * through Artemis management over the same STOMP connection. See docs/wire/stomp.md.
 */
import { BusError } from '../../errors.ts';
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
import { StompLink } from './link.ts';
import { Management, REPLY_PREFIX } from './management.ts';
import { type StompOptions, stompOptions } from './options.ts';
import { StompSubscription } from './subscription.ts';
import { addressOf, escapeHeader, queueOf, sendHeaders } from './wire.ts';

export const STOMP_CAPABILITIES: Capabilities = Object.freeze({
  // A group's queue exists from its first consumer on; Artemis keeps no log of a multicast address to replay.
  replay: false,
  // Competing consumers, and nacked copies that go to the back of the queue, reorder messages.
  ordering: 'none',
  // A copy with AMQ_SCHEDULED_DELAY, then an ACK of the original (Artemis drops a STOMP NACK).
  nackDelay: 'emulated',
  // A timer per subscription re-queues a delivery held too long the same way.
  ackTimeout: 'emulated',
  partitions: false,
  // Artemis expiry and size limits are address settings of broker.xml, not something STOMP can set.
  retention: Object.freeze({ age: false, bytes: false }),
  purge: true,
  lag: true,
  persistence: true,
  // A durable queue made through Artemis management before any consumer subscribes.
  createGroup: true,
});

/** How long purge keeps removing messages a departed consumer's connection returns to its queue. */
const PURGE_SETTLE_MS = 3000;

/** Addresses that are Artemis's or this transport's own, never message types. */
function isTypeAddress(name: string): boolean {
  return !name.startsWith('activemq.') && !name.startsWith(REPLY_PREFIX) && !name.startsWith('$');
}

class StompAdmin implements TransportAdmin {
  readonly #management: Management;

  constructor(management: Management) {
    this.#management = management;
  }

  async #addresses(): Promise<string[]> {
    const names = (await this.#management.invoke('broker', 'getAddressNames')) as string[];
    return names.filter(isTypeAddress).sort();
  }

  async #exists(type: string): Promise<boolean> {
    return (await this.#addresses()).includes(addressOf(type));
  }

  async #queues(type: string): Promise<string[]> {
    const names = await this.#management.read(`address.${addressOf(type)}`, 'queueNames');
    return Array.isArray(names) ? (names as string[]) : [];
  }

  async ensureType(type: string, options?: TypeOptions): Promise<void> {
    if (options?.partitions !== undefined && options.partitions !== 1) this.#noPartitions(type, options.partitions);
    if (await this.#exists(type)) return;
    await this.#management.invoke('broker', 'createAddress', [addressOf(type), 'MULTICAST']).catch(async (error) => {
      // Created meanwhile by a send or another process.
      if (!(await this.#exists(type))) throw error;
    });
  }

  /**
   * The group's durable queue on the type's multicast address, made by Artemis management before any consumer
   * subscribes: later messages are kept for it. No log to replay, so `offset` cannot reach older messages.
   */
  async ensureGroup(type: string, group: string, _offset: Offset): Promise<void> {
    await this.ensureType(type);
    const queue = { name: queueOf(type, group), address: addressOf(type), 'routing-type': 'MULTICAST', durable: true };
    await this.#management.invoke('broker', 'createQueue', [JSON.stringify(queue), true]);
  }

  async deleteType(type: string): Promise<void> {
    if (!(await this.#exists(type))) return;
    await this.#management.invoke('broker', 'deleteAddress', [addressOf(type), true]);
  }

  async listTypes(): Promise<TypeInfo[]> {
    return (await this.#addresses()).map((type) => ({ type, partitions: 1, retention: {} }));
  }

  async setPartitions(type: string, partitions: number): Promise<void> {
    if (!Number.isInteger(partitions) || partitions < 1) {
      throw new BusError('BUSBAR_ERR_PARTITIONS', `cannot set ${type} to ${partitions} partitions: STOMP types have 1`);
    }
    if (partitions !== 1) this.#noPartitions(type, partitions);
    await this.ensureType(type);
  }

  async setRetention(type: string, retention: Retention): Promise<void> {
    if (retention.maxAgeMs === undefined && retention.maxBytes === undefined) return;
    throw new BusError(
      'BUSBAR_ERR_UNSUPPORTED',
      `the STOMP transport cannot limit ${type}: set an Artemis address-setting for address ${addressOf(type)} in broker.xml (expiry-delay, max-size-bytes)`,
    );
  }

  /**
   * removeAllMessages skips messages out for delivery, and a consumer that just disconnected has its messages returned
   * to the queue a moment later: purge removes again while such messages come back (at most PURGE_SETTLE_MS).
   */
  async purge(type: string): Promise<void> {
    if (!(await this.#exists(type))) return;
    for (const queue of await this.#queues(type)) {
      const resource = `queue.${queue}`;
      const deadline = Date.now() + PURGE_SETTLE_MS;
      for (;;) {
        // Counted before removing: once none are out for delivery, this removal takes every message that came back.
        const delivering = Number(await this.#management.read(resource, 'deliveringCount'));
        await this.#management.invoke(resource, 'removeAllMessages');
        if (!(delivering > 0) || Date.now() >= deadline) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  async stats(type?: string): Promise<TypeStats[]> {
    let types = await this.#addresses();
    if (type !== undefined) {
      if (!types.includes(type)) {
        throw new BusError(
          'BUSBAR_ERR_UNKNOWN_TYPE',
          `no message type ${type} on this Artemis: register it or publish to it first`,
        );
      }
      types = [type];
    }
    const result: TypeStats[] = [];
    for (const name of types) {
      const groups: GroupStats[] = [];
      const prefix = `${name}:`;
      for (const queue of (await this.#queues(name)).sort()) {
        if (!queue.startsWith(prefix)) continue;
        groups.push(await this.#groupStats(queue, queue.slice(prefix.length)));
      }
      // Artemis deletes a message once every group queue acked it and keeps no per-type log, so a type has no depth
      // of its own (as on RabbitMQ): each group's unread is the count that means something.
      result.push({ type: name, depth: -1, bytes: -1, partitions: 1, groups });
    }
    return result;
  }

  async #groupStats(queue: string, group: string): Promise<GroupStats> {
    const resource = `queue.${queue}`;
    const unread = Number(await this.#management.read(resource, 'messageCount'));
    const age = await this.#management.read(resource, 'firstMessageAge').catch(() => null);
    // In flight is unknown (-1): STOMP flow control on Artemis is a byte window, so the queue's deliveringCount also
    // counts messages pushed ahead into a member's buffer, which no lease holds yet; it would contradict prefetch.
    return { group, unread, inflight: -1, oldestAgeMs: typeof age === 'number' && unread > 0 ? age : null };
  }

  #noPartitions(type: string, partitions: number): never {
    throw new BusError(
      'BUSBAR_ERR_UNSUPPORTED',
      `the STOMP transport has no partitions (asked ${partitions} for ${type}): a group's queue feeds any number of consumers, so add consumers to scale out`,
    );
  }
}

class StompTransport implements Transport {
  readonly name = 'stomp';
  readonly capabilities = STOMP_CAPABILITIES;
  readonly admin: TransportAdmin;
  readonly #options: StompOptions;
  readonly #link: StompLink;
  readonly #management: Management;
  readonly #subscriptions = new Set<StompSubscription>();
  #closing: Promise<void> | undefined;

  constructor(options: StompOptions, link: StompLink) {
    this.#options = options;
    this.#link = link;
    this.#management = new Management(link, options.publishTimeoutMs);
    this.admin = new StompAdmin(this.#management);
  }

  #checkOpen(): void {
    if (this.#closing) throw new BusError('BUSBAR_ERR_CLOSED', 'the STOMP transport is closed: connect a new bus');
  }

  async publish(type: string, batch: readonly TransportMessage[]): Promise<void> {
    this.#checkOpen();
    const destination = escapeHeader(addressOf(type));
    // Every frame goes out at once; the batch resolves when every RECEIPT arrived (they are pipelined).
    const results = await Promise.allSettled(
      batch.map((message) =>
        this.#link.sendConfirmed(
          destination,
          { 'destination-type': 'MULTICAST', ...sendHeaders(message) },
          message.body,
          this.#options.publishTimeoutMs,
        ),
      ),
    );
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failures.length > 0) {
      const first = failures[0]!.reason as Error;
      throw new BusError(
        'BUSBAR_ERR_PUBLISH',
        `${failures.length} of ${batch.length} message(s) to ${type} not confirmed: ${first.message}`,
        { cause: first, retryable: (first as { retryable?: boolean }).retryable !== false },
      );
    }
  }

  consume(options: ConsumeOptions): Subscription {
    this.#checkOpen();
    const subscription = new StompSubscription(this.#options, options, (s) => this.#subscriptions.delete(s));
    this.#subscriptions.add(subscription);
    return subscription;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#subscriptions].map((s) => s.close()));
      await this.#management.close();
      await this.#link.close();
    })();
    return this.#closing;
  }
}

const createStompTransport: TransportFactory = async (config: TransportConfig) => {
  const options = stompOptions(config);
  const link = new StompLink(options, 'transport');
  await link.start();
  return new StompTransport(options, link);
};

export default createStompTransport;
