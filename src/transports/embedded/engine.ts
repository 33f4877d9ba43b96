/**
 * The embedded broker's heart: one connection, one writer queue. Every operation queued by one callback and the
 * promise reactions it sets off (publishes, acks, nacks, releases, group attaches) and every claim a consumer wants
 * run in ONE `BEGIN IMMEDIATE` transaction (group commit); each caller's promise settles after that COMMIT. Waiting
 * consumers are woken at once by commits in this process and, for commits by other processes, by polling
 * `PRAGMA data_version` while anyone waits.
 */
import { BusError, type ErrorCode } from '../../errors.ts';
import type { Retention, TransportMessage } from '../../transport/contract.ts';
import type { EmbeddedOptions } from './options.ts';
import type { Store } from './store.ts';

/** Something that takes messages in a flush: a subscription. */
export interface Claimer {
  /** Runs inside the flush transaction. */
  claim(store: Store, now: number): void;
  /** The claim's transaction committed. */
  claimed(): void;
  /** The claim's transaction failed and was rolled back. */
  claimFailed(error: unknown): void;
}

export type Operation = (store: Store, now: number) => void;

interface Queued {
  readonly apply: Operation;
  readonly code: ErrorCode;
  readonly what: string;
  /** A change consumers may be waiting for (new message, freed key, returned lease). */
  wakes: boolean;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

interface AckedInGroup {
  readonly type: string;
  readonly group: string;
  readonly seqs: number[];
  readonly keys: Set<string>;
}

/** Flushes that may follow each other without the event loop turning (see Engine.#schedule). */
const FLUSHES_PER_TURN = 32;

/** Engines of this process by file, so a commit by one wakes consumers of the others at once. */
const enginesByPath = new Map<string, Set<Engine>>();

export class Engine {
  readonly store: Store;
  readonly options: EmbeddedOptions;
  #queue: Queued[] = [];
  readonly #claimers = new Set<Claimer>();
  readonly #waiting = new Set<Claimer>();
  #flushScheduled = false;
  /** Flushes run one after another since one last waited for the event loop to turn (see #schedule). */
  #flushesThisTurn = 0;
  #pollTimer: NodeJS.Timeout | undefined;
  #lastVersion = 0;
  readonly #retentionTimer: NodeJS.Timeout;
  /** Per type, when its age limit is next checked after a publish. */
  readonly #ageCheckDue = new Map<string, number>();
  /** The acks queued for the next flush, as one operation. */
  #acks: { byGroup: Map<string, AckedInGroup>; item: Queued; promise: Promise<void> } | undefined;
  #closed = false;

  constructor(store: Store, options: EmbeddedOptions) {
    this.store = store;
    this.options = options;
    this.#lastVersion = store.dataVersion();
    this.#retentionTimer = setInterval(() => {
      const housekeeping = (store: Store, now: number) => {
        store.trimAll(now);
        store.repair();
      };
      this.run(housekeeping, 'BUSBAR_ERR_BROKER', 'retention', true).catch(() => {});
    }, options.retentionIntervalMs);
    this.#retentionTimer.unref();
    const peers = enginesByPath.get(options.path) ?? new Set<Engine>();
    enginesByPath.set(options.path, peers);
    peers.add(this);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queues a write for the next flush; resolves after the COMMIT that contains it. */
  run(apply: Operation, code: ErrorCode, what: string, wakes = true): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    return this.#enqueue(apply, code, what, wakes).promise;
  }

  #enqueue(apply: Operation, code: ErrorCode, what: string, wakes: boolean): { item: Queued; promise: Promise<void> } {
    let settle!: Pick<Queued, 'resolve' | 'reject'>;
    const promise = new Promise<void>((resolve, reject) => {
      settle = { resolve, reject };
    });
    const item: Queued = { apply, code, what, wakes, ...settle };
    this.#queue.push(item);
    this.#schedule();
    return { item, promise };
  }

  /**
   * Acks arriving before one flush share one queued operation and one promise, and become one multi-row DELETE per
   * group: consume+ack throughput depends on it.
   */
  ack(type: string, group: string, seq: number, key: string | undefined): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    if (!this.#acks) {
      const byGroup = new Map<string, AckedInGroup>();
      const apply: Operation = (store) => {
        for (const entry of byGroup.values()) store.ack(entry.type, entry.group, entry.seqs, entry.keys);
      };
      // Acks wake other consumers only when they free a key; otherwise they free nothing anyone waits for.
      const { item, promise } = this.#enqueue(apply, 'BUSBAR_ERR_ACK', 'ack', false);
      this.#acks = { byGroup, item, promise };
    }
    const id = `${type}\u0000${group}`;
    let entry = this.#acks.byGroup.get(id);
    if (!entry) {
      entry = { type, group, seqs: [], keys: new Set() };
      this.#acks.byGroup.set(id, entry);
    }
    entry.seqs.push(seq);
    if (key !== undefined) {
      entry.keys.add(key);
      this.#acks.item.wakes = true;
    }
    return this.#acks.promise;
  }

  /** Appends a batch; enforces the type's retention cheaply in the same transaction. */
  publishOperation(type: string, batch: readonly TransportMessage[]): Operation {
    return (store, now) => {
      const limits = store.insert(type, batch, now);
      if (this.#retentionDue(type, limits, now)) store.trim(type, limits, limits.bytes, now);
    };
  }

  #retentionDue(type: string, limits: Retention & { bytes: number }, now: number): boolean {
    if (limits.maxBytes !== undefined && limits.bytes > limits.maxBytes) return true;
    if (limits.maxAgeMs === undefined) return false;
    const due = this.#ageCheckDue.get(type) ?? 0;
    if (now < due) return false;
    this.#ageCheckDue.set(type, now + Math.min(this.options.retentionIntervalMs, limits.maxAgeMs));
    return true;
  }

  /** The claimer takes messages in the next flush. */
  want(claimer: Claimer): void {
    if (this.#closed) return;
    this.#waiting.delete(claimer);
    this.#claimers.add(claimer);
    this.#schedule();
  }

  /** The claimer found nothing: claim again once something changes. */
  wait(claimer: Claimer): void {
    if (this.#closed || this.#claimers.has(claimer)) return;
    this.#waiting.add(claimer);
    this.#pollTimer ??= setInterval(() => this.#poll(), this.options.pollMs);
  }

  forget(claimer: Claimer): void {
    this.#claimers.delete(claimer);
    this.#waiting.delete(claimer);
    this.#stopPollingIfIdle();
  }

  /** Something changed in the file: every waiting claimer claims again. */
  wake(): void {
    if (this.#waiting.size === 0) return;
    for (const claimer of this.#waiting) this.#claimers.add(claimer);
    this.#waiting.clear();
    this.#stopPollingIfIdle();
    this.#schedule();
  }

  #poll(): void {
    let version: number;
    try {
      version = this.store.dataVersion();
    } catch {
      return;
    }
    if (version === this.#lastVersion) return;
    this.#lastVersion = version;
    this.wake();
  }

  #stopPollingIfIdle(): void {
    if (this.#waiting.size > 0 || this.#pollTimer === undefined) return;
    clearInterval(this.#pollTimer);
    this.#pollTimer = undefined;
  }

  /**
   * A flush runs once the current callback and every promise reaction it caused are done (process.nextTick queued
   * from there runs after them), not a turn of the event loop later: an awaited ack then commits, and the consumer
   * takes its next message, without waiting for the loop's check phase (one message per turn before). Flushes in a
   * row can feed each other (a commit resolves an ack, the loop acks the next message), so after FLUSHES_PER_TURN of
   * them one waits for the next turn and lets timers and I/O run.
   */
  #schedule(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    if (this.#flushesThisTurn < FLUSHES_PER_TURN) {
      this.#flushesThisTurn++;
      process.nextTick(() => this.#flush());
    } else {
      setImmediate(() => {
        this.#flushesThisTurn = 0;
        this.#flush();
      });
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#closed && this.#queue.length === 0) return;
    const ops = this.#queue;
    this.#queue = [];
    this.#acks = undefined;
    const wakes = ops.some((op) => op.wakes);
    // Consumers waiting for exactly these changes claim in the same transaction: publish-to-delivery in one commit.
    if (wakes && !this.#closed) this.wake();
    const claimers = this.#closed ? [] : [...this.#claimers];
    this.#claimers.clear();
    if (ops.length === 0 && claimers.length === 0) return;
    const now = Date.now();
    try {
      this.#transaction(() => {
        for (const op of ops) op.apply(this.store, now);
        for (const claimer of claimers) claimer.claim(this.store, now);
      });
    } catch {
      // Something failed and rolled everything back: run each part alone so only the culprit fails.
      this.#isolate(ops, claimers, now);
      return;
    }
    for (const op of ops) op.resolve();
    for (const claimer of claimers) claimer.claimed();
    if (wakes) this.#wakePeers();
  }

  #isolate(ops: Queued[], claimers: Claimer[], now: number): void {
    let wakes = false;
    for (const op of ops) {
      try {
        this.#transaction(() => op.apply(this.store, now));
        wakes ||= op.wakes;
        op.resolve();
      } catch (error) {
        op.reject(error instanceof BusError ? error : brokerError(error, op.code, op.what, this.options.path));
      }
    }
    for (const claimer of claimers) {
      try {
        this.#transaction(() => claimer.claim(this.store, now));
        claimer.claimed();
      } catch (error) {
        claimer.claimFailed(error);
      }
    }
    if (wakes) this.#wakePeers();
  }

  #transaction(work: () => void): void {
    const db = this.store.db;
    db.exec('BEGIN IMMEDIATE');
    try {
      work();
      db.exec('COMMIT');
    } catch (error) {
      if (db.isOpen && db.isTransaction) db.exec('ROLLBACK');
      throw error;
    }
  }

  #wakePeers(): void {
    for (const peer of enginesByPath.get(this.options.path) ?? []) if (peer !== this) peer.wake();
  }

  /** Runs what is queued, then closes the connection. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    clearInterval(this.#retentionTimer);
    if (this.#pollTimer) clearInterval(this.#pollTimer);
    this.#pollTimer = undefined;
    this.#claimers.clear();
    this.#waiting.clear();
    const peers = enginesByPath.get(this.options.path);
    peers?.delete(this);
    if (peers?.size === 0) enginesByPath.delete(this.options.path);
    for (const op of this.#queue.splice(0)) op.reject(closedError());
    this.store.db.close();
  }
}

export function closedError(): BusError {
  return new BusError('BUSBAR_ERR_CLOSED', 'the embedded transport is closed: connect again to use the bus');
}

function brokerError(error: unknown, code: ErrorCode, what: string, path: string): BusError {
  const reason = error instanceof Error ? error.message : String(error);
  const busy = /busy|locked/i.test(reason);
  return new BusError(
    code,
    `${what} failed on the embedded bus file ${path}: ${reason}${busy ? ': another process held the write lock too long; retry' : ''}`,
    { cause: error, retryable: busy || code === 'BUSBAR_ERR_PUBLISH' },
  );
}
