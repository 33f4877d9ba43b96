/**
 * An async-iterable queue of deliveries, the usual body of a transport's Subscription: the transport pushes,
 * the bus layer iterates; end() finishes iteration (with an error if given) and wakes a blocked next().
 */
import type { Delivery } from './contract.ts';

export class DeliveryQueue implements AsyncIterable<Delivery> {
  readonly #items: Delivery[] = [];
  #wake: (() => void) | undefined;
  #ended = false;
  #error: unknown;

  get length(): number {
    return this.#items.length;
  }

  get ended(): boolean {
    return this.#ended;
  }

  push(delivery: Delivery): void {
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
  drain(): Delivery[] {
    return this.#items.splice(0);
  }

  #signal(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Delivery> {
    for (;;) {
      const item = this.#items.shift();
      if (item) {
        yield item;
        continue;
      }
      if (this.#ended) {
        if (this.#error !== undefined) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }
}
