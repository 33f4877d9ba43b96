/**
 * An async-iterable queue of deliveries, the usual body of a transport's Subscription: the transport pushes,
 * the bus layer iterates; end() finishes iteration (with an error if given) and wakes every blocked next().
 * It keeps the contract's rules 1 and 3 (src/transport/contract.ts): leaving a for-await loop early calls
 * `onLeave` (the subscription's close), and a delivery whose lease ended while it waited is dropped, never handed
 * out, and reported to `onExpired` so the transport can count its prefetch slot free.
 * An iterator without generator machinery: a waiting next() is handed the next push directly, and taking a delivery
 * moves a head index instead of shifting the array (amortised O(1) per delivery at any depth).
 */
import type { Delivery } from './contract.ts';

export interface DeliveryQueueHooks<D extends Delivery> {
  /** Runs when a for-await loop over the queue is left early: the subscription closes (rule 1). */
  onLeave: () => unknown;
  /** Runs for each delivery dropped because its lease ended before anyone took it (rule 3). */
  onExpired?: ((delivery: D) => void) | undefined;
  /** Runs whenever the application takes the last queued delivery: a transport may read more now. */
  onEmpty?: (() => void) | undefined;
}

interface Waiter<D> {
  resolve(result: IteratorResult<D>): void;
  reject(error: unknown): void;
}

const DONE: IteratorResult<never> = Object.freeze({ done: true, value: undefined });

export class DeliveryQueue<D extends Delivery = Delivery> implements AsyncIterable<D> {
  /** Queued deliveries are #items[#head..]. */
  #items: (D | undefined)[] = [];
  #head = 0;
  readonly #waiters: Waiter<D>[] = [];
  readonly #hooks: DeliveryQueueHooks<D>;
  #ended = false;
  #error: unknown;

  constructor(hooks: DeliveryQueueHooks<D>) {
    this.#hooks = hooks;
  }

  /** Deliveries pushed and not yet taken (expired ones included until an iteration reaches them). */
  get length(): number {
    return this.#items.length - this.#head;
  }

  get ended(): boolean {
    return this.#ended;
  }

  push(delivery: D): void {
    if (this.#ended) return;
    if (this.#waiters.length > 0) {
      // A waiter exists only while the queue is empty: hand it over at once, unless its lease already ended.
      if (delivery.leaseUntil <= Date.now()) {
        this.#hooks.onExpired?.(delivery);
        return;
      }
      this.#waiters.shift()!.resolve({ done: false, value: delivery });
      return;
    }
    this.#items.push(delivery);
  }

  /**
   * Ends iteration at once (rule 1): what is still queued is never handed out; drain() returns it so the
   * transport can release it. Idempotent.
   */
  end(error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    for (const waiter of this.#waiters.splice(0)) {
      if (error === undefined) waiter.resolve(DONE);
      else waiter.reject(error);
    }
  }

  /** Deliveries pushed but not yet taken, removed from the queue (e.g. to release them on close). */
  drain(): D[] {
    const rest = this.#items.slice(this.#head) as D[];
    this.#items = [];
    this.#head = 0;
    return rest;
  }

  #take(): D | undefined {
    const delivery = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items.length = 0;
      this.#head = 0;
      this.#hooks.onEmpty?.();
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      // A queue that never quite empties: drop the taken slots now and then.
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return delivery;
  }

  #next(): Promise<IteratorResult<D>> {
    if (!this.#ended) {
      const now = Date.now();
      while (this.#head < this.#items.length) {
        const delivery = this.#take()!;
        if (delivery.leaseUntil > now) return Promise.resolve({ done: false, value: delivery });
        this.#hooks.onExpired?.(delivery);
      }
    }
    if (this.#ended) return this.#error === undefined ? Promise.resolve(DONE) : Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<D> {
    return {
      next: () => this.#next(),
      // Leaving a for-await loop early closes the subscription (rule 1).
      return: async () => {
        await this.#hooks.onLeave();
        return DONE;
      },
    };
  }
}
