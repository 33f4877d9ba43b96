/** One delivery of a stream entry to a subscription; ack and nack are idempotent and may be retried on failure. */
import type { NackOptions, TransportMessage } from '../../transport/contract.ts';
import type { Leased } from './inbox.ts';

export interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

export function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** What settles a delivery: its subscription. */
export interface Settler {
  ack(delivery: RedisDelivery): Promise<void>;
  nack(delivery: RedisDelivery, options?: NackOptions): Promise<void>;
}

export class RedisDelivery implements Leased {
  readonly message: TransportMessage;
  readonly attempt: number;
  readonly type: string;
  readonly entryId: string;
  readonly deadline: number;
  readonly #subscription: Settler;
  #settling: Promise<void> | undefined;

  constructor(
    subscription: Settler,
    type: string,
    entryId: string,
    message: TransportMessage,
    attempt: number,
    ackTimeoutMs: number,
  ) {
    this.#subscription = subscription;
    this.type = type;
    this.entryId = entryId;
    this.message = message;
    this.attempt = attempt;
    this.deadline = Date.now() + ackTimeoutMs;
  }

  ack(): Promise<void> {
    this.#settling ??= this.#settle(this.#subscription.ack(this));
    return this.#settling;
  }

  nack(options?: NackOptions): Promise<void> {
    this.#settling ??= this.#settle(this.#subscription.nack(this, options));
    return this.#settling;
  }

  /** A failed ack or nack may be tried again. */
  #settle(settling: Promise<void>): Promise<void> {
    settling.catch(() => {
      if (this.#settling === settling) this.#settling = undefined;
    });
    return settling;
  }
}
