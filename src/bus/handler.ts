import { BusError, checkTypeName } from '../errors.ts';
import type { Delivery, Offset, Transport } from '../transport/contract.ts';
import { ackTimeout, positive, wholeNumber } from './consumer.ts';
import { deadLetter, describeFailure } from './dead-letter.ts';
import { Message } from './message.ts';
import { compose, type HandlerFn, type Middleware } from './middleware.ts';
import { backoffMs, DEFAULT_ACK_TIMEOUT_MS, DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY, deadLetterTypeOf } from './options.ts';
import { checkSchema, type StandardSchemaV1, validateBody } from './schema.ts';
import { traceDeliver } from './tracing.ts';

/**
 * Ack confirmations a handler lets pend (at least its prefetch). Kafka resolves acks with a shared offset commit, one
 * in flight at a time: a bound of prefetch (16 by default) held the handler to 16 messages per commit round trip.
 */
const MIN_PENDING_ACKS = 1024;

export interface HandleOptions<T = unknown> {
  group: string;
  consumerId?: string;
  /** Messages handled at once. Default 1. */
  concurrency?: number;
  /**
   * Deliveries the transport may hand this handler before it has handled and acked them: its read-ahead. A whole
   * number >= `concurrency`; default `concurrency` x 2. More keeps the handler fed where fetching is a round trip;
   * it also holds more messages away from the group's other members, and more come again after a crash. (An ack's
   * confirmation, e.g. Kafka's offset commit, holds neither a concurrency slot nor a prefetch slot.)
   */
  prefetch?: number;
  /** After this many failed attempts the message goes to its dead-letter type. Default 5. */
  maxAttempts?: number;
  retry?: { initialDelayMs?: number; maxDelayMs?: number; factor?: number };
  deadLetterType?: (type: string) => string;
  ackTimeoutMs?: number;
  offset?: Offset;
  middlewares?: readonly Middleware[];
  signal?: AbortSignal;
  /** Called when the bus cannot ack, nack or dead-letter (the message then returns after its ack timeout). */
  onError?: (error: unknown, message: Message) => void;
  /**
   * A Standard Schema v1 validator (Zod, Valibot, ArkType, ...) for the decoded body: the handler sees only bodies
   * that pass it, as its output (`Message<T>`); a message that fails it, or whose body does not decode, goes to its
   * dead-letter type at once, without retries, with the reason in `busbar-dlq-reason`.
   */
  schema?: StandardSchemaV1<unknown, T>;
}

/** A running handler; close() stops taking messages and waits for the ones in progress. */
export class Handler {
  readonly ready: Promise<void>;
  /** Resolves when the handler has stopped. */
  readonly done: Promise<void>;
  readonly #stop: () => Promise<void>;

  constructor(ready: Promise<void>, done: Promise<void>, stop: () => Promise<void>) {
    this.ready = ready;
    this.done = done;
    this.#stop = stop;
  }

  async close(): Promise<void> {
    await this.#stop();
    await this.done;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

export function startHandler(
  transport: Transport,
  types: string | readonly string[],
  options: HandleOptions<never>,
  handler: HandlerFn,
  defaults: { ackTimeoutMs?: number } = {},
): Handler {
  if (typeof handler !== 'function') {
    throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', 'bus.handle() needs a handler function as its third argument');
  }
  const typeList = (typeof types === 'string' ? [types] : [...types]).map((t) => checkTypeName(t));
  const group = checkTypeName(options?.group, 'consumer group');
  const concurrency = wholeNumber(options.concurrency ?? 1, 'concurrency');
  const prefetch = wholeNumber(options.prefetch ?? concurrency * 2, 'prefetch');
  if (prefetch < concurrency) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `prefetch (${prefetch}) is below concurrency (${concurrency}): the handler could never run ${concurrency} at ` +
        `once; give a prefetch >= ${concurrency} or leave it out (default concurrency x 2)`,
    );
  }
  const maxAttempts = positive(options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS, 'maxAttempts');
  const retry = { ...DEFAULT_RETRY, ...options.retry };
  const deadLetterType = options.deadLetterType ?? deadLetterTypeOf;
  const run = compose(options.middlewares ?? [], handler);
  const schema = checkSchema(options.schema, 'bus.handle()');
  const onError = options.onError ?? ((error: unknown) => process.emitWarning(describeFailure(error), 'BusbarWarning'));
  const subscription = transport.consume({
    types: typeList,
    group,
    consumerId: options.consumerId ?? `handler-${Math.random().toString(36).slice(2, 10)}`,
    offset: options.offset ?? 'earliest',
    prefetch,
    ackTimeoutMs: ackTimeout(options.ackTimeoutMs ?? defaults.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS),
    signal: options.signal,
  });

  const active = new Set<Promise<void>>();
  let stopping = false;
  const acking = new Set<Promise<void>>();
  // A pending confirmation costs a promise, not a delivery: the transport already counts an acked delivery free.
  const maxAcking = Math.max(prefetch, MIN_PENDING_ACKS);
  let ackFreed: (() => void) | undefined;

  function confirm(message: Message): void {
    const pending: Promise<void> = message
      .ack()
      .catch((error: unknown) => onError(error, message))
      .finally(() => {
        acking.delete(pending);
        const wake = ackFreed;
        ackFreed = undefined;
        wake?.();
      });
    acking.add(pending);
  }

  async function process1(delivery: Delivery): Promise<void> {
    let message = new Message(delivery, undefined, group);
    const dlq = deadLetterType(delivery.message.type);
    try {
      if (delivery.attempt > maxAttempts) {
        await deadLetter(transport, delivery, dlq, group, `delivered ${delivery.attempt} times without an ack`);
        return;
      }
      if (schema) {
        // A body that fails its schema fails the same way on every attempt: dead-letter it at once.
        const failure = message.decodeError;
        const result = failure
          ? ({ ok: false, reason: `the body does not decode: ${failure.message}` } as const)
          : await validateBody(schema, message.body);
        if (!result.ok) {
          const reason = `body does not match the handler's schema: ${result.reason}`;
          await deadLetter(transport, delivery, dlq, group, reason);
          return;
        }
        message = new Message(delivery, undefined, group, { value: result.value });
      }
      try {
        await traceDeliver(message, group, async () => run(message));
      } catch (failure) {
        if (message.settled) return;
        // A body that does not decode fails the same way on every attempt: retrying only delays the dead letter.
        if (delivery.attempt >= maxAttempts || causedBy(failure, message.decodeError)) {
          await deadLetter(transport, delivery, dlq, group, describeFailure(failure));
        } else {
          await message.nack({ delayMs: backoffMs(delivery.attempt, retry) });
        }
        return;
      }
      // The ack's confirmation (a Kafka offset commit, a Redis XACK reply) does not hold a concurrency slot: the
      // handler is done with the message. Confirmations pending are bounded (maxAcking), and close() awaits them.
      if (!message.settled) confirm(message);
    } catch (error) {
      onError(error, message);
    }
  }

  // A counting semaphore: Promise.race over the active set would cost O(concurrency) per message.
  let freeSlot: (() => void) | undefined;
  const done = (async () => {
    try {
      for await (const delivery of subscription) {
        // After close() began, deliveries are left unsettled: closing the subscription returns them at once.
        if (stopping) continue;
        const task = process1(delivery).finally(() => {
          active.delete(task);
          const wake = freeSlot;
          freeSlot = undefined;
          wake?.();
        });
        active.add(task);
        if (active.size >= concurrency) await new Promise<void>((resolve) => (freeSlot = resolve));
        if (acking.size >= maxAcking) await new Promise<void>((resolve) => (ackFreed = resolve));
      }
    } finally {
      await Promise.all(active);
      await Promise.all(acking);
    }
  })();
  subscription.ready.catch(() => {});
  // Finish the messages in progress before closing, so their acks land while their leases are still held.
  const stop = async () => {
    stopping = true;
    await Promise.all(active);
    await Promise.all(acking);
    await subscription.close();
  };
  return new Handler(subscription.ready, done, stop);
}

/** Whether `failure` is `error` or wraps it (through `cause`), e.g. a handler that rethrows with context. */
function causedBy(failure: unknown, error: Error | undefined): boolean {
  for (let current = failure, depth = 0; error && current instanceof Error && depth < 8; depth++) {
    if (current === error) return true;
    current = current.cause;
  }
  return false;
}
