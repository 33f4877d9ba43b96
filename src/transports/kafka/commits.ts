/**
 * Offset commits of one group member, folded: one OffsetCommit in flight at a time; the commits asked for meanwhile
 * share one promise and go out together, so acking many messages costs few round trips.
 */
import type { CommitOptionsPartition } from '@platformatic/kafka';
import { type Deferred, deferred } from '../../transport/deferred.ts';
import { kafkaError } from './errors.ts';

export type CommitSender = (offsets: CommitOptionsPartition[]) => Promise<void>;

export class OffsetCommits {
  readonly #send: CommitSender;
  readonly #group: string;
  /** topic:partition -> the offset to commit next (a later one replaces an earlier one). */
  readonly #waiting = new Map<string, CommitOptionsPartition>();
  #next: Deferred | undefined;
  #inflight: Promise<void> | undefined;

  constructor(send: CommitSender, group: string) {
    this.#send = send;
    this.#group = group;
  }

  /** Resolves once a commit that includes `offset` succeeded; rejects with BUSBAR_ERR_ACK if it failed. */
  commit(key: string, offset: CommitOptionsPartition): Promise<void> {
    this.#waiting.set(key, offset);
    this.#next ??= deferred();
    const { promise } = this.#next;
    this.#flush();
    return promise;
  }

  /** Resolves once nothing is in flight or waiting. */
  async drain(): Promise<void> {
    while (this.#inflight) await this.#inflight;
  }

  #flush(): void {
    const next = this.#next;
    if (this.#inflight || !next || this.#waiting.size === 0) return;
    const offsets = [...this.#waiting.values()];
    this.#waiting.clear();
    this.#next = undefined;
    this.#inflight = this.#send(offsets).then(next.resolve, (error: unknown) =>
      next.reject(kafkaError(error, 'BUSBAR_ERR_ACK', `could not commit offsets for group '${this.#group}'`)),
    );
    void this.#inflight.finally(() => {
      this.#inflight = undefined;
      this.#flush();
    });
  }
}
