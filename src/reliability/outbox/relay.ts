/**
 * The relay: a plain consumer of the outbox table (Watermill's forwarder, Debezium's outbox). Each batch is claimed,
 * published with its ids unchanged, and marked sent (deleted, or passed by a cursor) in one database transaction, so
 * a relay that dies mid-batch leaves the batch unsent and the next relay sends it again: at-least-once, duplicates
 * always with the same id.
 */
import { EventEmitter } from 'node:events';
import { BusError, toBusError } from '../../errors.ts';
import type { TransportMessage } from '../../transport/contract.ts';
import { resend, runsByType } from '../resend.ts';
import { DEFAULT_BATCH, DEFAULT_POLL_MS, DEFAULT_PUBLISH, type RelayTarget } from './common.ts';

/** One database's side of the relay (pg.ts, sqlite.ts). */
export interface RelaySource {
  /**
   * In one transaction: claims up to `limit` rows in order, hands them to `publish` (in one call, or in calls of
   * `chunk` rows, one after another), marks them sent once all resolved. A rejection rolls back (the rows stay unsent).
   * Resolves with the number of rows relayed.
   */
  relayBatch(limit: number, chunk: number, publish: (messages: TransportMessage[]) => Promise<void>): Promise<number>;
  /** Resolves when rows may have arrived (a NOTIFY), after `pollMs`, or when `signal` aborts. */
  waitForWork(pollMs: number, signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

export interface RelayOptions {
  /** Most rows per database transaction (default 2000). */
  batchSize?: number;
  /** Most messages per broker call; a transaction's rows go out in calls of this size, in order (default 500). */
  publishSize?: number;
  /** Look for rows this often without a wake-up (default 1000 ms). */
  pollMs?: number;
  /** Longest pause after a failure (the pause doubles from 100 ms up to this; default 5000 ms). */
  maxBackoffMs?: number;
}

export interface RelayEvents {
  /** A batch failed (broker or database); the relay retries it after a pause. */
  error: [error: BusError];
  /** A batch was published and removed from the outbox. */
  relayed: [count: number];
}

export class Relay extends EventEmitter<RelayEvents> {
  /** Messages published and removed from the outbox by this relay. */
  relayed = 0;
  readonly #source: RelaySource;
  readonly #target: RelayTarget;
  readonly #batchSize: number;
  readonly #publishSize: number;
  readonly #pollMs: number;
  readonly #maxBackoffMs: number;
  readonly #stop = new AbortController();
  readonly #drainWaiters: Array<() => void> = [];
  readonly #loop: Promise<void>;
  /** Ends the loop's wait for work early: drained() asks for a look now rather than at the next poll. */
  #kick: AbortController | undefined;
  #closing: Promise<void> | undefined;

  constructor(source: RelaySource, target: RelayTarget, options: RelayOptions = {}) {
    super();
    this.#source = source;
    this.#target = target;
    this.#batchSize = positive(options.batchSize, DEFAULT_BATCH, 'batchSize');
    this.#publishSize = positive(options.publishSize, DEFAULT_PUBLISH, 'publishSize');
    this.#pollMs = positive(options.pollMs, DEFAULT_POLL_MS, 'pollMs');
    this.#maxBackoffMs = positive(options.maxBackoffMs, 5000, 'maxBackoffMs');
    this.#loop = this.#run();
  }

  async #publish(messages: TransportMessage[]): Promise<void> {
    for (const [type, run] of runsByType(messages)) {
      for (let start = 0; start < run.length; start += this.#publishSize) {
        await this.#target.sendBatch(type, run.slice(start, start + this.#publishSize).map(resend));
      }
    }
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    let backoff = 0;
    while (!signal.aborted) {
      try {
        const count = await this.#source.relayBatch(this.#batchSize, this.#publishSize, (m) => this.#publish(m));
        backoff = 0;
        if (count > 0) {
          this.relayed += count;
          this.emit('relayed', count);
        }
        if (count < this.#batchSize) {
          for (const wake of this.#drainWaiters.splice(0)) wake();
          if (count === 0) {
            this.#kick = new AbortController();
            await this.#source.waitForWork(this.#pollMs, AbortSignal.any([signal, this.#kick.signal]));
            this.#kick = undefined;
          }
        }
      } catch (error) {
        if (signal.aborted) break;
        const failure = toBusError(error, 'BUSBAR_ERR_PUBLISH', 'outbox relay');
        if (this.listenerCount('error') > 0) this.emit('error', failure);
        else process.emitWarning(`busbar outbox relay: ${failure.message} (retrying)`, { code: failure.code });
        backoff = Math.min(this.#maxBackoffMs, backoff === 0 ? 100 : backoff * 2);
        await pause(backoff, signal);
      }
    }
  }

  /**
   * Resolves the next time the relay finds the outbox empty (or with less than a batch left). A relay waiting for
   * work looks at once (it would otherwise wait for a NOTIFY or its next poll).
   */
  drained(): Promise<void> {
    const drained = new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    this.#kick?.abort();
    return drained;
  }

  /** Idempotent: stops after the batch in hand (published and deleted, or rolled back), then closes connections. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      await this.#loop;
      for (const wake of this.#drainWaiters.splice(0)) wake();
      await this.#source.close();
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function positive(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `relay ${what} must be a whole number >= 1, not ${String(value)}`,
    );
  }
  return value;
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
