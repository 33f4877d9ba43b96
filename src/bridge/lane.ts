/**
 * One source type's path through a bridge: a consumer in the bridge's group reads the type, a writer publishes what
 * it read to the target type in the order read, and acks each message at the source only once the target confirmed
 * it. Whatever was read while a publish was in flight goes in the next batch (batches form by themselves, no timer).
 *
 * - A failed publish is retried, the same batch in the same order, until the target takes it: nothing is skipped
 *   and nothing overtakes, so order per key holds. Errors no retry can fix (a message the target refuses) stop the
 *   bridge instead.
 * - A consumer that fails (the source broker went away) is replaced after a backoff; messages it had handed out and
 *   the bridge had not acked come back from the source, as redeliveries with the same id.
 * - A redelivery of a message still waiting in this lane (its lease ran out while the target was down) joins the
 *   waiting copy instead of being sent twice; both are acked once the target confirmed.
 */
import type { MessageBus } from '../bus/bus.ts';
import type { Consumer } from '../bus/consumer.ts';
import type { Message } from '../bus/message.ts';
import { backoffMs } from '../bus/options.ts';
import { message as outgoing } from '../bus/producer.ts';
import { BusError, isBusError, toBusError } from '../errors.ts';
import type { Offset } from '../transport/contract.ts';

/** Failures a retry cannot fix: the bridge stops on them rather than retrying forever. */
const PERMANENT = new Set([
  'BUSBAR_ERR_INVALID_ARGUMENT',
  'BUSBAR_ERR_INVALID_TYPE_NAME',
  'BUSBAR_ERR_INVALID_GROUP_NAME',
  'BUSBAR_ERR_ENCODE',
  'BUSBAR_ERR_MESSAGE_TOO_LARGE',
  'BUSBAR_ERR_UNSUPPORTED',
  'BUSBAR_ERR_AUTH',
  'BUSBAR_ERR_FORBIDDEN',
]);

const RETRY = { initialDelayMs: 100, maxDelayMs: 5000, factor: 2 } as const;
const ACK_REPORT_MS = 10_000;

export function isPermanent(error: unknown): boolean {
  return isBusError(error) && PERMANENT.has(error.code);
}

/** What a lane needs from its bridge. */
export interface LaneHost {
  readonly source: MessageBus;
  readonly target: MessageBus;
  readonly group: string;
  readonly consumerId: string;
  readonly offset: Offset;
  readonly ackTimeoutMs: number;
  readonly prefetch: number;
  readonly maxBatch: number;
  /** A non-fatal problem (a retried publish, a replaced consumer, a failed ack). */
  warn(error: BusError): void;
  /** A problem no retry fixes: the bridge stops. */
  fail(error: BusError): void;
}

export type LaneState = 'starting' | 'running' | 'retrying' | 'stopped';

export interface LaneStats {
  /** The source type. */
  readonly type: string;
  /** The type it is published to at the target. */
  readonly target: string;
  readonly state: LaneState;
  /** Messages read from the source (redeliveries included). */
  readonly received: number;
  /** Messages the target confirmed (each counted once however often the source delivered it). */
  readonly forwarded: number;
  /** Read and not yet confirmed by the target. */
  readonly pending: number;
  /** Source deliveries of a message already waiting in the lane, joined to it instead of sent twice. */
  readonly joined: number;
  /** Publishes that failed and were retried. */
  readonly publishRetries: number;
  /** Acks the source refused after the target confirmed (those messages come again: same ids). */
  readonly ackFailures: number;
  /** Consumers replaced after they failed. */
  readonly consumerRestarts: number;
  /** The source's unread count for the bridge's group, at the last sample; null before one or where unknown. */
  readonly lag: number | null;
  readonly lastError: string | null;
}

interface Entry {
  readonly id: string;
  /** The first delivery, and any redelivery of the same message that came while this one waited. */
  readonly copies: Message[];
}

export class Lane {
  readonly type: string;
  readonly target: string;
  /** Resolves once the lane's first consumer is attached to the group at the source (or the lane stopped). */
  readonly ready: Promise<void>;
  /** Resolves once the lane stopped: the reader ended and everything read was published (or given back). */
  readonly done: Promise<void>;
  #attached: () => void = () => {};
  readonly #host: LaneHost;
  readonly #queue: Entry[] = [];
  readonly #waiting = new Map<string, Entry>();
  readonly #stop = new AbortController();
  readonly #acks = new Set<Promise<void>>();
  /** The consumers that read what is in the queue; closed once the writer is done with them. */
  readonly #consumers = new Set<Consumer>();
  #wake: (() => void) | undefined;
  #readerDone = false;
  /** Set by abandon(): stop retrying, leave what is unpublished to the source (closing returns it). */
  #abandoned = false;
  #state: LaneState = 'starting';
  #received = 0;
  #forwarded = 0;
  #joined = 0;
  #publishRetries = 0;
  #ackFailures = 0;
  #consumerRestarts = 0;
  #lag: number | null = null;
  #lastError: string | null = null;
  #ackReportedAt = 0;
  #unreportedAckFailures = 0;

  constructor(host: LaneHost, type: string, target: string) {
    this.#host = host;
    this.type = type;
    this.target = target;
    this.ready = new Promise((resolve) => {
      this.#attached = resolve;
    });
    const reading = this.#read();
    const writing = this.#write(reading);
    this.done = Promise.all([reading, writing]).then(() => this.#closeConsumers());
  }

  get forwarded(): number {
    return this.#forwarded;
  }

  set lag(value: number | null) {
    this.#lag = value;
  }

  stats(): LaneStats {
    return {
      type: this.type,
      target: this.target,
      state: this.#state,
      received: this.#received,
      forwarded: this.#forwarded,
      pending: this.#waiting.size,
      joined: this.#joined,
      publishRetries: this.#publishRetries,
      ackFailures: this.#ackFailures,
      consumerRestarts: this.#consumerRestarts,
      lag: this.#lag,
      lastError: this.#lastError,
    };
  }

  /** Stops reading; what was read is still published and acked (see abandon()). */
  stop(): void {
    this.#stop.abort();
    this.#wake?.();
  }

  /** Gives up on what is not yet published: it stays unacked and returns to the group when the consumer closes. */
  abandon(): void {
    this.#abandoned = true;
    this.stop();
  }

  #consumer(): Consumer {
    const host = this.#host;
    const consumer = host.source.consumer({
      consumerGroup: host.group,
      consumerId: host.consumerId,
      messageTypes: [this.type],
      offset: host.offset,
      ackTimeoutMs: host.ackTimeoutMs,
      prefetch: host.prefetch,
    });
    this.#consumers.add(consumer);
    return consumer;
  }

  async #read(): Promise<void> {
    const signal = this.#stop.signal;
    for (let failures = 0; !signal.aborted; ) {
      const consumer = this.#consumer();
      try {
        await consumer.ready;
        if (this.#state === 'starting') this.#state = 'running';
        this.#attached();
        for (;;) {
          const message = await consumer.receive({ timeout: 0, signal });
          if (!message) break;
          failures = 0;
          this.#accept(message);
        }
      } catch (error) {
        if (signal.aborted) break;
        this.#consumerRestarts++;
        this.#problem(toBusError(error, 'BUSBAR_ERR_CONNECTION', `reading '${this.type}' from the source`), true);
      }
      if (signal.aborted) break;
      // The consumer ended or failed: what it handed out and this lane did not ack comes back to a new one.
      this.#retire(consumer);
      await delay(backoffMs(++failures, RETRY), signal);
    }
    this.#readerDone = true;
    this.#attached();
    this.#wake?.();
  }

  #accept(message: Message): void {
    this.#received++;
    const waiting = this.#waiting.get(message.id);
    if (waiting) {
      this.#joined++;
      waiting.copies.push(message);
      return;
    }
    const entry: Entry = { id: message.id, copies: [message] };
    this.#waiting.set(message.id, entry);
    this.#queue.push(entry);
    this.#wake?.();
  }

  async #write(reading: Promise<void>): Promise<void> {
    for (;;) {
      if (this.#queue.length === 0) {
        if (this.#readerDone) break;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        this.#wake = undefined;
        continue;
      }
      if (this.#abandoned) break;
      const batch = this.#queue.splice(0, this.#host.maxBatch);
      if (!(await this.#publish(batch))) break;
      for (const entry of batch) this.#waiting.delete(entry.id);
      this.#forwarded += batch.length;
      this.#ack(batch);
    }
    await reading;
    await Promise.all(this.#acks);
  }

  /** Publishes the batch, retrying until the target confirms; false when abandoned first. */
  async #publish(batch: Entry[]): Promise<boolean> {
    const messages = batch.map(({ copies: [m] }) =>
      outgoing(m!.raw, {
        id: m!.id,
        time: m!.time,
        source: m!.source,
        key: m!.key,
        headers: { ...m!.headers },
        contentType: m!.contentType,
      }),
    );
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#host.target.sendBatch(this.target, messages);
        if (this.#state === 'retrying') this.#state = 'running';
        return true;
      } catch (error) {
        const failure = toBusError(error, 'BUSBAR_ERR_PUBLISH', `publishing to '${this.target}' at the target`);
        if (isPermanent(failure)) {
          this.#lastError = failure.message;
          this.#host.fail(
            new BusError(
              failure.code,
              `the target refused a batch of ${batch.length} '${this.type}' message(s) (first id ${batch[0]!.id}) ` +
                `for '${this.target}': ${failure.message}; nothing of it was acked at the source, so it stays there`,
              { cause: failure },
            ),
          );
          return false;
        }
        this.#publishRetries++;
        this.#state = 'retrying';
        this.#problem(failure, attempt === 1);
        if (this.#abandoned) return false;
        await delay(backoffMs(attempt, RETRY));
        if (this.#abandoned) return false;
      }
    }
  }

  #ack(batch: Entry[]): void {
    for (const entry of batch) {
      for (const copy of entry.copies) {
        const ack: Promise<void> = copy
          .ack()
          .catch((error) => this.#ackFailed(toBusError(error, 'BUSBAR_ERR_ACK', 'ack')))
          .finally(() => this.#acks.delete(ack));
        this.#acks.add(ack);
      }
    }
  }

  /**
   * A lost ack means the source sends the message again (same id). A source that goes away fails every ack in
   * flight: they are reported together, at most once per ACK_REPORT_MS, not one warning each.
   */
  #ackFailed(error: BusError): void {
    this.#ackFailures++;
    this.#unreportedAckFailures++;
    const now = Date.now();
    if (now - this.#ackReportedAt < ACK_REPORT_MS) return;
    this.#ackReportedAt = now;
    const count = this.#unreportedAckFailures;
    this.#unreportedAckFailures = 0;
    this.#problem(
      new BusError(
        error.code,
        `${count} ack(s) of '${this.type}' failed at the source (the target has those messages; the source will ` +
          `send them again, with the same ids), latest: ${error.message}`,
        { cause: error, retryable: true },
      ),
      true,
    );
  }

  #problem(error: BusError, report: boolean): void {
    this.#lastError = error.message;
    if (report) this.#host.warn(error);
  }

  /** Closes a consumer that ended; its unacked messages return to the group at once. */
  #retire(consumer: Consumer): void {
    this.#consumers.delete(consumer);
    void consumer.close().catch(() => {});
  }

  async #closeConsumers(): Promise<void> {
    this.#state = 'stopped';
    await Promise.allSettled([...this.#consumers].map((c) => c.close()));
    this.#consumers.clear();
  }
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
