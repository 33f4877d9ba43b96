/**
 * An async-iterable queue of deliveries, the usual body of a transport's Subscription: the transport pushes,
 * the bus layer iterates; end() finishes iteration (with an error if given) and wakes a blocked next().
 * It keeps the contract's rules 1 and 3 (src/transport/contract.ts): leaving a for-await loop early calls
 * `onLeave` (the subscription's close), and a delivery whose lease ended while it waited is dropped, never handed
 * out, and reported to `onExpired` so the transport can count its prefetch slot free.
 */
import type { Delivery } from './contract.ts';

export interface DeliveryQueueHooks<D extends Delivery> {
  /** Runs when a for-await loop over the queue is left early: the subscription closes (rule 1). */
  onLeave: () => unknown;
  /** Runs for each delivery dropped because its lease ended before anyone took it (rule 3). */
  onExpired?: (delivery: D) => void;
}

export class DeliveryQueue<D extends Delivery = Delivery> implements AsyncIterable<D> {
  readonly #items: D[] = [];
  readonly #hooks: DeliveryQueueHooks<D>;
  #wake: (() => void) | undefined;
  #ended = false;
  #error: unknown;

  constructor(hooks: DeliveryQueueHooks<D>) {
    this.#hooks = hooks;
  }

  get length(): number {
    return this.#items.length;
  }

  get ended(): boolean {
    return this.#ended;
  }

  push(delivery: D): void {
    if (this.#ended) return;
    this.#items.push(delivery);
    this.#signal();
  }

  end(error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    this.#signal();
  }

  /** Deliveries pushed but not yet taken, removed from the queue (e.g. to release them on close). */
  drain(): D[] {
    return this.#items.splice(0);
  }

  #signal(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<D> {
    let finished = false;
    try {
      for (;;) {
        const item = this.#items.shift();
        if (item) {
          if (item.leaseUntil <= Date.now()) {
            this.#hooks.onExpired?.(item);
            continue;
          }
          yield item;
          continue;
        }
        if (this.#ended) {
          finished = true;
          if (this.#error !== undefined) throw this.#error;
          return;
        }
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
      }
    } finally {
      if (!finished) await this.#hooks.onLeave();
    }
  }
}
