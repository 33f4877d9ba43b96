/**
 * One AMQP connection that comes back by itself. amqplib 2.x has a recovering connection too, but it takes a single
 * URL; this one tries every configured endpoint (round robin, exponential backoff) so a cluster node going away is
 * routine. Channels do not survive a reconnect: users ask for the current connection and re-create their channels
 * when `onReconnect` fires.
 */
import amqp, { type ChannelModel } from 'amqplib';
import { BusError } from '../../errors.ts';
import type { RabbitOptions } from './options.ts';

const INITIAL_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5_000;

type Waiter = { resolve: (model: ChannelModel) => void; reject: (error: unknown) => void };

/** True for failures that no retry fixes (bad credentials, unknown vhost). */
function isAuthFailure(error: unknown): boolean {
  const message = String((error as Error)?.message ?? error);
  // Whole codes only: a TLS error quotes OpenSSL's hex addresses (`403D4AD3AD7F0000:error:...`).
  return /ACCESS_REFUSED|NOT_ALLOWED|\b403\b|\b530\b/.test(message);
}

export class ReconnectingConnection {
  readonly #options: RabbitOptions;
  #model: ChannelModel | undefined;
  #waiters: Waiter[] = [];
  #listeners = new Set<() => void>();
  #closed = false;
  #next = 0;
  #timer: NodeJS.Timeout | undefined;
  #lastError: unknown;
  #blocked: string | undefined;

  constructor(options: RabbitOptions) {
    this.#options = options;
  }

  get connected(): boolean {
    return this.#model !== undefined;
  }

  /** Why RabbitMQ stopped accepting publishes on this connection (a resource alarm), while it does. */
  get blocked(): string | undefined {
    return this.#blocked;
  }

  /** First connection: tries the endpoints until one answers or connectTimeoutMs passes. */
  async start(): Promise<void> {
    const deadline = Date.now() + this.#options.connectTimeoutMs;
    let backoff = INITIAL_BACKOFF_MS;
    for (;;) {
      try {
        this.#adopt(await this.#open());
        return;
      } catch (error) {
        if (isAuthFailure(error)) {
          const check =
            this.#options.sasl === 'EXTERNAL'
              ? 'check that the client certificate names a RabbitMQ user (by default its subject DN; ssl_cert_login_from) with access to the vhost'
              : 'check username, password and vhost';
          throw new BusError(
            'BUSBAR_ERR_AUTH',
            `RabbitMQ refused the credentials or vhost: ${(error as Error).message}; ${check}`,
            { cause: error },
          );
        }
        if (Date.now() + backoff > deadline) throw this.#unreachable(error, 'start');
        await new Promise((resolve) => setTimeout(resolve, backoff));
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
      }
    }
  }

  /** The live connection, waiting through an outage until `deadline` (epoch ms). */
  model(deadline: number): Promise<ChannelModel> {
    if (this.#closed) return Promise.reject(new BusError('BUSBAR_ERR_CLOSED', 'the RabbitMQ transport is closed'));
    if (this.#model) return Promise.resolve(this.#model);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (model) => {
          clearTimeout(timer);
          resolve(model);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(
        () => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(this.#unreachable(this.#lastError, 'outage'));
        },
        Math.max(0, deadline - Date.now()),
      );
      this.#waiters.push(waiter);
    });
  }

  /** Called after every reconnect (not the first connect). Returns the unsubscribe function. */
  onReconnect(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    const closed = new BusError('BUSBAR_ERR_CLOSED', 'the RabbitMQ transport is closed');
    for (const waiter of this.#waiters.splice(0)) waiter.reject(closed);
    const model = this.#model;
    this.#model = undefined;
    await model?.close().catch(() => {});
  }

  async #open(): Promise<ChannelModel> {
    const targets = this.#options.targets;
    const target = targets[this.#next++ % targets.length]!;
    try {
      return await amqp.connect(target, this.#options.socket);
    } catch (error) {
      this.#lastError = error;
      throw error;
    }
  }

  #adopt(model: ChannelModel): void {
    this.#model = model;
    // amqplib emits 'error' before 'close' on a connection failure; without a listener it would throw.
    model.on('error', (error: unknown) => {
      this.#lastError = error;
    });
    model.on('blocked', (reason: string) => {
      this.#blocked = reason;
    });
    model.on('unblocked', () => {
      this.#blocked = undefined;
    });
    model.on('close', () => {
      if (this.#model !== model) return;
      this.#blocked = undefined;
      this.#model = undefined;
      if (!this.#closed) this.#reconnect(INITIAL_BACKOFF_MS);
    });
    for (const waiter of this.#waiters.splice(0)) waiter.resolve(model);
  }

  #reconnect(backoff: number): void {
    this.#timer = setTimeout(async () => {
      if (this.#closed) return;
      try {
        const model = await this.#open();
        if (this.#closed) {
          await model.close().catch(() => {});
          return;
        }
        this.#adopt(model);
        for (const listener of this.#listeners) listener();
      } catch {
        this.#reconnect(Math.min(MAX_BACKOFF_MS, backoff * 2));
      }
    }, backoff);
  }

  /**
   * On the first connect busbar gives up (a one-shot command must not hint at reconnects that never come); during an
   * outage of a running bus it does keep reconnecting, and says so.
   */
  #unreachable(cause: unknown, when: 'start' | 'outage'): BusError {
    const where = this.#options.targets.map((t) => `${t.hostname}:${t.port}`).join(', ');
    const reason = cause instanceof Error ? cause.message : 'no connection';
    const next =
      when === 'start'
        ? `gave up within the connect timeout (${this.#options.connectTimeoutMs} ms, options.connectTimeoutMs): check that RabbitMQ runs there and that the URL is right`
        : 'busbar keeps reconnecting: retry, or check that the broker runs';
    return new BusError('BUSBAR_ERR_CONNECTION', `RabbitMQ is unreachable at ${where} (${reason}); ${next}`, {
      cause,
    });
  }
}
