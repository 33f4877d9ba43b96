/**
 * One Consumer per (type, group) the gateway serves: created on the first pull or stream, shared by every request
 * for that pair, closed when idle (no request using it and no lease outstanding). Closing returns whatever it held
 * to the group.
 */

import type { MessageBus } from '../bus/bus.ts';
import type { Consumer } from '../bus/consumer.ts';
import type { Message } from '../bus/message.ts';
import { BusError } from '../errors.ts';
import type { Offset } from '../transport/contract.ts';
import { brokerCall } from './errors.ts';

export interface PooledConsumer {
  readonly type: string;
  readonly group: string;
  readonly consumer: Consumer;
  /** Requests (pulls, streams) using it now. */
  users: number;
  /** Leases outstanding on its messages. */
  held: number;
  lastUsed: number;
  /** Set once the pool closed it (idle, failed or shutdown): its receive() then answers null at once. */
  closed: boolean;
  /** Pulls waiting for a lease to end (held at the prefetch cap), oldest first. */
  readonly waiting: (() => void)[];
}

/**
 * Waits until `entry` holds fewer than `cap` leases, or `ms` pass; whether there is room. Pulls queue here (oldest
 * first) instead of being refused while the group's leases are all out: each settled lease lets the next one in.
 */
export function roomFor(entry: PooledConsumer, cap: number, ms: number): Promise<boolean> {
  if (entry.held < cap) return Promise.resolve(true);
  if (ms <= 0 || entry.closed) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    const wake = () => {
      clearTimeout(timer);
      resolve(true);
    };
    const timer = setTimeout(() => {
      const at = entry.waiting.indexOf(wake);
      if (at >= 0) entry.waiting.splice(at, 1);
      resolve(entry.held < cap);
    }, ms);
    entry.waiting.push(wake);
  });
}

/** A lease of `entry` ended: the oldest waiting pull may go. */
export function leaseEnded(entry: PooledConsumer): void {
  entry.waiting.shift()?.();
}

export interface PoolSettings {
  idleMs: number;
  prefetch: number;
  /** The consumer's ack timeout: longer than any lease, so only the gateway's own lease expiry returns messages. */
  ackTimeoutMs: number;
  brokerTimeoutMs: number;
}

export class ConsumerPool {
  readonly #bus: MessageBus;
  readonly #settings: PoolSettings;
  readonly #entries = new Map<string, Promise<PooledConsumer>>();
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  constructor(bus: MessageBus, settings: PoolSettings) {
    this.#bus = bus;
    this.#settings = settings;
    this.#sweeper = setInterval(() => void this.#sweep(), Math.max(50, Math.min(settings.idleMs / 2, 10_000)));
    this.#sweeper.unref();
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The consumer of (type, group), attached to its group; the caller must release() it. */
  async acquire(type: string, group: string, offset: Offset): Promise<PooledConsumer> {
    const key = `${type}\0${group}`;
    for (;;) {
      if (this.#closed) {
        throw new BusError('BUSBAR_ERR_CLOSED', 'the gateway is shutting down: retry once it is back');
      }
      let pending = this.#entries.get(key);
      if (!pending) {
        const opening = this.#open(type, group, offset);
        pending = opening;
        this.#entries.set(key, opening);
        opening.catch(() => {
          if (this.#entries.get(key) === opening) this.#entries.delete(key);
        });
      }
      const entry = await pending;
      // The idle sweep may have closed it while this request waited: then open a fresh one.
      if (this.#entries.get(key) !== pending && !this.#closed) continue;
      entry.users++;
      entry.lastUsed = Date.now();
      return entry;
    }
  }

  /**
   * A pull or stream never creates a type: attaching a group to a mistyped name would otherwise create it silently.
   * A dead-letter type counts as known once its own type is, so its group can wait for the first dead letter.
   */
  async #checkKnown(type: string): Promise<void> {
    const known = await brokerCall('listing types', this.#settings.brokerTimeoutMs, () =>
      this.#bus.admin().hasMessageType(type),
    );
    if (known) return;
    throw new BusError(
      'BUSBAR_ERR_UNKNOWN_TYPE',
      `no message type '${type}': publish to it or register it with PUT /v1/types/${type} first (a pull or stream ` +
        'never creates a type)',
    );
  }

  async #open(type: string, group: string, offset: Offset): Promise<PooledConsumer> {
    await this.#checkKnown(type);
    const consumer = this.#bus.consumer({
      consumerId: `busbar-gateway-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
      consumerGroup: group,
      messageTypes: [type],
      offset,
      prefetch: this.#settings.prefetch,
      ackTimeoutMs: this.#settings.ackTimeoutMs,
    });
    try {
      await brokerCall(`attaching group '${group}' to '${type}'`, this.#settings.brokerTimeoutMs, () => consumer.ready);
    } catch (error) {
      void consumer.close().catch(() => {});
      throw error;
    }
    return { type, group, consumer, users: 0, held: 0, lastUsed: Date.now(), closed: false, waiting: [] };
  }

  release(entry: PooledConsumer): void {
    entry.users--;
    entry.lastUsed = Date.now();
  }

  /** Closes the consumers of a type (before it is deregistered, so none recreates it). */
  async closeType(type: string): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const [key, pending] of this.#entries) {
      if (!key.startsWith(`${type}\0`)) continue;
      this.#entries.delete(key);
      closing.push(
        pending.then(
          (entry) => {
            entry.closed = true;
            return entry.consumer.close();
          },
          () => {},
        ),
      );
    }
    await Promise.allSettled(closing);
  }

  /** Drops a consumer that failed; the next request opens a new one. */
  discard(entry: PooledConsumer): void {
    const key = `${entry.type}\0${entry.group}`;
    void this.#entries.get(key)?.then((current) => {
      if (current === entry) this.#entries.delete(key);
    });
    entry.closed = true;
    void entry.consumer.close().catch(() => {});
  }

  /**
   * Up to `max` messages: waits up to `waitMs` for the first, then takes what is ready without waiting longer.
   * `gone()` tells when the asker went away; messages taken after that go straight back to the group. Messages
   * `usable` refuses (read ahead too long ago to lease) go back to the group at once and do not count.
   */
  async take(
    entry: PooledConsumer,
    max: number,
    waitMs: number,
    gone: () => boolean,
    usable: (message: Message) => boolean = () => true,
  ): Promise<Message[]> {
    const messages: Message[] = [];
    const until = Date.now() + Math.max(1, waitMs);
    for (let first = true; messages.length < max; first = false) {
      const left = messages.length === 0 ? until - Date.now() : 1;
      if (left <= 0 && !first) break;
      const next = await entry.consumer.receive({ timeout: Math.max(1, left) });
      if (next === null) {
        if (messages.length > 0 || Date.now() >= until) break;
        continue;
      }
      if (usable(next)) messages.push(next);
      else void next.nack().catch(() => {});
    }
    if (gone()) {
      await Promise.allSettled(messages.map((m) => m.nack()));
      return [];
    }
    return messages;
  }

  async #sweep(): Promise<void> {
    const now = Date.now();
    for (const [key, pending] of this.#entries) {
      const entry = await pending.catch(() => undefined);
      if (!entry || entry.users > 0 || entry.held > 0 || now - entry.lastUsed < this.#settings.idleMs) continue;
      if (this.#entries.get(key) !== pending) continue;
      this.#entries.delete(key);
      entry.closed = true;
      await entry.consumer.close().catch(() => {});
    }
  }

  /** Closes every consumer: pending receives end, and unacked messages return to their groups. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    const entries = await Promise.allSettled([...this.#entries.values()]);
    this.#entries.clear();
    await Promise.allSettled(
      entries.flatMap((r) => {
        if (r.status !== 'fulfilled') return [];
        r.value.closed = true;
        return [r.value.consumer.close()];
      }),
    );
  }
}
