/**
 * Artemis management over STOMP itself, so the transport needs no second protocol or port: a request is a SEND to
 * `activemq.management` with headers `_AMQ_ResourceName` and `_AMQ_OperationName` (or `_AMQ_Attribute`), its
 * parameters as a JSON array in a text body (no content-length), and `reply-to` naming a queue of this connection;
 * the reply carries `_AMQ_OperationSucceeded` and a JSON array holding the result. Requests go one at a time.
 */
import { randomUUID } from 'node:crypto';
import type { IMessage } from '@stomp/stompjs';
import { BusError } from '../../errors.ts';
import type { StompLink } from './link.ts';
import { escapeHeader } from './wire.ts';

const MANAGEMENT_ADDRESS = 'activemq.management';
/** Reply queues are named with this prefix; listTypes hides addresses that start with it. */
export const REPLY_PREFIX = 'busbar.reply.';
const REPLY_SUBSCRIPTION = 'busbar-management';
/** How long close() waits for the broker to delete the reply address. */
const CLOSE_TIMEOUT_MS = 5000;

type Waiter = { resolve: (message: IMessage) => void; reject: (error: unknown) => void; id: string };

export class Management {
  readonly #link: StompLink;
  readonly #timeoutMs: number;
  readonly #replyTo = `${REPLY_PREFIX}${randomUUID()}`;
  #subscribed = false;
  #chain: Promise<unknown> = Promise.resolve();
  #waiter: Waiter | undefined;
  #requests = 0;

  constructor(link: StompLink, timeoutMs: number) {
    this.#link = link;
    this.#timeoutMs = timeoutMs;
    link.onConnected(() => {
      if (this.#subscribed) this.#subscribe();
    });
  }

  /** Invokes an operation; resolves with its result. */
  invoke(resource: string, operation: string, parameters: unknown[] = []): Promise<unknown> {
    return this.#request({ _AMQ_ResourceName: resource, _AMQ_OperationName: operation }, parameters);
  }

  /** Reads an attribute. */
  read(resource: string, attribute: string): Promise<unknown> {
    return this.#request({ _AMQ_ResourceName: resource, _AMQ_Attribute: attribute }, []);
  }

  /**
   * Removes this connection's reply address (Artemis deleted its temporary queue with the subscription). Without a
   * reply-to: deleting the address would otherwise cut off the subscription that waits for the answer.
   */
  async close(): Promise<void> {
    if (!this.#subscribed) return;
    this.#subscribed = false;
    // Best effort and bounded: with no broker to answer, close does not wait for one to come back.
    if (!this.#link.connected) return;
    this.#link.unsubscribe(REPLY_SUBSCRIPTION);
    await this.#link
      .sendConfirmed(
        MANAGEMENT_ADDRESS,
        { _AMQ_ResourceName: 'broker', _AMQ_OperationName: 'deleteAddress' },
        JSON.stringify([this.#replyTo, true]),
        Math.min(this.#timeoutMs, CLOSE_TIMEOUT_MS),
      )
      .catch(() => {});
  }

  #subscribe(): void {
    this.#link.subscribe(
      this.#replyTo,
      { id: REPLY_SUBSCRIPTION, 'destination-type': 'ANYCAST', ack: 'auto' },
      (message) => this.#reply(message),
    );
  }

  #request(headers: Record<string, string>, parameters: unknown[]): Promise<unknown> {
    const run = async () => {
      if (!this.#subscribed) {
        this.#subscribed = true;
        this.#subscribe();
      }
      const id = `m${++this.#requests}`;
      const what = `${headers._AMQ_ResourceName} ${headers._AMQ_OperationName ?? headers._AMQ_Attribute}`;
      const replied = new Promise<IMessage>((resolve, reject) => {
        this.#waiter = { resolve, reject, id };
      });
      const timer = setTimeout(() => {
        this.#waiter?.reject(
          new BusError(
            'BUSBAR_ERR_TIMEOUT',
            `Artemis management did not answer ${what} within ${this.#timeoutMs} ms; retry, or check that the broker runs`,
          ),
        );
      }, this.#timeoutMs);
      try {
        await this.#link.sendConfirmed(
          MANAGEMENT_ADDRESS,
          {
            ...Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, escapeHeader(value)])),
            'reply-to': escapeHeader(this.#replyTo),
            'correlation-id': id,
          },
          JSON.stringify(parameters),
          this.#timeoutMs,
        );
        const reply = await replied;
        const result = parse(reply.body);
        if (reply.headers._AMQ_OperationSucceeded !== 'true') {
          throw new BusError(
            'BUSBAR_ERR_BROKER',
            `Artemis management refused ${what}: ${Array.isArray(result) ? result[0] : reply.body}`,
          );
        }
        return Array.isArray(result) ? result[0] : result;
      } finally {
        clearTimeout(timer);
        this.#waiter = undefined;
      }
    };
    const result = this.#chain.then(run, run);
    this.#chain = result.catch(() => {});
    return result;
  }

  #reply(message: IMessage): void {
    const waiter = this.#waiter;
    // A reply to a request that timed out arrives late: it is not the answer to the current one.
    if (!waiter || (message.headers['correlation-id'] && message.headers['correlation-id'] !== waiter.id)) return;
    waiter.resolve(message);
  }
}

function parse(body: string): unknown {
  if (body === '') return undefined;
  try {
    return JSON.parse(body);
  } catch {
    return body;
  }
}
