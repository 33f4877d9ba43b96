import { type BusOptions, isResolvedConfig, type ResolvedConfig, resolveConfig } from '../config/index.ts';
import { BusError, checkTypeName } from '../errors.ts';
import type { Body } from '../message/codec.ts';
import { buildMessage, DEFAULT_SOURCE, type OutgoingOptions } from '../message/envelope.ts';
import type { Capabilities, Transport } from '../transport/contract.ts';
import { loadTransport } from '../transport/registry.ts';
import { Admin } from './admin.ts';
import { Consumer, type ConsumerOptions } from './consumer.ts';
import { withDeadlines } from './deadlines.ts';
import { type HandleOptions, type Handler, startHandler } from './handler.ts';
import type { HandlerFn } from './middleware.ts';
import { buildBatch, Producer, type ProducerOptions } from './producer.ts';
import { withTracing } from './tracing.ts';

interface Closable {
  close(): Promise<void>;
}

/** The entry point: one connection to one broker, and the producers, consumers and handlers made from it. */
export class MessageBus {
  readonly #transport: Transport;
  readonly config: ResolvedConfig | undefined;
  readonly #open = new Set<Closable>();
  readonly #source: string;
  readonly #ackTimeoutMs: number | undefined;
  readonly #receiveTimeoutMs: number | undefined;
  #closing: Promise<void> | undefined;

  /**
   * A bus over a transport the caller made and hands over (the bus closes it). MessageBus.connect() is the one way
   * from a URL, options or a resolved config to a bus, and ends in this constructor.
   */
  constructor(transport: Transport, config?: ResolvedConfig) {
    // Every send and admin call of the bus, the REST gateway's included, goes through this one bounded view.
    this.#transport = withTracing(config ? withDeadlines(transport, config) : transport);
    this.config = config;
    this.#source = config?.producerId ?? DEFAULT_SOURCE;
    this.#ackTimeoutMs = config?.ackTimeoutMs;
    this.#receiveTimeoutMs = config?.receiveTimeoutMs;
  }

  /**
   * Connects to the broker named by `options` (a URL, options, or a config resolveConfig() made), env BUSBAR_BROKER,
   * a config file, or embedded.
   */
  static async connect(options?: string | BusOptions | ResolvedConfig): Promise<MessageBus> {
    const config = isResolvedConfig(options) ? options : resolveConfig(options);
    const factory = await loadTransport(config.scheme);
    const transport = await factory(config.transport);
    return new MessageBus(transport, config);
  }

  get capabilities(): Capabilities {
    return this.#transport.capabilities;
  }

  /** The transport's name (`redis`, `kafka`, `embedded`...), for banners and diagnostics. */
  get transportName(): string {
    return this.#transport.name;
  }

  #checkOpen(): void {
    if (this.#closing)
      throw new BusError('BUSBAR_ERR_CLOSED', 'the message bus is closed: connect again with MessageBus.connect()');
  }

  #track<T extends Closable>(item: T, done?: Promise<unknown>): T {
    this.#open.add(item);
    void (done ?? Promise.resolve()).finally(() => done && this.#open.delete(item));
    return item;
  }

  /** PDC's send_message: one call, resolves once the broker durably accepted the message. */
  async send(type: string, body: Body, options: OutgoingOptions = {}): Promise<void> {
    this.#checkOpen();
    checkTypeName(type);
    await this.#transport.publish(type, [buildMessage(type, this.#source, body, options)]);
  }

  /**
   * Sends a batch in one broker call: bodies, or `message(body, { id, time, key, headers, contentType, source })`.
   * Every envelope is built first, so one bad message rejects the batch before anything is sent. Resolves with the
   * messages' ids, in order, once the broker durably accepted all of them.
   */
  async sendBatch(type: string, messages: readonly unknown[]): Promise<string[]> {
    this.#checkOpen();
    checkTypeName(type);
    const batch = buildBatch(type, this.#source, messages, {}, 'bus.sendBatch');
    if (batch.length > 0) await this.#transport.publish(type, batch);
    return batch.map((m) => m.id);
  }

  /** With `schema`, send() takes the schema's input type and checks every body first; see ProducerOptions.schema. */
  producer<T = unknown>(options: ProducerOptions<T>): Producer<T> {
    this.#checkOpen();
    return this.#track(new Producer<T>(this.#transport, { producerId: this.#source, ...options }));
  }

  /** With `schema`, receive() returns `Message<T>`, T being the schema's output; see ConsumerOptions.schema. */
  consumer<T = unknown>(options: ConsumerOptions<T>): Consumer<T> {
    this.#checkOpen();
    const defaults = { ackTimeoutMs: this.#ackTimeoutMs, receiveTimeoutMs: this.#receiveTimeoutMs };
    return this.#track(new Consumer<T>(this.#transport, options, defaults));
  }

  /** Runs `handler` for every message of `types` in `options.group`: resolve = ack, throw = retry, then dead-letter. */
  handle<T = unknown>(types: string | readonly string[], options: HandleOptions<T>, handler: HandlerFn<T>): Handler {
    this.#checkOpen();
    const running = startHandler(this.#transport, types, options as HandleOptions<never>, handler as HandlerFn, {
      ackTimeoutMs: this.#ackTimeoutMs,
    });
    return this.#track(running, running.done);
  }

  admin(): Admin {
    return new Admin(this.#transport.admin, this.#transport);
  }

  /** Idempotent: flushes async producers, stops handlers and consumers, then closes the transport. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const results = await Promise.allSettled([...this.#open].map((item) => item.close()));
      await this.#transport.close();
      const failures = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason);
      if (failures.length === 1) throw failures[0];
      if (failures.length > 1) throw new AggregateError(failures, 'several parts of the bus failed to close');
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
