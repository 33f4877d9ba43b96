/**
 * Per-message acks on top of Kafka's per-partition offsets: a partition's committed offset only moves past a
 * contiguous run of acked messages, so an unacked message is never skipped, whatever order acks arrive in.
 */
export class PartitionProgress {
  /** Offsets fetched and not yet part of the committed prefix, in fetch (= offset) order. */
  readonly #pending: bigint[] = [];
  readonly #acked = new Set<bigint>();
  /** Highest offset taken in: a refetch after a rebalance or reconnect repeats offsets up to here. */
  #highest = -1n;

  /** Takes an offset in; false when it was already taken (a refetch). */
  track(offset: bigint): boolean {
    if (offset <= this.#highest) return false;
    this.#highest = offset;
    this.#pending.push(offset);
    return true;
  }

  /** Marks an offset done; returns the new offset to commit when the acked prefix grew, else undefined. */
  ack(offset: bigint): bigint | undefined {
    this.#acked.add(offset);
    let next: bigint | undefined;
    while (this.#pending.length > 0 && this.#acked.has(this.#pending[0]!)) {
      const done = this.#pending.shift()!;
      this.#acked.delete(done);
      next = done + 1n;
    }
    return next;
  }

  /** The highest offset acked past a gap (an unacked offset before it holds the commit back), or -1. */
  get lastAcked(): bigint {
    let last = -1n;
    for (const offset of this.#acked) if (offset > last) last = offset;
    return last;
  }

  /** True while nothing has been taken in since the last commit point (the start position may be committed). */
  get untouched(): boolean {
    return this.#highest < 0n;
  }

  /** Messages taken in and not yet committed. */
  get outstanding(): number {
    return this.#pending.length;
  }
}
