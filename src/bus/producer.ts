import { EventEmitter } from 'node:events';
import { BusError, checkTypeName, isBusError, toBusError } from '../errors.ts';
import type { Body } from '../message/codec.ts';
import { buildMessage, DEFAULT_SOURCE, type OutgoingOptions } from '../message/envelope.ts';
import { defaultSpoolPath, type SpoolOptions, SpoolSender, type SpoolStats } from '../reliability/spool.ts';
import type { Transport, TransportMessage } from '../transport/contract.ts';
import {
  backoffMs,
  DEFAULT_ASYNC_BATCH,
  DEFAULT_ASYNC_MAX_PENDING,
  DEFAULT_ASYNC_RETRIES,
  DEFAULT_RETRY,
} from './options.ts';
import { checkSchema, type StandardSchemaV1, schemaRejected, validateBody } from './schema.ts';

/** A body with its own key, headers or content type, for producer.send() lists. */
export class Outgoing {
  readonly body: Body;
  readonly options: OutgoingOptions;
  constructor(body: Body, options: OutgoingOptions) {
    this.body = body;
    this.options = options;
  }
}

/** Marks a body with per-message options: `producer.send([message(data, { key: 'k1' })])`. */
export function message(body: Body, options: OutgoingOptions = {}): Outgoing {
  return new Outgoing(body, options);
}

/**
 * Builds every envelope of a batch first, so one bad message rejects the whole call before anything is sent; the
 * error names its place in the list. `call` names the public method, for the error when `messages` is not a list.
 */
export function buildBatch(
  type: string,
  source: string,
  messages: readonly unknown[],
  defaults: OutgoingOptions,
  call: string,
): TransportMessage[] {
  if (!Array.isArray(messages)) {
    throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', `${call}() takes a list of messages: ${call}([body, ...])`);
  }
  return messages.map((item: unknown, i) => {
    try {
      return item instanceof Outgoing
        ? buildMessage(type, source, item.body, { ...defaults, ...item.options })
        : buildMessage(type, source, item, defaults);
    } catch (error) {
      if (!isBusError(error)) throw error;
      throw new BusError(error.code, `messages[${i}]: ${error.message}`, { cause: error, details: { index: i } });
    }
  });
}

export interface ProducerOptions<T = unknown> {
  producerId?: string;
  messageType: string;
  /** 'sync' (default): send() resolves once the broker durably accepted every message. 'async': send() returns once
   *  the messages are queued; failures are reported as 'error' events, and flush()/close() wait for everything. */
  method?: 'sync' | 'async';
  /** Key, headers and content type applied to every message this producer sends (per-message options win). */
  defaults?: OutgoingOptions;
  /** async: most messages per broker publish. */
  maxBatch?: number;
  /** async: send() waits while more than this many messages are queued (backpressure, never dropping). */
  maxPending?: number;
  /** async: retries of a retryable publish failure before it is reported. */
  retries?: number;
  /**
   * A Standard Schema v1 validator (Zod, Valibot, ArkType, ...): send() checks every body first (a `message(body,
   * options)` by its body) and sends the schema's output; a body that fails rejects the whole call with
   * BUSBAR_ERR_INVALID_ARGUMENT naming it and the issues, and nothing is sent.
   */
  schema?: StandardSchemaV1<T, unknown>;
  /**
   * A local SQLite file for what the broker has not confirmed: `true` (the default path), a path, or options. Then
   * send() resolves once its messages are durable at the broker or in the spool, and the spool is replayed in order
   * when the broker is back (also by the next process that opens the same file after a crash). async: every batch
   * goes through the file and send() never waits for the broker; sync: straight to the broker, into the file only
   * when the broker fails or does not answer in time. See docs/reliability.md.
   */
  spool?: boolean | string | SpoolOptions;
}

export interface ProducerStats {
  /** async without a spool: messages queued in memory, not yet sent. */
  readonly queued: number;
  /** The spool's counts, when the producer has one. */
  readonly spool?: SpoolStats | undefined;
}

export interface ProducerEvents {
  /** An async batch failed for good; `error.details.messages` holds the messages, so nothing vanishes silently. */
  error: [error: BusError];
}

/** CORTX's MessageProducer. */
/**
 * Failed async batches an unheard producer keeps (with their messages) for flush()/close() to report. Beyond it only
 * counts are kept: through a long outage with no 'error' listener, memory stays bounded.
 */
export const MAX_UNREPORTED = 100;

const messagesOf = (failure: BusError) => ((failure.details?.messages as unknown[] | undefined) ?? []).length;

export class Producer<T = unknown> extends EventEmitter<ProducerEvents> {
  readonly producerId: string;
  readonly messageType: string;
  readonly method: 'sync' | 'async';
  readonly #transport: Transport;
  readonly #defaults: OutgoingOptions;
  readonly #maxBatch: number;
  readonly #maxPending: number;
  readonly #retries: number;
  readonly #schema: StandardSchemaV1 | undefined;
  readonly #queue: TransportMessage[] = [];
  /** Failed batches no 'error' listener took, for flush()/close() to throw: the latest MAX_UNREPORTED of them. */
  readonly #unreported: BusError[] = [];
  /** Failed batches beyond MAX_UNREPORTED: only counted, so a long outage costs bounded memory. */
  readonly #forgotten = { batches: 0, messages: 0 };
  readonly #idle: Array<() => void> = [];
  readonly #space: Array<() => void> = [];
  readonly #spool: SpoolSender | undefined;
  #flushing = false;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(transport: Transport, options: ProducerOptions<T>) {
    super();
    this.#transport = transport;
    this.#schema = checkSchema(options?.schema, 'producer');
    this.messageType = checkTypeName(options?.messageType);
    this.producerId = options.producerId ?? DEFAULT_SOURCE;
    const method = options.method ?? 'sync';
    if (method !== 'sync' && method !== 'async') {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `producer method must be 'sync' or 'async', not ${JSON.stringify(method)}`,
      );
    }
    this.method = method;
    this.#defaults = options.defaults ?? {};
    this.#maxBatch = options.maxBatch ?? DEFAULT_ASYNC_BATCH;
    this.#maxPending = options.maxPending ?? DEFAULT_ASYNC_MAX_PENDING;
    this.#retries = options.retries ?? DEFAULT_ASYNC_RETRIES;
    if (options.spool !== undefined && options.spool !== false) {
      const spool: SpoolOptions =
        options.spool === true ? {} : typeof options.spool === 'string' ? { path: options.spool } : options.spool;
      if (spool.path === undefined && this.producerId === DEFAULT_SOURCE) {
        throw new BusError(
          'BUSBAR_ERR_INVALID_ARGUMENT',
          'a spool needs a name that survives a restart: give the producer a producerId (its default spool file is ' +
            'named after it) or spool.path',
        );
      }
      this.#spool = new SpoolSender(spool.path ?? defaultSpoolPath(this.producerId), {
        ...spool,
        mode: method === 'async' ? 'through' : 'fallback',
        publish: (type, batch) => this.#transport.publish(type, batch),
        maxBatch: this.#maxBatch,
        onFailure: (failure) => this.#report(failure),
      });
    }
  }

  /** In-memory queue and spool counts (messages, bytes, oldest age, failed, last error). */
  stats(): ProducerStats {
    return { queued: this.#queue.length, spool: this.#spool?.stats() };
  }

  /** Every body through the schema, its output in its place; the first failure rejects the call. */
  async #validate(messages: readonly unknown[]): Promise<readonly unknown[]> {
    if (!Array.isArray(messages)) return messages;
    const schema = this.#schema!;
    return Promise.all(
      messages.map(async (item: unknown, i) => {
        const result = await validateBody(schema, item instanceof Outgoing ? item.body : item);
        if (!result.ok) throw schemaRejected(this.messageType, result.reason, i);
        return item instanceof Outgoing ? new Outgoing(result.value as Body, item.options) : result.value;
      }),
    );
  }

  async send(messages: readonly (T | Outgoing)[]): Promise<void> {
    if (this.#closed) {
      throw new BusError(
        'BUSBAR_ERR_CLOSED',
        `producer ${this.producerId} is closed: create a new one with bus.producer()`,
      );
    }
    const checked = this.#schema ? await this.#validate(messages) : messages;
    const batch = buildBatch(this.messageType, this.producerId, checked, this.#defaults, 'producer.send');
    if (batch.length === 0) return;
    if (this.#spool) {
      await this.#spool.send(batch);
      return;
    }
    if (this.method === 'sync') {
      await this.#transport.publish(this.messageType, batch);
      return;
    }
    while (this.#queue.length >= this.#maxPending) {
      await new Promise<void>((resolve) => this.#space.push(resolve));
    }
    this.#queue.push(...batch);
    if (!this.#flushing) {
      this.#flushing = true;
      setImmediate(() => void this.#drain());
    }
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      for (const wake of this.#space.splice(0)) wake();
      await this.#publishWithRetry(batch);
    }
    this.#flushing = false;
    for (const wake of this.#idle.splice(0)) wake();
  }

  async #publishWithRetry(batch: TransportMessage[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#transport.publish(this.messageType, batch);
        return;
      } catch (error) {
        const retryable = isBusError(error) ? error.retryable : false;
        if (retryable && attempt <= this.#retries) {
          await new Promise((resolve) => setTimeout(resolve, backoffMs(attempt, DEFAULT_RETRY)));
          continue;
        }
        const failure = new BusError(
          'BUSBAR_ERR_PUBLISH',
          `async send of ${batch.length} message(s) to '${this.messageType}' failed after ${attempt} attempt(s): ` +
            `${toBusError(error, 'BUSBAR_ERR_PUBLISH', 'publish').message}; the messages are in error.details.messages`,
          { cause: error, retryable, details: { messages: batch } },
        );
        this.#report(failure);
        return;
      }
    }
  }

  /**
   * Waits until every queued message was published or reported (with a spool: until the spool is empty, which
   * waits for the broker however long it is away); rejects with failures no listener took.
   */
  async flush(): Promise<void> {
    if (this.#flushing) await new Promise<void>((resolve) => this.#idle.push(resolve));
    if (this.#spool && !this.#closed) await this.#spool.drained();
    const failures = this.#unreported.splice(0);
    const forgotten = { ...this.#forgotten };
    this.#forgotten.batches = 0;
    this.#forgotten.messages = 0;
    if (failures.length === 1 && forgotten.batches === 0) throw failures[0];
    if (failures.length > 0) {
      const count = failures.reduce((n, f) => n + messagesOf(f), 0) + forgotten.messages;
      const kept =
        forgotten.batches === 0
          ? 'see error.details.failures'
          : `error.details.failures holds the last ${failures.length}; listen for 'error' to see every failure`;
      throw new BusError(
        'BUSBAR_ERR_PUBLISH',
        `${failures.length + forgotten.batches} async batches (${count} messages) failed to publish; ${kept}`,
        { cause: new AggregateError(failures), details: { failures, forgotten } },
      );
    }
  }

  /** A failed async batch: to the 'error' listeners, else kept for flush() (the latest MAX_UNREPORTED, the rest counted). */
  #report(failure: BusError): void {
    if (this.listenerCount('error') > 0) {
      this.emit('error', failure);
      return;
    }
    this.#unreported.push(failure);
    if (this.#unreported.length > MAX_UNREPORTED) {
      const oldest = this.#unreported.shift()!;
      this.#forgotten.batches++;
      this.#forgotten.messages += messagesOf(oldest);
    }
  }

  /** CORTX's purge(): removes every stored message of this producer's type. */
  async purge(): Promise<void> {
    await this.#transport.admin.purge(this.messageType);
  }

  /**
   * Idempotent; flushes queued async messages first. With a spool: drains it for up to spool.drainOnCloseMs, then
   * leaves the rest in the file for the next producer that opens it (or `busbar spool flush`).
   */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= (async () => {
      await this.#spool?.close();
    })();
    return this.#closing.then(() => this.flush());
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
