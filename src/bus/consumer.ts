import { BusError, checkTypeName } from '../errors.ts';
import {
  type Delivery,
  MAX_ACK_TIMEOUT_MS,
  type Offset,
  type Subscription,
  type Transport,
} from '../transport/contract.ts';
import { deadLetter } from './dead-letter.ts';
import { Message } from './message.ts';
import { DEFAULT_ACK_TIMEOUT_MS, DEFAULT_PREFETCH, deadLetterTypeOf } from './options.ts';
import { checkSchema, type StandardSchemaV1, validateBody } from './schema.ts';
import { deliverChannel } from './tracing.ts';

export interface ConsumerOptions<T = unknown> {
  /** Identifies this member of the group (logs, broker consumer names). Defaults to a random id. */
  consumerId?: string;
  consumerGroup: string;
  messageTypes: string | readonly string[];
  /** Ack each message as receive() returns it (fire-and-forget readers). Default false. */
  autoAck?: boolean;
  /** Where a group that has never read a type starts. Default 'earliest'. */
  offset?: Offset;
  ackTimeoutMs?: number;
  /** Unacked messages the broker may hand this consumer ahead of receive() (a whole number >= 1). */
  prefetch?: number;
  /** A message delivered more often than this goes to its dead-letter type. Default: no limit. */
  maxAttempts?: number;
  deadLetterType?: (type: string) => string;
  signal?: AbortSignal;
  /**
   * A Standard Schema v1 validator (Zod, Valibot, ArkType, ...) for the decoded body: receive() returns only
   * messages whose body passes it, typed as its output (`Message<T>`); a message that fails it, or whose body does
   * not decode, goes to its dead-letter type at once with the reason in `busbar-dlq-reason` (it would fail again on
   * every redelivery) when a receive() meets it: the consumer pulls only while a receive() waits.
   */
  schema?: StandardSchemaV1<unknown, T>;
}

export interface ReceiveOptions {
  /** Milliseconds to wait for a message; 0 waits until one arrives (or the consumer closes); absent: the bus's
   *  receiveTimeoutMs (CORTX receive_timeout), 0 unless configured. */
  timeout?: number;
  /** Stops this wait (receive() resolves null) without closing the consumer: messages it holds can still be acked. */
  signal?: AbortSignal;
}

/** What the bus's configuration sets for every consumer: ackTimeoutMs, and receive()'s timeout when none is given. */
export interface ConsumerDefaults {
  ackTimeoutMs?: number;
  receiveTimeoutMs?: number;
}

/** A delivery pulled for the application, with its body's schema output when the consumer has a schema. */
interface Pulled {
  readonly delivery: Delivery;
  readonly validated?: { value: unknown } | undefined;
}

interface Waiter<T> {
  resolve: (message: Message<T> | null) => void;
  reject: (error: unknown) => void;
  timer?: NodeJS.Timeout | undefined;
  signal?: AbortSignal | undefined;
}

/**
 * CORTX's MessageConsumer: receive one message at a time, ack them, or iterate with for await.
 * It pulls from its subscription only while a receive() waits, so deliveries wait in the transport, which drops
 * those whose lease ends first (contract rule 3). A delivery that arrives after its receive() gave up is kept for
 * the next receive(), and dropped there if its lease has ended: another member may hold the message by then.
 */
export class Consumer<T = unknown> implements AsyncIterable<Message<T>> {
  readonly consumerId: string;
  readonly consumerGroup: string;
  readonly messageTypes: readonly string[];
  readonly autoAck: boolean;
  /** Resolves once the consumer is attached to its group (its start position is then fixed). */
  readonly ready: Promise<void>;
  readonly #transport: Transport;
  readonly #subscription: Subscription;
  readonly #deliveries: AsyncIterator<Delivery>;
  /** Pulled after the receive() that wanted them gave up: at most one per give-up, handed out only while leased. */
  readonly #ahead: Pulled[] = [];
  readonly #waiters: Waiter<T>[] = [];
  readonly #unacked = new Set<Message<T>>();
  readonly #schema: StandardSchemaV1<unknown, T> | undefined;
  readonly #maxAttempts: number;
  readonly #deadLetterType: (type: string) => string;
  readonly #receiveTimeoutMs: number;
  #pulling: Promise<void> | undefined;
  /** The subscription's iteration ended (closed, or failed: see #failure). */
  #ended = false;
  readonly #onAbort = () => void this.close();
  readonly #forget = (message: Message<T>) => this.#unacked.delete(message);
  /**
   * The receive() signal this consumer listens to. The listener stays until another signal or close(): a reader
   * that passes the same signal to every receive() pays for one listener, not one per wait.
   */
  #watched: AbortSignal | undefined;
  readonly #onReceiveAbort = (event: Event) => {
    for (const waiter of this.#waiters.filter((w) => w.signal === event.target)) this.#giveUp(waiter);
  };
  #failure: unknown;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(transport: Transport, options: ConsumerOptions<T>, defaults: ConsumerDefaults = {}) {
    this.#transport = transport;
    this.#schema = checkSchema(options.schema, 'consumer') as StandardSchemaV1<unknown, T> | undefined;
    this.#receiveTimeoutMs = defaults.receiveTimeoutMs ?? 0;
    this.consumerGroup = checkTypeName(options.consumerGroup, 'consumer group');
    const types = typeof options.messageTypes === 'string' ? [options.messageTypes] : [...(options.messageTypes ?? [])];
    if (types.length === 0) {
      throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', 'a consumer needs at least one message type in messageTypes');
    }
    this.messageTypes = types.map((t) => checkTypeName(t));
    this.consumerId = options.consumerId ?? `consumer-${Math.random().toString(36).slice(2, 10)}`;
    this.autoAck = options.autoAck ?? false;
    const offset = options.offset ?? 'earliest';
    if (offset !== 'earliest' && offset !== 'latest') {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `offset must be 'earliest' or 'latest', not ${JSON.stringify(offset)}`,
      );
    }
    this.#maxAttempts = positive(options.maxAttempts ?? Number.POSITIVE_INFINITY, 'maxAttempts');
    this.#deadLetterType = options.deadLetterType ?? deadLetterTypeOf;
    this.#subscription = transport.consume({
      types: this.messageTypes,
      group: this.consumerGroup,
      consumerId: this.consumerId,
      offset,
      prefetch: wholeNumber(options.prefetch ?? DEFAULT_PREFETCH, 'prefetch'),
      ackTimeoutMs: ackTimeout(options.ackTimeoutMs ?? defaults.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS),
      signal: options.signal,
    });
    this.#deliveries = this.#subscription[Symbol.asyncIterator]();
    this.ready = this.#subscription.ready;
    this.ready.catch(() => {});
    if (options.signal) {
      if (options.signal.aborted) void this.close();
      else options.signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** Starts pulling unless a pull runs; it runs while receive() calls wait, and starts again if one came late. */
  #pull(): void {
    if (this.#pulling) return;
    this.#pulling = this.#pullWhileWanted().finally(() => {
      this.#pulling = undefined;
      if (this.#waiters.length > 0 && !this.#closed && !this.#ended) this.#pull();
    });
  }

  async #pullWhileWanted(): Promise<void> {
    try {
      while (this.#waiters.length > 0 && !this.#closed) {
        const next = await this.#deliveries.next();
        if (next.done) {
          this.#ended = true;
          break;
        }
        const delivery = next.value;
        if (delivery.attempt > this.#maxAttempts) {
          await this.#deadLetter(delivery);
          continue;
        }
        const pulled = await this.#check(delivery);
        if (!pulled) continue;
        const waiter = this.#waiters.shift();
        if (waiter) this.#hand(waiter, pulled);
        else this.#ahead.push(pulled);
      }
    } catch (error) {
      this.#ended = true;
      if (!this.#closed) this.#failure = error;
    }
    if (this.#ended) for (const waiter of this.#waiters.splice(0)) this.#finish(waiter);
  }

  /** The next delivery pulled ahead whose lease still runs; expired ones are the group's again and are dropped. */
  #takeAhead(): Pulled | undefined {
    const now = Date.now();
    for (let pulled = this.#ahead.shift(); pulled; pulled = this.#ahead.shift()) {
      if (pulled.delivery.leaseUntil > now) return pulled;
    }
    return undefined;
  }

  /**
   * Without a schema, the delivery as it is. With one, its body's schema output, or undefined once a body that
   * does not decode or does not match has been dead-lettered.
   */
  async #check(delivery: Delivery): Promise<Pulled | undefined> {
    if (!this.#schema) return { delivery };
    const probe = new Message(delivery);
    const failure = probe.decodeError;
    const result = failure
      ? ({ ok: false, reason: `the body does not decode: ${failure.message}` } as const)
      : await validateBody(this.#schema, probe.body);
    if (result.ok) return { delivery, validated: { value: result.value } };
    const reason = `body does not match the consumer's schema: ${result.reason}`;
    await deadLetter(
      this.#transport,
      delivery,
      this.#deadLetterType(delivery.message.type),
      this.consumerGroup,
      reason,
    );
    return undefined;
  }

  async #deadLetter(delivery: Delivery): Promise<void> {
    const type = delivery.message.type;
    const reason = `delivered ${delivery.attempt} times without an ack (maxAttempts ${this.#maxAttempts})`;
    await deadLetter(this.#transport, delivery, this.#deadLetterType(type), this.consumerGroup, reason);
  }

  /** One message, or null when `timeout` ms pass with none, `signal` aborts the wait, or the consumer is closed. */
  receive(options: ReceiveOptions = {}): Promise<Message<T> | null> {
    const timeout = options.timeout ?? this.#receiveTimeoutMs;
    if (!Number.isFinite(timeout) || timeout < 0) {
      return Promise.reject(
        new BusError('BUSBAR_ERR_INVALID_ARGUMENT', `receive timeout must be a number of ms >= 0, not ${timeout}`),
      );
    }
    if (options.signal?.aborted) return Promise.resolve(null);
    const ahead = this.#takeAhead();
    if (ahead) return this.#take(ahead);
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed || this.#ended) return Promise.resolve(null);
    if (options.signal !== undefined && options.signal !== this.#watched) this.#watch(options.signal);
    return new Promise<Message<T> | null>((resolve, reject) => {
      const waiter: Waiter<T> = { resolve, reject, signal: options.signal };
      if (timeout > 0) waiter.timer = setTimeout(() => this.#giveUp(waiter), timeout);
      this.#waiters.push(waiter);
      this.#pull();
    });
  }

  #watch(signal: AbortSignal | undefined): void {
    this.#watched?.removeEventListener('abort', this.#onReceiveAbort);
    this.#watched = signal;
    signal?.addEventListener('abort', this.#onReceiveAbort);
  }

  #giveUp(waiter: Waiter<T>): void {
    const index = this.#waiters.indexOf(waiter);
    if (index >= 0) this.#waiters.splice(index, 1);
    clearTimeout(waiter.timer);
    waiter.resolve(null);
  }

  #hand(waiter: Waiter<T>, pulled: Pulled): void {
    clearTimeout(waiter.timer);
    this.#take(pulled).then(waiter.resolve, waiter.reject);
  }

  #finish(waiter: Waiter<T>): void {
    clearTimeout(waiter.timer);
    if (this.#failure) waiter.reject(this.#failure);
    else waiter.resolve(null);
  }

  async #take(pulled: Pulled): Promise<Message<T>> {
    const message = new Message<T>(
      pulled.delivery,
      this.#forget,
      this.consumerGroup,
      pulled.validated as { value: T } | undefined,
    );
    if (deliverChannel.hasSubscribers) {
      deliverChannel.traceSync(() => {}, {
        type: message.type,
        group: this.consumerGroup,
        message: message as Message,
        sync: true,
      });
    }
    if (this.autoAck) await message.ack();
    else this.#unacked.add(message);
    return message;
  }

  /** CORTX's ack(): acknowledges every message received so far and not yet acked or nacked. */
  async ack(): Promise<void> {
    const pending = [...this.#unacked];
    await Promise.all(pending.map((m) => m.ack()));
  }

  /** Leaving the loop early (break, return, throw) closes the consumer, as with a transport's Subscription. */
  async *[Symbol.asyncIterator](): AsyncIterator<Message<T>> {
    try {
      for (;;) {
        const message = await this.receive({ timeout: 0 });
        if (message === null) return;
        yield message;
      }
    } finally {
      await this.close();
    }
  }

  /** Idempotent. Unblocks pending receives (they resolve null); unacked messages return to the group. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      this.#watch(undefined);
      for (const waiter of this.#waiters.splice(0)) this.#finish(waiter);
      this.#ahead.length = 0;
      await this.#subscription.close();
      await this.#pulling;
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * The bus checks consume options before the transport sees them (contract rule 2): prefetch a whole number >= 1,
 * the ack timeout a whole number of ms from 1 to MAX_ACK_TIMEOUT_MS.
 */
export function wholeNumber(value: number, name: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? '>= 1' : `from 1 to ${max}`;
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `${name} must be a whole number ${range}, not ${JSON.stringify(value)}`,
    );
  }
  return value;
}

export function ackTimeout(value: number): number {
  return wholeNumber(value, 'ackTimeoutMs', MAX_ACK_TIMEOUT_MS);
}

export function positive(value: number, name: string): number {
  if (typeof value !== 'number' || !(value > 0)) {
    throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', `${name} must be a number > 0, not ${JSON.stringify(value)}`);
  }
  return value;
}
