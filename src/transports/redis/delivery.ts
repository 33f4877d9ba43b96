/** One delivery of a stream entry to a subscription; ack and nack are idempotent and may be retried on failure. */
import type { Delivery, NackOptions, TransportMessage } from '../../transport/contract.ts';

/** What settles a delivery: its subscription. */
export interface Settler {
  /** Resolves once Redis recorded the ack; on failure it calls `delivery.failed()` with this promise first. */
  ack(delivery: RedisDelivery): Promise<void>;
  nack(delivery: RedisDelivery, options?: NackOptions): Promise<void>;
}

export class RedisDelivery implements Delivery {
  readonly message: TransportMessage;
  readonly attempt: number;
  readonly type: string;
  /** The stream's key: the subscription's own string for it, so per-ack lookups hash nothing new. */
  readonly stream: string;
  readonly entryId: string;
  readonly leaseUntil: number;
  readonly #subscription: Settler;
  #settling: Promise<void> | undefined;

  constructor(
    subscription: Settler,
    type: string,
    stream: string,
    entryId: string,
    message: TransportMessage,
    attempt: number,
    leaseUntil: number,
  ) {
    this.#subscription = subscription;
    this.type = type;
    this.stream = stream;
    this.entryId = entryId;
    this.message = message;
    this.attempt = attempt;
    this.leaseUntil = leaseUntil;
  }

  /** The subscription shares one promise among the acks it sends together, and reports a failure via failed(). */
  ack(): Promise<void> {
    this.#settling ??= this.#subscription.ack(this);
    return this.#settling;
  }

  nack(options?: NackOptions): Promise<void> {
    if (this.#settling) return this.#settling;
    const settling = this.#subscription.nack(this, options);
    this.#settling = settling;
    settling.catch(() => this.failed(settling));
    return settling;
  }

  /** `settling` failed: a later ack or nack may try again. */
  failed(settling: Promise<void>): void {
    if (this.#settling === settling) this.#settling = undefined;
  }
}
