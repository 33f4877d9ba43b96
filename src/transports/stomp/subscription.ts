/**
 * A consumer: its own STOMP connection (so closing it returns exactly its unacked messages), one SUBSCRIBE per type
 * on the group's queue by FQQN, `ack:client-individual`, and Artemis's `consumer-window-size` (bytes) as prefetch.
 *
 * Artemis treats a STOMP NACK as an ACK (it drops the message), so a nack and an expired ack timeout are emulated
 * alike: a copy with the next attempt number (and AMQ_SCHEDULED_DELAY for a delay) is sent to the group's queue and
 * confirmed by its receipt, then the original is ACKed. If the connection fails between the two, both the copy and
 * the original are delivered again: a duplicate, never a loss (docs/wire/stomp.md).
 */
import type { IMessage } from '@stomp/stompjs';
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
import { StompLink } from './link.ts';
import type { StompOptions } from './options.ts';
import { attemptOf, escapeHeader, fqqnOf, fromFrame, sendHeaders } from './wire.ts';

/** A copy that could not be sent is tried again this much later (the original stays held meanwhile). */
const REQUEUE_RETRY_MS = 1000;

type State = 'open' | 'acked' | 'nacked' | 'expired' | 'lost';

class StompDelivery implements Delivery {
  readonly message: TransportMessage;
  readonly attempt: number;
  readonly type: string;
  readonly ackId: string;
  readonly subscriptionId: string;
  readonly generation: number;
  deadline: number;
  readonly #owner: StompSubscription;
  #state: State = 'open';
  #acked: Promise<void> | undefined;

  constructor(owner: StompSubscription, frame: IMessage, type: string, generation: number, ackTimeoutMs: number) {
    this.#owner = owner;
    this.type = type;
    this.ackId = frame.headers.ack ?? '';
    this.subscriptionId = frame.headers.subscription ?? '';
    this.generation = generation;
    this.message = fromFrame(frame.headers, frame.binaryBody, type);
    this.attempt = attemptOf(frame.headers);
    this.deadline = Date.now() + ackTimeoutMs;
  }

  get open(): boolean {
    return this.#state === 'open';
  }

  /** The lease ends at the deadline, or at once once the delivery is no longer held (contract rule 3). */
  get leaseUntil(): number {
    return this.#state === 'open' ? this.deadline : 0;
  }

  ack(): Promise<void> {
    if (this.#acked) return this.#acked;
    // The ack timeout already sent it back to its group: it will be delivered again (at-least-once).
    if (this.#state === 'expired') return Promise.resolve();
    if (this.#state !== 'open') return Promise.reject(this.#notHeld());
    this.#settle('acked');
    this.#acked = this.#owner.ackOriginal(this).catch((error: unknown) => {
      throw toBusError(error, 'BUSBAR_ERR_ACK', `cannot ack message ${this.message.id}; it will be redelivered`);
    });
    return this.#acked;
  }

  async nack(options?: NackOptions): Promise<void> {
    if (this.#state !== 'open') return;
    this.#settle('nacked');
    await this.#owner.requeue(this, options?.delayMs ?? 0);
  }

  expire(): void {
    if (this.#state !== 'open') return;
    this.#settle('expired');
    this.#owner.requeue(this, 0).catch(() => {});
  }

  /** The copy could not be stored: hold the original again with a short lease (the caller re-adds it to its sweeper). */
  retryLater(): void {
    this.#state = 'open';
    this.deadline = Date.now() + REQUEUE_RETRY_MS;
  }

  /** Its connection is gone: Artemis returned it to the group. */
  lose(): void {
    if (this.#state === 'open') this.#settle('lost');
  }

  #settle(state: State): void {
    this.#state = state;
    this.#owner.settled(this);
  }

  #notHeld(): BusError {
    const why =
      this.#state === 'nacked'
        ? 'it was nacked'
        : 'the connection to the broker was lost, so Artemis returned it to its group';
    return new BusError('BUSBAR_ERR_ACK', `cannot ack message ${this.message.id}: ${why}; it will be redelivered`, {
      retryable: false,
    });
  }
}

export class StompSubscription implements Subscription {
  readonly ready: Promise<void>;
  readonly #options: ConsumeOptions;
  readonly #settings: StompOptions;
  readonly #link: StompLink;
  readonly #onClose: (subscription: StompSubscription) => void;
  readonly #deliveries = new DeliveryQueue<StompDelivery>({
    onLeave: () => this.close(),
    onExpired: (delivery) => delivery.expire(),
  });
  /** Open deliveries; the emulated ack timeout returns one held past its lease. */
  readonly #live = new LeaseSweeper<StompDelivery>((delivery) => delivery.expire());
  #closing: Promise<void> | undefined;
  #closed = false;

  constructor(settings: StompOptions, options: ConsumeOptions, onClose: (subscription: StompSubscription) => void) {
    this.#settings = settings;
    this.#options = options;
    this.#onClose = onClose;
    this.#link = new StompLink(settings, `consumer ${options.consumerId}`);
    this.ready = this.#start().catch((error: unknown) => {
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

  async #start(): Promise<void> {
    let first = true;
    let attached: Promise<void> = Promise.resolve();
    this.#link.onConnected(() => {
      // Deliveries of the previous connection are void: Artemis gave them back to the group.
      for (const delivery of [...this.#live]) if (delivery.generation !== this.#link.generation) delivery.lose();
      const attaching = this.#subscribeAll();
      // A failed re-subscribe after a reconnect: start over on a fresh connection rather than consume nothing.
      if (first) attached = attaching;
      else attaching.catch(() => this.#link.reconnect());
      first = false;
    });
    await this.#link.start();
    await attached;
    if (this.#settings.endpoints.length > 1) await this.#declareElsewhere();
  }

  /**
   * Creates the group's queues on every other endpoint too (best effort, endpoints that do not answer are skipped):
   * Artemis drops a message sent to an address without queues, so a producer that fails over to another broker
   * before this consumer re-subscribed there would have its confirmed messages dropped. SUBSCRIBE on the fully
   * qualified name creates the durable queue; the brief consumer takes at most one message (a one-byte window) and
   * gives it back when it disconnects.
   */
  async #declareElsewhere(): Promise<void> {
    const here = this.#link.endpoint;
    const { types, group } = this.#options;
    await Promise.all(
      this.#settings.endpoints
        .filter((endpoint) => endpoint !== here)
        .map(async (endpoint) => {
          const link = new StompLink(
            {
              ...this.#settings,
              endpoints: [endpoint],
              connectTimeoutMs: Math.min(this.#settings.connectTimeoutMs, 3000),
            },
            'group declaration',
          );
          try {
            await link.start();
            for (const type of types) {
              await link.subscribeConfirmed(
                escapeHeader(fqqnOf(type, group)),
                {
                  id: 'declare',
                  ack: 'client-individual',
                  'subscription-type': 'MULTICAST',
                  'consumer-window-size': '1',
                },
                () => {},
                this.#settings.publishTimeoutMs,
              );
              link.unsubscribe('declare');
            }
          } catch {
            // Unreachable now: the queue is created there when this consumer fails over to it.
          } finally {
            await link.close();
          }
        }),
    );
  }

  #subscribeAll(): Promise<void> {
    const { types, group, prefetch } = this.#options;
    const window = Math.max(1, Math.floor(prefetch / types.length)) * this.#settings.windowBytesPerMessage;
    const generation = this.#link.generation;
    return Promise.all(
      types.map((type, i) =>
        this.#link.subscribeConfirmed(
          escapeHeader(fqqnOf(type, group)),
          {
            id: `busbar-${i}`,
            ack: 'client-individual',
            'subscription-type': 'MULTICAST',
            'consumer-window-size': String(window),
          },
          (frame) => this.#deliver(frame, type, generation),
          this.#settings.publishTimeoutMs,
        ),
      ),
    ).then(() => {});
  }

  #deliver(frame: IMessage, type: string, generation: number): void {
    if (this.#closed || generation !== this.#link.generation) return;
    const delivery = new StompDelivery(this, frame, type, generation, this.#options.ackTimeoutMs);
    this.#live.add(delivery);
    this.#deliveries.push(delivery);
  }

  settled(delivery: StompDelivery): void {
    this.#live.delete(delivery);
  }

  ackOriginal(delivery: StompDelivery): Promise<void> {
    if (delivery.generation !== this.#link.generation) {
      return Promise.reject(new Error('the connection that delivered it was lost'));
    }
    return this.#link.ack(delivery.ackId, delivery.subscriptionId, this.#settings.publishTimeoutMs);
  }

  /** Sends a copy with the next attempt number to the group's queue, then ACKs the original. */
  async requeue(delivery: StompDelivery, delayMs: number): Promise<void> {
    const headers = sendHeaders(delivery.message, delivery.attempt + 1);
    if (delayMs > 0) headers.AMQ_SCHEDULED_DELAY = String(Math.ceil(delayMs));
    try {
      await this.#link.sendConfirmed(
        escapeHeader(fqqnOf(delivery.type, this.#options.group)),
        headers,
        delivery.message.body,
        this.#settings.publishTimeoutMs,
      );
    } catch (error) {
      if (!this.#closed && delivery.generation === this.#link.generation) {
        // Its lease changes: out of the sweeper and in again.
        this.#live.delete(delivery);
        delivery.retryLater();
        this.#live.add(delivery);
      }
      throw toBusError(error, 'BUSBAR_ERR_ACK', `cannot return message ${delivery.message.id} to its group`);
    }
    // The copy is stored; an original whose connection died meanwhile comes back too (a duplicate, never a loss).
    await this.ackOriginal(delivery).catch(() => {});
  }

  /** Idempotent. Disconnecting returns every unacked delivery to its group at once. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      this.#live.stop();
      this.#deliveries.end();
      this.#deliveries.drain();
      for (const delivery of [...this.#live]) delivery.lose();
      await this.#link.close();
      this.#onClose(this);
    })();
    return this.#closing;
  }
}
