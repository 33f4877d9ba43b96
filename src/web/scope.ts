/**
 * Request-scoped messaging, framework-free (PDC's middleware done right): a handler queues messages on its request;
 * they leave only when the response succeeds (status < 400, no thrown error, client still there), each with the
 * request's context as headers, and the response waits until the delivery mode has them durably (broker confirm,
 * outbox row, spool). A failed delivery turns the response into an error and is reported; nothing is dropped
 * without a word. Each framework adapter (express.ts, fastify.ts, ...) is a thin file over this one.
 */
import { randomUUID } from 'node:crypto';
import { BusError, checkTypeName, toBusError } from '../errors.ts';
import type { Body } from '../message/codec.ts';
import { buildMessage, DEFAULT_SOURCE } from '../message/envelope.ts';
import type { TransportMessage } from '../transport/contract.ts';
import type { Delivery } from './delivery.ts';

/** Header names the request's context travels under (CloudEvents extension names: lower-case letters and digits). */
export const REQUEST_HEADERS = {
  requestId: 'correlationid',
  user: 'userid',
  traceparent: 'traceparent',
  tracestate: 'tracestate',
} as const;

/** The incoming request header a request id is read from when the framework has none of its own. */
export const DEFAULT_REQUEST_ID_HEADER = 'x-request-id';

/** What a response becomes when its messages could not be delivered. */
export const DEFAULT_FAILURE_STATUS = 503;

export interface RequestMessageOptions {
  key?: string | undefined;
  headers?: Record<string, string> | undefined;
  contentType?: string | undefined;
  /** The message id (UUIDv7 when absent); consumers deduplicate by it. */
  id?: string | undefined;
}

/** Why a request's messages were not sent. */
export type DiscardReason = 'status' | 'error' | 'aborted' | 'discarded';

export interface WebMessagingOptions {
  /** Where a successful request's messages go: `broker(bus)`, `producers(...)` (e.g. a spooling producer), `outbox(...)`. */
  via: Delivery;
  /** The CloudEvents source of the messages (default: busbar://<host>/<pid>). */
  source?: string;
  /** Incoming header that carries the request id (default `x-request-id`); a new UUID when absent. */
  requestIdHeader?: string;
  /** Status of a response whose messages failed to deliver (default 503; the failure is retryable by the client). */
  failureStatus?: number;
  /**
   * Called for every delivery failure (the response already says so). Also called, with the reason, when the
   * response could not be changed any more (headers already sent): the connection is then cut, never left looking
   * like a success.
   */
  onError?: (error: BusError, scope: RequestMessages) => void;
  /** Called when a request's queued messages are discarded (failed response, thrown error, aborted client). */
  onDiscard?: (reason: DiscardReason, scope: RequestMessages) => void;
}

/** The request's context as an adapter read it from its framework. */
export interface RequestContext {
  /** The framework's own id for the request, if it has one (Fastify's request.id). */
  frameworkId?: string | undefined;
  /** Reads one incoming header (lower-case name). */
  header(name: string): string | undefined;
  /**
   * The authenticated user, when the app provides one. Read at each send(), since auth middleware often runs after
   * busbar's.
   */
  user?: (() => string | undefined) | undefined;
}

/** What a handler sees on its request: `req.bus.send('order.created', order, { key: order.customer })`. */
export class RequestMessages {
  readonly requestId: string;
  readonly #user: (() => string | undefined) | undefined;
  readonly #context: Record<string, string>;
  readonly #source: string;
  readonly #via: Delivery;
  #pending: TransportMessage[] = [];
  #state: 'open' | 'committing' | 'done' = 'open';

  constructor(
    context: Record<string, string>,
    requestId: string,
    user: (() => string | undefined) | undefined,
    via: Delivery,
    source: string,
  ) {
    this.#context = context;
    this.requestId = requestId;
    this.#user = user;
    this.#via = via;
    this.#source = source;
  }

  /**
   * Queues a message; it is sent once the response succeeds. Returns its id at once. Bad input (type name, a body
   * that cannot be encoded) throws here, in the handler, where it can still change the response.
   */
  send(type: string, body: Body, options: RequestMessageOptions = {}): string {
    if (this.#state !== 'open') {
      throw new BusError(
        'BUSBAR_ERR_CLOSED',
        `request ${this.requestId} has already ended: queue messages before the response is sent`,
      );
    }
    checkTypeName(type);
    const user = this.user;
    const context = user ? { ...this.#context, [REQUEST_HEADERS.user]: user } : this.#context;
    const message = buildMessage(type, this.#source, body, {
      key: options.key,
      contentType: options.contentType,
      id: options.id,
      headers: { ...context, ...options.headers },
    });
    this.#pending.push(message);
    return message.id;
  }

  /** The authenticated user, when the app provides one (see the adapter's `user` option). */
  get user(): string | undefined {
    return this.#user?.() || undefined;
  }

  /** The messages queued and not yet handed on, in order. */
  get pending(): readonly TransportMessage[] {
    return this.#pending;
  }

  /** Drops every queued message: the response will send none of them. */
  discard(): void {
    this.#pending = [];
  }

  /**
   * Writes the queued messages into the outbox inside the caller's open transaction (a `pg` client after BEGIN, or a
   * node:sqlite database), so they commit or roll back with the application's own rows. Needs `via: outbox(...)`.
   */
  async writeTo(transaction: unknown): Promise<void> {
    if (!this.#via.writeInTransaction) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `req.bus.writeTo(transaction) needs an outbox: configure the middleware with { via: outbox(yourOutbox) }`,
      );
    }
    const messages = this.#pending;
    this.#pending = [];
    await this.#via.writeInTransaction(transaction, messages);
  }

  /** Internal to the adapters: ends the scope; the messages to deliver, or none. */
  take(): TransportMessage[] {
    this.#state = 'committing';
    const messages = this.#pending;
    this.#pending = [];
    return messages;
  }

  /** Internal to the adapters. */
  end(): void {
    this.#state = 'done';
  }
}

/** The outcome of committing a request: what the adapter must do to its response. */
export type CommitResult = { ok: true } | { ok: false; error: BusError; status: number; body: string };

/** One per app: makes each request's scope and commits it when the response is decided. */
export class WebMessaging {
  readonly #via: Delivery;
  readonly #source: string;
  readonly #requestIdHeader: string;
  readonly #failureStatus: number;
  readonly #onError: WebMessagingOptions['onError'];
  readonly #onDiscard: WebMessagingOptions['onDiscard'];

  constructor(options: WebMessagingOptions) {
    if (!options || typeof options.via?.deliver !== 'function') {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        'request-scoped messaging needs a delivery mode: pass a MessageBus, or { via: broker(bus) | producers(...) | outbox(...) }',
      );
    }
    const failureStatus = options.failureStatus ?? DEFAULT_FAILURE_STATUS;
    if (!Number.isInteger(failureStatus) || failureStatus < 400 || failureStatus > 599) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `failureStatus must be an HTTP error status 400-599, not ${JSON.stringify(options.failureStatus)}`,
      );
    }
    this.#via = options.via;
    this.#source = options.source ?? DEFAULT_SOURCE;
    this.#requestIdHeader = (options.requestIdHeader ?? DEFAULT_REQUEST_ID_HEADER).toLowerCase();
    this.#failureStatus = failureStatus;
    this.#onError = options.onError;
    this.#onDiscard = options.onDiscard;
  }

  begin(request: RequestContext): RequestMessages {
    const requestId = request.header(this.#requestIdHeader) || request.frameworkId || randomUUID();
    const context: Record<string, string> = { [REQUEST_HEADERS.requestId]: requestId };
    const traceparent = request.header('traceparent');
    if (traceparent) {
      context[REQUEST_HEADERS.traceparent] = traceparent;
      const tracestate = request.header('tracestate');
      if (tracestate) context[REQUEST_HEADERS.tracestate] = tracestate;
    }
    return new RequestMessages(context, requestId, request.user, this.#via, this.#source);
  }

  /**
   * Called by an adapter once the response's status is known and before it is written. Delivers the queued
   * messages when the response succeeds, discards them otherwise; a failed delivery gives the adapter the error
   * response to send instead.
   */
  async commit(scope: RequestMessages, status: number, failed?: DiscardReason): Promise<CommitResult> {
    const messages = scope.take();
    try {
      const reason = failed ?? (status >= 400 ? 'status' : undefined);
      if (reason) {
        if (messages.length > 0) this.#onDiscard?.(reason, scope);
        return { ok: true };
      }
      if (messages.length === 0) return { ok: true };
      try {
        await this.#via.deliver(messages);
        return { ok: true };
      } catch (error) {
        const failure = new BusError(
          'BUSBAR_ERR_PUBLISH',
          `request ${scope.requestId}: ${messages.length} message(s) were not delivered ` +
            `(${toBusError(error, 'BUSBAR_ERR_PUBLISH', this.#via.name).message}); the response says so, retry the request`,
          { cause: error, retryable: true, details: { requestId: scope.requestId, messages } },
        );
        this.report(failure, scope);
        const body = JSON.stringify({
          error: { code: failure.code, message: failure.message, requestId: scope.requestId },
        });
        return { ok: false, error: failure, status: this.#failureStatus, body };
      }
    } finally {
      scope.end();
    }
  }

  /** Reports a failure to the app's hook; an app without one sees it on stderr rather than not at all. */
  report(error: BusError, scope: RequestMessages): void {
    if (this.#onError) this.#onError(error, scope);
    else process.emitWarning(error.message, { code: error.code });
  }
}
