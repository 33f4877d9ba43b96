/**
 * The ack timeout for a transport whose broker has none (contract: Capabilities.ackTimeout `emulated`): the open
 * deliveries of one subscription, and one timer for the earliest lease rather than one per delivery. A delivery
 * left open past its leaseUntil is handed to `expire`, which returns it to its group (a nack with requeue, a
 * RELEASE, ...); it is still listed while `expire` runs, so a settle hook calling delete() sees it open.
 * Deliveries usually arrive in leaseUntil order (one ackTimeoutMs per subscription), and a sweep then stops at the
 * first live one; once one arrives out of order (a retry with a shorter lease), sweeps look at every open delivery.
 * A delivery whose lease changes must be deleted and added again.
 */
export class LeaseSweeper<D extends { readonly leaseUntil: number }> implements Iterable<D> {
  readonly #expire: (delivery: D) => void;
  /** Open deliveries in the order added, which is deadline order. */
  readonly #open = new Set<D>();
  #timer: NodeJS.Timeout | undefined;
  /** When the timer fires. */
  #armedAt = Number.POSITIVE_INFINITY;
  /** The latest lease added: one added below it breaks the order. */
  #last = Number.NEGATIVE_INFINITY;
  #unordered = false;
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
    const lease = delivery.leaseUntil;
    if (lease < this.#last) this.#unordered = true;
    else this.#last = lease;
    if (lease < this.#armedAt) this.#arm(lease);
  }

  /** The delivery was settled (or lost with its connection); true if it was open. */
  delete(delivery: D): boolean {
    const deleted = this.#open.delete(delivery);
    if (this.#open.size === 0) {
      this.#unordered = false;
      this.#last = Number.NEGATIVE_INFINITY;
    }
    return deleted;
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
    this.#armedAt = Number.POSITIVE_INFINITY;
  }

  #arm(deadline: number): void {
    clearTimeout(this.#timer);
    this.#armedAt = deadline;
    this.#timer = setTimeout(() => this.#sweep(), Math.max(0, deadline - Date.now()));
    this.#timer.unref();
  }

  #sweep(): void {
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
    if (this.#stopped) return;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    for (const delivery of this.#open) {
      const lease = delivery.leaseUntil;
      if (lease > now) {
        next = Math.min(next, lease);
        if (this.#unordered) continue;
        break;
      }
      this.#expire(delivery);
      this.delete(delivery);
    }
    if (next < Number.POSITIVE_INFINITY && !this.#stopped) this.#arm(next);
  }
}
