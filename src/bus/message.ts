import type { BusError } from '../errors.ts';
import { decodeBody } from '../message/codec.ts';
import type { Delivery, NackOptions } from '../transport/contract.ts';
import { traceSettle } from './tracing.ts';

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
  /** The consumer group it was read in (for tracing); undefined where none was named. */
  readonly group: string | undefined;
  /** The payload bytes exactly as published. */
  readonly raw: Uint8Array;
  readonly #delivery: Delivery;
  readonly #onSettle: ((message: Message<T>) => void) | undefined;
  #decoded = false;
  #body: unknown;
  #decodeError: BusError | undefined;
  #settled = false;

  /** `group`: the consumer group it was read in (tracing); `validated`: the body a schema already checked (its output). */
  constructor(delivery: Delivery, onSettle?: (message: Message<T>) => void, group?: string, validated?: { value: T }) {
    const m = delivery.message;
    this.group = group;
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
    if (validated) {
      this.#decoded = true;
      this.#body = validated.value;
    }
  }

  /**
   * The body decoded by content type: JSON values, strings for text, otherwise the bytes. Throws
   * BUSBAR_ERR_DECODE (the same error on every access) when the bytes do not match their content type, e.g. JSON
   * content that is not JSON; `raw` still holds them.
   */
  get body(): T {
    this.#decode();
    if (this.#decodeError) throw this.#decodeError;
    return this.#body as T;
  }

  /** The error reading `body` throws, or undefined when the body decodes. */
  get decodeError(): BusError | undefined {
    this.#decode();
    return this.#decodeError;
  }

  #decode(): void {
    if (this.#decoded) return;
    this.#decoded = true;
    try {
      this.#body = decodeBody(this.raw, this.contentType);
    } catch (error) {
      this.#decodeError = error as BusError;
    }
  }

  get settled(): boolean {
    return this.#settled;
  }

  /** Idempotent. */
  async ack(): Promise<void> {
    this.#markSettled();
    await traceSettle('ack', this as Message, this.group, () => this.#delivery.ack());
  }

  /** Idempotent. Returns the message to its group, redelivered after `delayMs` where given. */
  async nack(options?: NackOptions): Promise<void> {
    this.#markSettled();
    await traceSettle('nack', this as Message, this.group, () => this.#delivery.nack(options));
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
