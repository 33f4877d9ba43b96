import { decodeBody } from '../message/codec.ts';
import type { Delivery, NackOptions } from '../transport/contract.ts';

/** A received message: the envelope, the decoded body, the raw bytes, and its ack / nack. */
export class Message<T = unknown> {
  readonly id: string;
  readonly type: string;
  readonly source: string;
  readonly time: string;
  readonly contentType: string;
  readonly key: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly attempt: number;
  /** The payload bytes exactly as published. */
  readonly raw: Uint8Array;
  readonly #delivery: Delivery;
  readonly #onSettle: ((message: Message<T>) => void) | undefined;
  #decoded = false;
  #body: unknown;
  #settled = false;

  constructor(delivery: Delivery, onSettle?: (message: Message<T>) => void) {
    const m = delivery.message;
    this.id = m.id;
    this.type = m.type;
    this.source = m.source;
    this.time = m.time;
    this.contentType = m.contentType;
    this.key = m.key;
    this.headers = m.headers;
    this.attempt = delivery.attempt;
    this.raw = m.body;
    this.#delivery = delivery;
    this.#onSettle = onSettle;
  }

  /** The body decoded by content type: JSON values, strings for text, otherwise the bytes. */
  get body(): T {
    if (!this.#decoded) {
      this.#body = decodeBody(this.raw, this.contentType);
      this.#decoded = true;
    }
    return this.#body as T;
  }

  get settled(): boolean {
    return this.#settled;
  }

  /** Idempotent. */
  async ack(): Promise<void> {
    this.#markSettled();
    await this.#delivery.ack();
  }

  /** Idempotent. Returns the message to its group, redelivered after `delayMs` where given. */
  async nack(options?: NackOptions): Promise<void> {
    this.#markSettled();
    await this.#delivery.nack(options);
  }

  /** The transport-level delivery, for the bus's own dead-lettering. */
  get delivery(): Delivery {
    return this.#delivery;
  }

  #markSettled(): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#onSettle?.(this);
  }

  toJSON(): Record<string, unknown> {
    return {
      id: this.id,
      type: this.type,
      source: this.source,
      time: this.time,
      contentType: this.contentType,
      key: this.key,
      headers: this.headers,
      attempt: this.attempt,
    };
  }
}
