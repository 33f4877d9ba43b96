/**
 * A consumer: one channel per subscription with one AMQP consumer per type on the group's quorum queue. The channel
 * is re-opened after a broker cancel or a lost connection; deliveries of the old channel are then void (the broker
 * has already returned them to the group). The ack timeout is emulated here: a delivery left unsettled past
 * `ackTimeoutMs` is nacked with requeue, which RabbitMQ counts in x-delivery-count.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import { BusError, toBusError } from '../../errors.ts';
import type {
  ConsumeOptions,
  Delivery,
  NackOptions,
  Subscription,
  TransportMessage,
} from '../../transport/contract.ts';
import { DeliveryQueue } from '../../transport/queue.ts';
import { LeaseSweeper } from '../../transport/sweeper.ts';
import { ChannelAcker } from './acks.ts';
import type { Broker } from './broker.ts';
import { attemptOf, fromAmqp, groupQueue } from './wire.ts';

const REATTACH_BACKOFF_MS = [100, 250, 500, 1000, 2000, 5000] as const;
const CONNECTION_WAIT_MS = 60_000;
const noop = () => {};

/** Unacked deliveries per group queue held by this process's consumers (AMQP 0-9-1 cannot ask the broker). */
export class InflightCounter {
  readonly #counts = new Map<string, number>();
  add(queue: string, delta: number): void {
    const next = (this.#counts.get(queue) ?? 0) + delta;
    if (next <= 0) this.#counts.delete(queue);
    else this.#counts.set(queue, next);
  }
  get(queue: string): number {
    return this.#counts.get(queue) ?? 0;
  }
}

type Settlement = 'open' | 'acked' | 'nacked' | 'expired' | 'lost';

class RabbitDelivery implements Delivery {
  readonly message: TransportMessage;
  readonly attempt: number;
  readonly #owner: RabbitSubscription;
  readonly #channel: Channel;
  readonly #acker: ChannelAcker;
  readonly #raw: ConsumeMessage;
  readonly queue: string;
  /** When the ack timeout returns it to its group (epoch ms). */
  readonly leaseUntil: number;
  #state: Settlement = 'open';
  #acked: Promise<void> | undefined;

  constructor(
    owner: RabbitSubscription,
    channel: Channel,
    acker: ChannelAcker,
    raw: ConsumeMessage,
    type: string,
    queue: string,
    ackTimeoutMs: number,
  ) {
    this.#owner = owner;
    this.#channel = channel;
    this.#acker = acker;
    this.#raw = raw;
    acker.delivered(raw.fields.deliveryTag);
    this.queue = queue;
    this.message = fromAmqp(raw, type);
    this.attempt = attemptOf(raw);
    this.leaseUntil = Date.now() + ackTimeoutMs;
  }

  get channel(): Channel {
    return this.#channel;
  }

  ack(): Promise<void> {
    if (this.#acked) return this.#acked;
    // Too late: the ack timeout already returned it to its group, so it will be delivered again (at-least-once),
    // as with every transport whose lease ran out. Nothing is left to ack.
    if (this.#state === 'expired') return Promise.resolve();
    if (this.#state !== 'open') return Promise.reject(this.#notHeld('ack'));
    this.#settle('acked');
    this.#acked = this.#acker.ack(this.#raw.fields.deliveryTag).catch((error: unknown) => {
      // The channel closed before the ack went out: the broker returns the message to its group.
      throw toBusError(error, 'BUSBAR_ERR_ACK', `cannot ack message ${this.message.id}; it will be redelivered`);
    });
    return this.#acked;
  }

  async nack(options?: NackOptions): Promise<void> {
    if (this.#state === 'nacked') return;
    // Acked already, or back in its group (ack timeout, lost channel): nothing left to return.
    if (this.#state !== 'open') return;
    this.#settle('nacked');
    const delayMs = options?.delayMs ?? 0;
    if (delayMs <= 0) {
      this.#returnNow();
      return;
    }
    try {
      await this.#owner.broker.publishDelayed(this.queue, this.#raw, this.attempt, delayMs);
    } catch (error) {
      // The delayed copy is not stored: return the original now rather than lose or hold it.
      this.#returnNow();
      throw error;
    }
    // The copy is stored; if the channel died meanwhile the original comes back too (a duplicate, never a loss).
    await this.#acker.ack(this.#raw.fields.deliveryTag).catch(() => {});
  }

  /** The channel closed: the broker returned this delivery to its group. */
  lose(): void {
    if (this.#state === 'open') this.#settle('lost');
  }

  /** The ack timeout passed: return it to its group. */
  expire(): void {
    if (this.#state !== 'open') return;
    this.#settle('expired');
    this.#returnNow();
  }

  /** Requeue; on a closing channel the broker requeues it anyway. */
  #returnNow(): void {
    try {
      this.#acker.nack(this.#raw.fields.deliveryTag);
    } catch {}
  }

  #settle(state: Settlement): void {
    this.#state = state;
    this.#owner.settled(this);
  }

  #notHeld(what: string): BusError {
    const why =
      this.#state === 'nacked'
        ? 'it was nacked'
        : 'the connection to RabbitMQ was lost, so the broker returned it to its group';
    return new BusError('BUSBAR_ERR_ACK', `cannot ${what} message ${this.message.id}: ${why}; it will be redelivered`, {
      retryable: false,
    });
  }
}

export class RabbitSubscription implements Subscription {
  readonly broker: Broker;
  readonly ready: Promise<void>;
  readonly #options: ConsumeOptions;
  readonly #inflight: InflightCounter;
  readonly #onClose: (subscription: RabbitSubscription) => void;
  readonly #deliveries = new DeliveryQueue({ onLeave: () => this.close() });
  /** Open deliveries, and the emulated ack timeout that returns one left open past its lease. */
  readonly #live = new LeaseSweeper<RabbitDelivery>((delivery) => delivery.expire());
  #channel: Channel | undefined;
  #acker: ChannelAcker | undefined;
  #closed = false;
  #reattaching = false;
  #closing: Promise<void> | undefined;

  constructor(
    broker: Broker,
    options: ConsumeOptions,
    inflight: InflightCounter,
    onClose: (s: RabbitSubscription) => void,
  ) {
    this.broker = broker;
    this.#options = options;
    this.#inflight = inflight;
    this.#onClose = onClose;
    this.ready = this.#attach().catch((error: unknown) => {
      throw toBusError(
        error,
        'BUSBAR_ERR_BROKER',
        `cannot consume ${options.types.join(', ')} as group ${options.group}`,
      );
    });
    this.ready.catch((error) => {
      this.#deliveries.end(error);
      void this.close();
    });
    if (options.signal?.aborted) void this.close();
    else options.signal?.addEventListener('abort', () => void this.close(), { once: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return this.#deliveries[Symbol.asyncIterator]();
  }

  settled(delivery: RabbitDelivery): void {
    if (this.#live.delete(delivery)) this.#inflight.add(delivery.queue, -1);
  }

  async #attach(): Promise<void> {
    const { types, group, offset, prefetch } = this.#options;
    for (const type of types) await this.broker.prepareGroup(type, group, offset);
    if (this.#closed) return;
    const model = await this.broker.connection.model(Date.now() + CONNECTION_WAIT_MS);
    const channel = await model.createChannel();
    const acker = new ChannelAcker(channel);
    channel.on('error', noop);
    channel.on('close', () => this.#lost(channel));
    this.#channel = channel;
    this.#acker = acker;
    // Quorum queues refuse a channel-wide (global) prefetch, so the limit is shared out among the types; AMQP's
    // prefetch-count is 16 bits, so a larger prefetch is the most the broker can give.
    await channel.prefetch(Math.min(65_535, Math.max(1, Math.floor(prefetch / types.length))));
    for (const type of types) {
      const queue = groupQueue(type, group);
      const consumerTag = `${this.#options.consumerId}/${type}`.slice(0, 255);
      await channel.consume(queue, (raw) => this.#deliver(channel, acker, type, queue, raw), { consumerTag });
    }
    if (this.#closed) await channel.close().catch(noop);
  }

  #deliver(channel: Channel, acker: ChannelAcker, type: string, queue: string, raw: ConsumeMessage | null): void {
    if (raw === null) {
      // The broker cancelled the consumer (queue deleted, node down): start over on a new channel.
      channel.close().catch(noop);
      return;
    }
    if (this.#closed || channel !== this.#channel) return;
    const delivery = new RabbitDelivery(this, channel, acker, raw, type, queue, this.#options.ackTimeoutMs);
    this.#live.add(delivery);
    this.#inflight.add(queue, 1);
    this.#deliveries.push(delivery);
  }

  #lost(channel: Channel): void {
    for (const delivery of this.#live) if (delivery.channel === channel) delivery.lose();
    if (channel !== this.#channel || this.#closed || this.#reattaching) return;
    this.#channel = undefined;
    void this.#reattach();
  }

  async #reattach(): Promise<void> {
    this.#reattaching = true;
    try {
      for (let attempt = 0; !this.#closed; attempt++) {
        // The group's queue may be gone (type deleted, or purged by a policy): declare it again.
        for (const type of this.#options.types) this.broker.forgetGroup(type, this.#options.group);
        try {
          await this.#attach();
          return;
        } catch {
          this.#channel?.close().catch(noop);
          this.#channel = undefined;
          const wait = REATTACH_BACKOFF_MS[Math.min(attempt, REATTACH_BACKOFF_MS.length - 1)]!;
          await new Promise((resolve) => setTimeout(resolve, wait));
        }
      }
    } finally {
      this.#reattaching = false;
    }
  }

  /** Idempotent. Closing the channel returns every unacked delivery to its group at once. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      this.#live.stop();
      this.#deliveries.end();
      this.#deliveries.drain();
      for (const delivery of this.#live) delivery.lose();
      const channel = this.#channel;
      this.#channel = undefined;
      this.#acker?.flush();
      await channel?.close().catch(noop);
      this.#onClose(this);
    })();
    return this.#closing;
  }
}
