/**
 * A subscription's deliveries between the read loop and the application: an async iterator without generator
 * machinery (a waiting next() is handed the next delivery directly), that keeps the contract's rules 1 and 3 as
 * DeliveryQueue does (leaving a for-await loop closes the subscription; a delivery whose lease ran out while it
 * waited is skipped), and tells the loop when the application has taken everything.
 */
import type { Delivery } from '../../transport/contract.ts';

interface Waiter {
  resolve(result: IteratorResult<Delivery>): void;
  reject(error: unknown): void;
}

const DONE: IteratorResult<Delivery> = Object.freeze({ done: true, value: undefined });

export class Inbox implements AsyncIterable<Delivery> {
  /** Queued deliveries are #items[#head..]: taking one moves the head instead of shifting the array. */
  #items: (Delivery | undefined)[] = [];
  #head = 0;
  readonly #waiters: Waiter[] = [];
  readonly #onEmpty: () => void;
  readonly #onLeave: () => unknown;
  #ended = false;
  #error: unknown;

  /** `onEmpty` runs whenever the application takes the last queued delivery; `onLeave` when a loop is left early. */
  constructor(onEmpty: () => void, onLeave: () => unknown) {
    this.#onEmpty = onEmpty;
    this.#onLeave = onLeave;
  }

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(delivery: Delivery): void {
    if (this.#ended) return;
    const waiter = this.#waiters.shift();
    if (waiter) waiter.resolve({ done: false, value: delivery });
    else this.#items.push(delivery);
  }

  /** Ends iteration: what is still queued is never handed out (the subscription releases it as it closes). */
  end(error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    this.#items = [];
    this.#head = 0;
    for (const waiter of this.#waiters.splice(0)) {
      if (error === undefined) waiter.resolve(DONE);
      else waiter.reject(error);
    }
  }

  #next(): Promise<IteratorResult<Delivery>> {
    const now = Date.now();
    while (this.#head < this.#items.length) {
      const delivery = this.#items[this.#head]!;
      this.#items[this.#head++] = undefined;
      if (this.#head === this.#items.length) {
        this.#items.length = 0;
        this.#head = 0;
        this.#onEmpty();
      } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
        // A queue that never quite empties: drop the taken slots now and then (amortised O(1) per delivery).
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      if (delivery.leaseUntil > now) return Promise.resolve({ done: false, value: delivery });
    }
    if (this.#ended) return this.#error === undefined ? Promise.resolve(DONE) : Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return {
      next: () => this.#next(),
      // Leaving a for-await loop early closes the subscription (contract rule 1).
      return: async () => {
        await this.#onLeave();
        return DONE;
      },
    };
  }
}
