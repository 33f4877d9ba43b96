/**
 * One consumer of one group: claims up to `prefetch` unsettled messages through the engine, hands them out as
 * deliveries, and gives its leases back when it closes.
 */
import { randomUUID } from 'node:crypto';
import type {
  ConsumeOptions,
  Delivery,
  NackOptions,
  Subscription,
  TransportMessage,
} from '../../transport/contract.ts';
import { DeliveryQueue } from '../../transport/queue.ts';
import { type Claimer, closedError, type Engine } from './engine.ts';
import type { Claimed, Store } from './store.ts';

const CLAIM_RETRY_MS = 100;

class EmbeddedDelivery implements Delivery {
  readonly message: TransportMessage;
  readonly attempt: number;
  readonly seq: number;
  readonly leaseUntil: number;
  readonly #subscription: EmbeddedSubscription;
  #settled: Promise<void> | undefined;

  constructor(subscription: EmbeddedSubscription, claimed: Claimed, leaseUntil: number) {
    this.message = claimed.message;
    this.attempt = claimed.attempt;
    this.seq = claimed.seq;
    this.leaseUntil = leaseUntil;
    this.#subscription = subscription;
  }

  ack(): Promise<void> {
    this.#settled ??= this.#subscription.settle(this, undefined);
    return this.#settled;
  }

  nack(options?: NackOptions): Promise<void> {
    this.#settled ??= this.#subscription.settle(this, Math.max(0, options?.delayMs ?? 0));
    return this.#settled;
  }

  /** Dropped without a word to the broker: its lease ran out before anyone took it, the group has it back. */
  forget(): void {
    if (this.#settled) return;
    this.#settled = Promise.resolve();
    this.#subscription.forget(this);
  }
}

export class EmbeddedSubscription implements Subscription, Claimer {
  readonly ready: Promise<void>;
  readonly #engine: Engine;
  readonly #options: ConsumeOptions;
  /** Identifies this subscription's leases in the file (a consumer id may be shared by several). */
  readonly #owner: string;
  readonly #queue = new DeliveryQueue<EmbeddedDelivery>({
    onLeave: () => this.close(),
    onExpired: (delivery) => delivery.forget(),
  });
  readonly #onClose: (subscription: EmbeddedSubscription) => void;
  /** Claimed, not settled, lease maybe running, handed out or not: the live ones count against prefetch. */
  readonly #unsettled = new Set<EmbeddedDelivery>();
  #claimed: Claimed[] = [];
  #claimedLeaseUntil = 0;
  #deadline: number | null = null;
  #timer: NodeJS.Timeout | undefined;
  #typeIndex = 0;
  #attached = false;
  #closing: Promise<void> | undefined;
  readonly #onAbort = () => void this.close();

  constructor(engine: Engine, options: ConsumeOptions, onClose: (subscription: EmbeddedSubscription) => void) {
    this.#engine = engine;
    this.#options = options;
    this.#onClose = onClose;
    this.#owner = `${options.consumerId}#${randomUUID()}`;
    const { types, group, offset } = options;
    this.ready = engine.run(
      (store, now) => {
        for (const type of types) store.attach(type, group, offset, now);
      },
      'BUSBAR_ERR_BROKER',
      `joining group '${group}'`,
      false,
    );
    this.ready.then(
      () => {
        this.#attached = true;
        if (!this.#queue.ended) engine.want(this);
      },
      (error) => this.#queue.end(error),
    );
    if (options.signal?.aborted) void this.close();
    else options.signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  claim(store: Store, now: number): void {
    const { types, group, prefetch, ackTimeoutMs } = this.#options;
    const budget = prefetch - this.#liveCount(now);
    this.#claimed = [];
    this.#deadline = null;
    if (budget <= 0 || this.#queue.ended) return;
    const leaseUntil = now + ackTimeoutMs;
    this.#claimedLeaseUntil = leaseUntil;
    // Start at a different type each time so one busy type cannot starve the others.
    for (let i = 0; i < types.length && this.#claimed.length < budget; i++) {
      const type = types[(this.#typeIndex + i) % types.length]!;
      store.claim(type, group, this.#owner, budget - this.#claimed.length, leaseUntil, now, this.#claimed);
    }
    this.#typeIndex = (this.#typeIndex + 1) % types.length;
    if (this.#claimed.length < budget) {
      for (const type of types) {
        const at = store.nextDeadline(type, group, now);
        if (at !== null && (this.#deadline === null || at < this.#deadline)) this.#deadline = at;
      }
    }
  }

  claimed(): void {
    const claimed = this.#claimed;
    this.#claimed = [];
    for (const c of claimed) {
      const delivery = new EmbeddedDelivery(this, c, this.#claimedLeaseUntil);
      this.#unsettled.add(delivery);
      this.#queue.push(delivery);
    }
    if (this.#queue.ended) return;
    if (this.#liveCount(Date.now()) >= this.#options.prefetch) {
      // At the limit: the earliest lease to end frees a slot (rule 3), so claim again then.
      this.#wakeAt(this.#earliestLease() + 1);
      return;
    }
    this.#engine.wait(this);
    if (this.#deadline !== null) this.#wakeAt(this.#deadline);
  }

  /** Unsettled deliveries whose lease still runs. Expired ones are the group's again: they take no slot and go. */
  #liveCount(now: number): number {
    for (const delivery of this.#unsettled) if (delivery.leaseUntil <= now) this.#unsettled.delete(delivery);
    return this.#unsettled.size;
  }

  #earliestLease(): number {
    let earliest = Number.POSITIVE_INFINITY;
    for (const delivery of this.#unsettled) earliest = Math.min(earliest, delivery.leaseUntil);
    return earliest;
  }

  forget(delivery: EmbeddedDelivery): void {
    this.#unsettled.delete(delivery);
    if (!this.#queue.ended && this.#attached) this.#engine.want(this);
  }

  claimFailed(error: unknown): void {
    this.#claimed = [];
    if (this.#queue.ended) return;
    const reason = error instanceof Error ? error.message : String(error);
    if (!/busy|locked/i.test(reason)) {
      this.#queue.end(error);
      return;
    }
    this.#wakeAt(Date.now() + CLAIM_RETRY_MS);
  }

  #wakeAt(at: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        if (!this.#queue.ended) this.#engine.want(this);
      },
      Math.max(0, at - Date.now()),
    );
  }

  /** Acks (delayMs undefined) or nacks one delivery; the engine batches it with everything else this tick. */
  settle(delivery: EmbeddedDelivery, delayMs: number | undefined): Promise<void> {
    if (this.#engine.closed) return Promise.reject(closedError());
    this.#unsettled.delete(delivery);
    const { group } = this.#options;
    const { type } = delivery.message;
    const { seq, attempt } = delivery;
    const owner = this.#owner;
    const done =
      delayMs === undefined
        ? this.#engine.ack(type, group, seq, delivery.message.key)
        : this.#engine.run(
            (store, now) => store.nack(type, group, seq, owner, attempt, now + delayMs),
            'BUSBAR_ERR_ACK',
            'nack',
          );
    // Claim again once half the prefetch is free (or nothing is buffered): claims come in bulk, not one per ack.
    const free = this.#options.prefetch - this.#liveCount(Date.now());
    if (this.#attached && !this.#queue.ended && (free * 2 >= this.#options.prefetch || this.#queue.length === 0)) {
      this.#engine.want(this);
    }
    return done;
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return this.#queue[Symbol.asyncIterator]();
  }

  /** Ends iteration and returns every unsettled lease to the group at once. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#queue.end();
    this.#queue.drain();
    clearTimeout(this.#timer);
    this.#options.signal?.removeEventListener('abort', this.#onAbort);
    this.#engine.forget(this);
    this.#onClose(this);
    if (this.#engine.closed) return;
    const { types, group } = this.#options;
    const owner = this.#owner;
    await this.ready.catch(() => {});
    await this.#engine
      .run(
        (store) => {
          for (const type of types) store.release(type, group, owner);
        },
        'BUSBAR_ERR_BROKER',
        'returning unacked messages',
      )
      .catch(() => {});
  }
}
