/**
 * One STOMP connection that fails over by itself, as PDC's HOST_AND_PORTS did: stompjs reconnects, and before each
 * attempt this picks the next endpoint of the list (round robin); the delay doubles from reconnectDelayMs up to
 * maxReconnectDelayMs and starts again after a successful connect. Heart-beats both ways (heartbeatMs): a broker
 * silent for two periods is taken for dead and the next endpoint is tried.
 *
 * Sends with a receipt are tracked here until their RECEIPT arrives; every one not confirmed when the connection
 * drops is sent again, unchanged, on the next connection (the "what was resent" rule: all unconfirmed, in their
 * original order; a duplicate is possible, a loss is not). The endpoint list, the backoff and that rule live only in
 * this file, and a change of endpoint or a loss is logged once (process warning), not per retry.
 */
import { isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { Client, type IFrame, type IMessage, type StompSubscription } from '@stomp/stompjs';
import { TCPWrapper } from '@stomp/tcp-wrapper';
import { BusError } from '../../errors.ts';
import type { Endpoint, StompOptions, StompTls } from './options.ts';
import type { Headers } from './wire.ts';

type Pending = {
  readonly destination: string;
  readonly headers: Headers;
  readonly body: Uint8Array | string | undefined;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
  readonly timer: NodeJS.Timeout | undefined;
};

class TlsWrapper extends TCPWrapper {
  static tls: StompTls;
  protected override getSocket(port: number, host: string) {
    const { ca, cert, key, rejectUnauthorized } = (this.constructor as typeof TlsWrapper).tls;
    // SNI carries host names only (RFC 6066); the certificate is still checked against an IP address.
    return tlsConnect({ port, host, ca, cert, key, rejectUnauthorized, ...(isIP(host) ? {} : { servername: host }) });
  }
}

function wrapperFor(endpoint: Endpoint, tls: StompTls | undefined): TCPWrapper {
  if (!tls) return new TCPWrapper(endpoint.host, endpoint.port);
  // getSocket runs inside TCPWrapper's constructor, before a subclass field could be set.
  class Wrapper extends TlsWrapper {}
  Wrapper.tls = tls;
  return new Wrapper(endpoint.host, endpoint.port);
}

const describeEndpoint = (e: Endpoint) => `${e.host}:${e.port}`;

/** True for an ERROR frame that no retry fixes (Artemis: AMQ229031 / AMQ229032 / "Security"). */
function isAuthFailure(frame: IFrame): boolean {
  return /security|AMQ22903[12]|not authorized|authentication/i.test(`${frame.headers.message} ${frame.body}`);
}

export class StompLink {
  readonly #options: StompOptions;
  readonly #name: string;
  readonly #client: Client;
  readonly #pending = new Map<string, Pending>();
  readonly #connectedListeners = new Set<() => void>();
  #next = 0;
  #current: Endpoint | undefined;
  #announced: Endpoint | undefined;
  #receipts = 0;
  /** ACKs and SUBSCRIBEs waiting for their receipt: close() lets them finish first. */
  readonly #watched = new Set<Promise<void>>();
  #up = false;
  #generation = 0;
  #closed = false;
  #lastError = 'no answer';
  #started: { resolve: () => void; reject: (error: unknown) => void } | undefined;

  constructor(options: StompOptions, name: string) {
    this.#options = options;
    this.#name = name;
    this.#client = new Client({
      connectHeaders: {
        host: options.endpoints[0]!.host,
        ...(options.login !== undefined ? { login: options.login } : {}),
        ...(options.passcode !== undefined ? { passcode: options.passcode } : {}),
      },
      heartbeatIncoming: options.heartbeatMs,
      heartbeatOutgoing: options.heartbeatMs,
      reconnectDelay: options.reconnectDelayMs,
      maxReconnectDelay: options.maxReconnectDelayMs,
      reconnectTimeMode: 1, // ReconnectionTimeMode.EXPONENTIAL (a const enum in stompjs's types)
      connectionTimeout: options.connectTimeoutMs,
      // A dead broker must not hold the next endpoint back while its socket lingers.
      discardWebsocketOnCommFailure: true,
      webSocketFactory: () => wrapperFor(this.#pickEndpoint(), options.tls),
      onConnect: () => this.#connected(),
      onStompError: (frame) => this.#error(frame),
      onWebSocketClose: () => this.#lost(),
      onWebSocketError: (event: { message?: unknown }) => {
        this.#lastError = String((event?.message as Error | undefined)?.message ?? event?.message ?? 'socket error');
      },
      onUnhandledReceipt: (frame) => this.#receipt(frame.headers['receipt-id']),
    });
  }

  /** Increments on every (re)connect: deliveries of an earlier connection cannot be acked any more. */
  get generation(): number {
    return this.#generation;
  }

  /** The endpoint of the live connection (or of the attempt under way). */
  get endpoint(): Endpoint | undefined {
    return this.#current;
  }

  get connected(): boolean {
    return this.#client.connected;
  }

  /** First connection: resolves once an endpoint answered CONNECTED; fails on refused credentials or after the timeout. */
  start(): Promise<void> {
    const started = new Promise<void>((resolve, reject) => {
      this.#started = { resolve, reject };
    });
    const timer = setTimeout(() => {
      const where = this.#options.endpoints.map(describeEndpoint).join(', ');
      this.#failStart(
        new BusError(
          'BUSBAR_ERR_CONNECTION',
          `STOMP broker unreachable at ${where} (${this.#lastError}): gave up within the connect timeout (${this.#options.connectTimeoutMs} ms, options.connectTimeoutMs); check that Artemis runs there and that the URL is right`,
        ),
      );
    }, this.#options.connectTimeoutMs);
    this.#client.activate();
    return started.finally(() => clearTimeout(timer));
  }

  /** Called after every connect (the first one included): subscriptions re-subscribe here. */
  onConnected(listener: () => void): () => void {
    this.#connectedListeners.add(listener);
    return () => this.#connectedListeners.delete(listener);
  }

  /**
   * Sends a frame and resolves on its RECEIPT. An unconfirmed frame is sent again after a reconnect; it fails after
   * `timeoutMs` (retryable: it may or may not be stored) or on an ERROR frame naming it.
   */
  sendConfirmed(
    destination: string,
    headers: Headers,
    body: Uint8Array | string | undefined,
    timeoutMs: number,
  ): Promise<void> {
    if (this.#closed) return Promise.reject(closedError());
    const receipt = `r${++this.#receipts}`;
    return new Promise<void>((resolve, reject) => {
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              if (!this.#pending.delete(receipt)) return;
              reject(
                new BusError(
                  'BUSBAR_ERR_PUBLISH',
                  `the STOMP broker did not confirm a send to ${destination} within ${timeoutMs} ms (${this.connected ? 'no receipt' : `no connection: ${this.#lastError}`}); retry the send`,
                ),
              );
            }, timeoutMs)
          : undefined;
      this.#pending.set(receipt, { destination, headers, body, resolve, reject, timer });
      if (this.#client.connected) this.#transmit(receipt);
    });
  }

  /** Subscribes without waiting (the management reply queue); stompjs forgets it on reconnect. */
  subscribe(destination: string, headers: Headers, onMessage: (message: IMessage) => void): StompSubscription {
    return this.#client.subscribe(destination, onMessage, headers);
  }

  /** Subscribes and resolves once the broker confirmed it (Artemis has then created the queue of an FQQN). */
  subscribeConfirmed(
    destination: string,
    headers: Headers,
    onMessage: (message: IMessage) => void,
    timeoutMs: number,
  ): Promise<void> {
    if (!this.#client.connected) return Promise.reject(new Error(`not connected (${this.#lastError})`));
    const receipt = `s${++this.#receipts}`;
    const confirmed = this.#watch(receipt, timeoutMs, `SUBSCRIBE ${destination}`);
    this.#client.subscribe(destination, onMessage, { ...headers, receipt });
    return confirmed;
  }

  /** ACKs on the connection that delivered the message (never re-sent: after a reconnect it is void). */
  ack(ackId: string, subscription: string, timeoutMs: number): Promise<void> {
    if (!this.#client.connected) return Promise.reject(new Error(`not connected (${this.#lastError})`));
    const receipt = `a${++this.#receipts}`;
    const confirmed = this.#watch(receipt, timeoutMs, 'ACK');
    this.#client.ack(ackId, subscription, { receipt });
    return confirmed;
  }

  /** Waits for the RECEIPT of a frame that is not re-sent on reconnect (its pending entry has no destination). */
  #watch(receipt: string, timeoutMs: number, what: string): Promise<void> {
    const confirmed = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#pending.delete(receipt)) reject(new Error(`no receipt for ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(receipt, { destination: '', headers: {}, body: undefined, resolve, reject, timer });
    });
    this.#watched.add(confirmed);
    const forget = () => this.#watched.delete(confirmed);
    confirmed.then(forget, forget);
    return confirmed;
  }

  /** Drops the connection; stompjs reconnects (to the next endpoint). */
  reconnect(): void {
    this.#client.forceDisconnect();
  }

  unsubscribe(id: string): void {
    if (this.#client.connected) this.#client.unsubscribe(id);
  }

  /**
   * Waits (at most 5 s) for the receipts of ACKs already written, then DISCONNECTs (waiting for its receipt); whatever
   * is still unconfirmed after that fails with BUSBAR_ERR_CLOSED.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#failStart(closedError());
    await Promise.race([this.#client.deactivate(), new Promise((resolve) => setTimeout(resolve, 5000).unref())]).catch(
      () => {},
    );
    if (this.#client.active) await this.#client.deactivate({ force: true }).catch(() => {});
    for (const [receipt, pending] of this.#pending) {
      this.#pending.delete(receipt);
      clearTimeout(pending.timer);
      pending.reject(closedError());
    }
  }

  #pickEndpoint(): Endpoint {
    const endpoints = this.#options.endpoints;
    this.#current = endpoints[this.#next++ % endpoints.length]!;
    return this.#current;
  }

  #transmit(receipt: string): void {
    const pending = this.#pending.get(receipt)!;
    this.#client.publish({
      destination: pending.destination,
      headers: { ...pending.headers, receipt },
      // A string body goes without content-length: Artemis then stores a text message (what management reads).
      ...(typeof pending.body === 'string'
        ? { body: pending.body, skipContentLengthHeader: true }
        : { binaryBody: pending.body ?? new Uint8Array(0) }),
    });
  }

  #connected(): void {
    const handler = (this.#client as unknown as { _stompHandler?: { _escapeHeaderValues?: boolean } })._stompHandler;
    if (!handler || handler._escapeHeaderValues === undefined) {
      // wire.ts escapes headers itself; a stompjs that escaped them too would double-escape every value.
      this.#failStart(new Error('unsupported @stomp/stompjs version: cannot turn its header escaping off'));
      return;
    }
    handler._escapeHeaderValues = false;
    this.#generation++;
    const endpoint = this.#current!;
    if (this.#generation > 1) {
      const moved =
        this.#announced && this.#announced !== endpoint ? ` (moved from ${describeEndpoint(this.#announced)})` : '';
      const resent = [...this.#pending.values()].filter((p) => p.destination !== '').length;
      process.emitWarning(
        `busbar ${this.#name}: reconnected to STOMP broker ${describeEndpoint(endpoint)}${moved}; re-subscribing and re-sending ${resent} unconfirmed send(s)`,
        'BusbarWarning',
      );
    }
    this.#announced = endpoint;
    this.#up = true;
    // ACKs and SUBSCRIBEs still waiting belonged to the old connection: its deliveries went back to their groups.
    for (const [receipt, pending] of this.#pending) {
      if (pending.destination === '') {
        this.#pending.delete(receipt);
        clearTimeout(pending.timer);
        pending.reject(new Error('the connection was lost before the broker confirmed it'));
      }
    }
    for (const receipt of this.#pending.keys()) this.#transmit(receipt);
    for (const listener of this.#connectedListeners) listener();
    const started = this.#started;
    this.#started = undefined;
    started?.resolve();
  }

  #receipt(receipt: string | undefined): void {
    if (receipt === undefined) return;
    const pending = this.#pending.get(receipt);
    if (!pending) return;
    this.#pending.delete(receipt);
    clearTimeout(pending.timer);
    pending.resolve();
  }

  /** Artemis sends ERROR (then closes the connection) for a refused login or a frame it cannot process. */
  #error(frame: IFrame): void {
    const reason = `${frame.headers.message ?? ''}${frame.body ? ` ${frame.body.trim()}` : ''}`.trim();
    this.#lastError = reason;
    if (this.#started && isAuthFailure(frame)) {
      this.#failStart(
        new BusError(
          'BUSBAR_ERR_AUTH',
          `the STOMP broker refused the login: ${reason}; check the username and password in the URL`,
        ),
      );
      void this.close();
      return;
    }
    const receipt = frame.headers['receipt-id'];
    const pending = receipt === undefined ? undefined : this.#pending.get(receipt);
    if (!pending) return;
    this.#pending.delete(receipt!);
    clearTimeout(pending.timer);
    pending.reject(
      new BusError(
        'BUSBAR_ERR_PUBLISH',
        `the STOMP broker refused a send to ${pending.destination || 'an ACK'}: ${reason}; fix the cause, then retry the send`,
        { retryable: false },
      ),
    );
  }

  #lost(): void {
    if (this.#closed || !this.#up) return;
    this.#up = false;
    process.emitWarning(
      `busbar ${this.#name}: lost the STOMP connection to ${describeEndpoint(this.#announced!)} (${this.#lastError}); reconnecting through ${this.#options.endpoints.map(describeEndpoint).join(', ')}`,
      'BusbarWarning',
    );
  }

  #failStart(error: unknown): void {
    const started = this.#started;
    this.#started = undefined;
    if (!started) return;
    started.reject(error);
    void this.#client.deactivate({ force: true }).catch(() => {});
  }
}

function closedError(): BusError {
  return new BusError('BUSBAR_ERR_CLOSED', 'the STOMP transport is closed: connect a new bus');
}
