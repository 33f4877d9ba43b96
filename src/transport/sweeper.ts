/**
 * The ack timeout for a transport whose broker has none (contract: Capabilities.ackTimeout `emulated`): the open
 * deliveries of one subscription, and one timer for the oldest of them rather than one per delivery. A delivery
 * left open past its leaseUntil is handed to `expire`, which returns it to its group (a nack with requeue, a
 * RELEASE, ...); it is still listed while `expire` runs, so a settle hook calling delete() sees it open. Deliveries are added in leaseUntil order, which holds when one subscription has one ackTimeoutMs;
 * one added out of order is expired no later than the first later-deadline delivery ahead of it.
 */
export class LeaseSweeper<D extends { readonly leaseUntil: number }> implements Iterable<D> {
  readonly #expire: (delivery: D) => void;
  /** Open deliveries in the order added, which is deadline order. */
  readonly #open = new Set<D>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(expire: (delivery: D) => void) {
    this.#expire = expire;
  }

  get size(): number {
    return this.#open.size;
  }

  has(delivery: D): boolean {
    return this.#open.has(delivery);
  }

  /** Starts the lease of a delivery just handed to this subscription. */
  add(delivery: D): void {
    if (this.#stopped) return;
    this.#open.add(delivery);
    if (!this.#timer) this.#arm(delivery.leaseUntil);
  }

  /** The delivery was settled (or lost with its connection); true if it was open. */
  delete(delivery: D): boolean {
    return this.#open.delete(delivery);
  }

  /** A copy of the open deliveries, oldest first: safe to settle them while iterating. */
  [Symbol.iterator](): Iterator<D> {
    return [...this.#open][Symbol.iterator]();
  }

  /** Clears the timer; later add() calls are ignored. The open deliveries stay for the caller to release. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(deadline: number): void {
    this.#timer = setTimeout(() => this.#sweep(), Math.max(0, deadline - Date.now()));
    this.#timer.unref();
  }

  #sweep(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    const now = Date.now();
    for (const delivery of this.#open) {
      if (delivery.leaseUntil > now) {
        this.#arm(delivery.leaseUntil);
        return;
      }
      this.#expire(delivery);
      this.#open.delete(delivery);
    }
  }
}
