/**
 * The one place that decides failover (docs/wire/amqp10.md, "Failover"): the endpoint list, the backoff, and the
 * rule for what is sent again. One rhea connection at a time, with rhea's own reconnect off. When it is lost, the
 * next endpoint of the list is tried at once, then each one after it in turn, pausing BACKOFF_MS between attempts
 * (growing, capped at its last value) until one opens. Each open connection is handed to every `onOpen` listener:
 * subscriptions attach their receivers again (their unsettled deliveries were returned to the group by the broker),
 * and the publisher sends again every message the broker had not settled as `accepted` (resendCount tells how many,
 * for the warning). One process warning (`BusbarWarning`) is emitted per change: lost, and re-opened.
 *
 * rhea emits nothing on a session or link whose connection dropped: every wait on one goes through `waitOn`, which
 * also ends when the connection is lost, closed, or the deadline passes, so no caller waits for an event that never
 * comes.
 */
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import rhea, { type Connection, type ConnectionOptions, type EventContext } from 'rhea';
import { BusError } from '../../errors.ts';
import type { Amqp10Options, Endpoint } from './options.ts';

export const BACKOFF_MS = [0, 100, 250, 500, 1000, 2000, 5000] as const;

type Listener = (connection: Connection) => void;

/** How long close() waits for the broker's `close` before it ends the socket itself. */
const CLOSE_TIMEOUT_MS = 2000;

const where = (endpoint: Endpoint) => `${endpoint.host}:${endpoint.port}`;

function reason(context: EventContext | undefined): string {
  const error = (context?.error ?? context?.connection?.error) as
    | { message?: string; description?: string; condition?: string }
    | undefined;
  if (!error) return 'connection closed';
  const text = error.description ?? error.message ?? String(error);
  return error.condition && !text.includes(error.condition) ? `${text} (${error.condition})` : text;
}

function isAuthFailure(text: string): boolean {
  return /auth|sasl|credential|password|unauthori[sz]ed/i.test(text);
}

export class FailoverConnection {
  readonly #options: Amqp10Options;
  readonly #container = rhea.create_container({ id: `${randomUUID()}` });
  readonly #openListeners = new Set<Listener>();
  readonly #lostListeners = new Set<Listener>();
  #current: Connection | undefined;
  #waiters: Array<() => void> = [];
  #next = 0;
  #closed = false;
  #reconnecting = false;
  /** Set after the first loss: the first connection of a consumer's extra endpoint is not a change worth a line. */
  #failedOver = false;
  #wakeOnClose: (() => void) | undefined;
  /** Ends the connection attempt under way (close() calls it, so a closed bus keeps no socket or timer). */
  #abortOpen: (() => void) | undefined;
  /** How many unsettled sends the publisher will send again: written in the reconnect log line. */
  resendCount: () => number = () => 0;

  constructor(options: Amqp10Options) {
    this.#options = options;
    // rhea passes an event no connection listener took to the container, and an unheard 'error' there would end the
    // process: every failure is handled through the connection's own events below.
    this.#container.on('error', () => {});
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** First connection: every endpoint in turn until one opens or connectTimeoutMs passes. */
  async start(): Promise<void> {
    const deadline = Date.now() + this.#options.connectTimeoutMs;
    let last = 'no endpoint tried';
    for (let attempt = 0; ; attempt++) {
      const endpoint = this.#options.endpoints[this.#next % this.#options.endpoints.length]!;
      try {
        this.#adopt(await this.#open(endpoint, deadline), endpoint);
        return;
      } catch (error) {
        last = `${where(endpoint)}: ${(error as Error).message}`;
        if (isAuthFailure(last)) {
          throw new BusError(
            'BUSBAR_ERR_AUTH',
            `the AMQP 1.0 broker refused the login (${last}): check the user name, password or client certificate`,
          );
        }
        this.#next++;
      }
      if (Date.now() >= deadline) {
        throw new BusError(
          'BUSBAR_ERR_CONNECTION',
          `cannot connect to any AMQP 1.0 endpoint (${this.#options.endpoints.map(where).join(', ')}) within ${this.#options.connectTimeoutMs} ms; last: ${last}`,
          { retryable: true },
        );
      }
      await sleep(BACKOFF_MS[Math.min(attempt + 1, BACKOFF_MS.length - 1)]!);
    }
  }

  /** Keeps trying (with the backoff) until a connection opens, without failing: a consumer's extra endpoint. */
  startInBackground(): void {
    void this.#reconnect();
  }

  /** Listener for every connection opened from now on (the current one is not replayed). */
  onOpen(listener: Listener): () => void {
    this.#openListeners.add(listener);
    return () => this.#openListeners.delete(listener);
  }

  /** Listener for the loss of a connection (the current one, or any later one). */
  onLost(listener: Listener): () => void {
    this.#lostListeners.add(listener);
    return () => this.#lostListeners.delete(listener);
  }

  /** The open connection, waiting through an outage until `deadline`. */
  async connection(deadline: number): Promise<Connection> {
    for (;;) {
      if (this.#closed) throw new BusError('BUSBAR_ERR_CLOSED', 'the AMQP 1.0 transport is closed: connect a new bus');
      if (this.#current) return this.#current;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new BusError(
          'BUSBAR_ERR_CONNECTION',
          `no AMQP 1.0 endpoint answers (${this.#options.endpoints.map(where).join(', ')}); retry later`,
          { retryable: true },
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The current connection or undefined during an outage. */
  get current(): Connection | undefined {
    return this.#current;
  }

  /**
   * Waits for an answer on `connection` (a link or session opening, a reply): `wait` gets resolve and reject and
   * may return a clean-up. Rejects when the connection is no longer the current one, is lost or closed before the
   * answer, or when `deadline` passes: rhea says nothing to a link whose connection dropped.
   */
  waitOn<T>(
    connection: Connection,
    deadline: number,
    what: string,
    wait: (resolve: (value: T) => void, reject: (error: Error) => void) => (() => void) | undefined,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (connection !== this.#current) {
        reject(new Error(`the connection was lost before ${what}`));
        return;
      }
      let cleanUp: (() => void) | undefined;
      let done = false;
      const finish = () => {
        done = true;
        clearTimeout(timer);
        unsubscribe();
        cleanUp?.();
      };
      const timer = setTimeout(
        () => {
          if (done) return;
          finish();
          reject(new Error(`no answer to ${what} within the time allowed`));
        },
        Math.max(1, deadline - Date.now()),
      );
      const unsubscribe = this.onLost((lost) => {
        if (lost !== connection || done) return;
        finish();
        reject(new Error(`the connection was lost before ${what}`));
      });
      cleanUp = wait(
        (value) => {
          if (done) return;
          finish();
          resolve(value);
        },
        (error) => {
          if (done) return;
          finish();
          reject(error);
        },
      );
      if (done) cleanUp?.();
    });
  }

  #open(endpoint: Endpoint, deadline: number): Promise<Connection> {
    const o = this.#options;
    const options: ConnectionOptions & Record<string, unknown> = {
      host: endpoint.host,
      port: endpoint.port,
      reconnect: false,
      idle_time_out: o.idleTimeoutMs,
      container_id: o.containerId,
      hostname: endpoint.host,
      // Each processing pass leaves as one writev (batchWrites): send it at once, do not wait for the last one's ACK.
      // rhea turns this on anyway at the first open_receiver (management's reply receiver), but not before.
      tcp_no_delay: true,
    };
    if (o.tls) {
      Object.assign(options, {
        transport: 'tls',
        // SNI carries host names only (RFC 6066): none for an IP address ('' keeps rhea from setting the host), whose
        // certificate is still checked against the address.
        servername: isIP(endpoint.host) ? '' : endpoint.host,
        rejectUnauthorized: o.rejectUnauthorized,
        ...(o.ca ? { ca: o.ca } : {}),
        ...(o.cert ? { cert: o.cert } : {}),
        ...(o.key ? { key: o.key } : {}),
      });
    }
    if (o.sasl === 'PLAIN') Object.assign(options, { username: o.username, password: o.password });
    else if (o.sasl === 'ANONYMOUS') options.username = o.username ?? 'anonymous';
    else options.enable_sasl_external = true;
    return new Promise((resolve, reject) => {
      const connection = this.#container.connect(options as ConnectionOptions);
      batchWrites(connection);
      const timer = setTimeout(() => fail(new Error('no answer')), Math.max(1, deadline - Date.now()));
      const fail = (error: Error) => {
        clearTimeout(timer);
        if (this.#abortOpen === abort) this.#abortOpen = undefined;
        connection.removeAllListeners();
        for (const event of ['error', 'disconnected', 'connection_error', 'connection_close'])
          connection.on(event, () => {});
        try {
          connection.close();
        } catch {}
        // A connection that never opened may keep its socket (a failed TLS handshake does): end it here.
        (connection as unknown as { socket?: { destroy(): void } }).socket?.destroy();
        reject(error);
      };
      const abort = () => fail(new Error('the transport was closed'));
      this.#abortOpen = abort;
      // Open is not enough: a broker may open, then close at once for a login it refuses (Artemis does so for SASL
      // ANONYMOUS with security on). A session that begins proves the connection usable.
      connection.once('connection_open', () => {
        const probe = connection.create_session();
        probe.once('session_open', () => {
          clearTimeout(timer);
          if (this.#abortOpen === abort) this.#abortOpen = undefined;
          probe.close();
          connection.removeAllListeners();
          resolve(connection);
        });
        probe.begin();
      });
      connection.on('connection_error', (context: EventContext) => fail(new Error(reason(context))));
      connection.on('disconnected', (context: EventContext) => fail(new Error(reason(context))));
      connection.on('error', (error: Error) => fail(error));
    });
  }

  #adopt(connection: Connection, endpoint: Endpoint): void {
    this.#current = connection;
    // Failures of links and sessions are handled where they are opened; the connection's own end is handled here.
    connection.on('error', () => {});
    connection.on('connection_error', () => {});
    connection.on('sender_error', () => {});
    connection.on('receiver_error', () => {});
    connection.on('session_error', () => {});
    const lost = (context?: EventContext) => this.#lost(connection, endpoint, reason(context));
    connection.on('disconnected', lost);
    connection.on('connection_close', lost);
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
    for (const listener of [...this.#openListeners]) listener(connection);
  }

  #lost(connection: Connection, endpoint: Endpoint, why: string): void {
    if (connection !== this.#current) return;
    this.#current = undefined;
    for (const listener of [...this.#lostListeners]) listener(connection);
    if (this.#closed) return;
    warn(`lost ${where(endpoint)} (${why}); failing over`);
    this.#failedOver = true;
    this.#next++;
    void this.#reconnect();
  }

  async #reconnect(): Promise<void> {
    if (this.#reconnecting) return;
    this.#reconnecting = true;
    try {
      for (let attempt = 0; !this.#closed; attempt++) {
        await this.#pause(BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]!);
        if (this.#closed) return;
        const endpoint = this.#options.endpoints[this.#next % this.#options.endpoints.length]!;
        try {
          const connection = await this.#open(endpoint, Date.now() + this.#options.connectTimeoutMs);
          if (this.#closed) {
            connection.close();
            return;
          }
          if (this.#failedOver) {
            warn(`connected to ${where(endpoint)}; resending ${this.resendCount()} unconfirmed message(s)`);
          }
          this.#adopt(connection, endpoint);
          return;
        } catch {
          this.#next++;
        }
      }
    } finally {
      this.#reconnecting = false;
    }
  }

  /** A backoff pause that close() cuts short, so a closed bus does not keep the process alive. */
  #pause(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wakeOnClose = done;
    });
  }

  /**
   * Bounded: the broker has CLOSE_TIMEOUT_MS to answer `close`, then the socket is ended. Every wait on the
   * connection (waitOn) ends at once, and a connection attempt under way is given up.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wakeOnClose?.();
    this.#abortOpen?.();
    const connection = this.#current;
    this.#current = undefined;
    for (const wake of this.#waiters.splice(0)) wake();
    if (connection) for (const listener of [...this.#lostListeners]) listener(connection);
    if (!connection) return;
    const socket = (connection as unknown as { socket?: { destroy(): void } }).socket;
    if (connection.is_closed()) {
      socket?.destroy();
      return;
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        socket?.destroy();
        done();
      }, CLOSE_TIMEOUT_MS);
      connection.once('connection_close', done);
      connection.once('disconnected', done);
      try {
        connection.close();
      } catch {
        socket?.destroy();
        done();
      }
    });
  }
}

/**
 * rhea writes every frame with its own socket.write, one output() call per frame (Connection._write_frame): 100
 * transfers of a publish, 100 dispositions of a consumer's acks, each a system call and, with TCP_NODELAY (which rhea
 * turns on at the first open_receiver, e.g. management's reply receiver), each its own TCP segment for the broker to
 * read. Corked for the whole of rhea's processing pass (`_process`, scheduled once per tick, looked up on the
 * connection each time, which writes every frame of its sessions and links), the frames of a pass leave in one writev.
 * Corking nests, so output() inside the pass writes nothing until the pass ends.
 */
function batchWrites(connection: Connection): void {
  const raw = connection as unknown as { _process(): void; socket?: { cork(): void; uncork(): void } };
  const pass = raw._process;
  if (typeof pass !== 'function') return;
  raw._process = function corked(this: typeof raw) {
    const socket = this.socket;
    socket?.cork();
    try {
      pass.call(this);
    } finally {
      socket?.uncork();
    }
  };
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

/** A change of connection, said once per change (not per retry), as every transport does. */
function warn(line: string): void {
  process.emitWarning(`busbar amqp10: ${line}`, 'BusbarWarning');
}
