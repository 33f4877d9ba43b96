/**
 * Artemis's management API over AMQP: a request to `activemq.management` names a resource (`broker`,
 * `queue.<name>`, `address.<name>`) and an operation in application properties, with its arguments as a JSON array
 * in the body; the reply comes to a dynamic (temporary) queue with `_AMQ_OperationSucceeded` and a JSON body.
 * One sender and one reply receiver per connection; requests go one at a time (admin is not on the hot path).
 */
import type { Connection, EventContext, Receiver, Sender } from 'rhea';
import { BusError } from '../../errors.ts';
import type { FailoverConnection } from './connection.ts';
import { MANAGEMENT_ADDRESS } from './wire.ts';

const REQUEST_TIMEOUT_MS = 30_000;
const RETRY_PAUSE_MS = 100;

interface Link {
  readonly connection: Connection;
  readonly sender: Sender;
  readonly receiver: Receiver;
  readonly replyTo: string;
}

export class Management {
  readonly #failover: FailoverConnection;
  #link: Promise<Link> | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #pending: ((context: EventContext) => void) | undefined;

  constructor(failover: FailoverConnection) {
    this.#failover = failover;
  }

  /** Runs one operation; resolves with its decoded reply, rejects with a BusError naming the operation. */
  call(resource: string, operation: string, ...args: unknown[]): Promise<unknown> {
    const run = this.#queue.then(() => this.#call(resource, operation, args));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #call(resource: string, operation: string, args: unknown[]): Promise<unknown> {
    const deadline = Date.now() + REQUEST_TIMEOUT_MS;
    for (;;) {
      const link = await this.#ensure(deadline);
      try {
        return await this.#request(link, resource, operation, args, deadline);
      } catch (error) {
        if (error instanceof BusError || Date.now() >= deadline || this.#failover.closed) throw error;
        // The connection was lost mid-request: ask again on the next one (every operation used is idempotent),
        // after a pause, so that a link failing at once cannot spin.
        this.#link = undefined;
        await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS));
      }
    }
  }

  async #ensure(deadline: number): Promise<Link> {
    for (;;) {
      this.#link ??= this.#open(deadline);
      const made = this.#link;
      try {
        const link = await made;
        if (this.#failover.current === link.connection) return link;
      } catch (error) {
        if (this.#link === made) this.#link = undefined;
        throw error;
      }
      // Made on a connection that is gone since: make it again on the current one.
      if (this.#link === made) this.#link = undefined;
      await this.#failover.connection(deadline);
    }
  }

  async #open(deadline: number): Promise<Link> {
    const connection = await this.#failover.connection(deadline);
    const receiver = connection.open_receiver({ source: { address: '', dynamic: true }, credit_window: 10 });
    const sender = connection.open_sender({ target: { address: MANAGEMENT_ADDRESS } });
    try {
      const replyTo = await this.#failover.waitOn<string>(
        connection,
        deadline,
        'the management reply link',
        (ok, fail) => {
          const opened = () => ok(receiver.source.address);
          const closed = () => fail(new Error('the broker closed the reply link'));
          receiver.once('receiver_open', opened);
          receiver.once('receiver_close', closed);
          return () => {
            receiver.off('receiver_open', opened);
            receiver.off('receiver_close', closed);
          };
        },
      );
      receiver.on('message', (context: EventContext) => this.#pending?.(context));
      return { connection, sender, receiver, replyTo };
    } catch (error) {
      closeQuietly(receiver);
      closeQuietly(sender);
      throw error;
    }
  }

  #request(link: Link, resource: string, operation: string, args: unknown[], deadline: number): Promise<unknown> {
    return this.#failover.waitOn<unknown>(
      link.connection,
      deadline,
      `${operation} on ${resource}`,
      (resolve, reject) => {
        this.#pending = (context) => {
          const reply = context.message!;
          const body = reply.body;
          const raw =
            typeof body === 'string'
              ? body
              : Buffer.isBuffer(body)
                ? body.toString('utf8')
                : body && Buffer.isBuffer(body.content)
                  ? body.content.toString('utf8')
                  : 'null';
          let value: unknown;
          try {
            value = JSON.parse(raw);
          } catch {
            value = raw;
          }
          if (reply.application_properties?._AMQ_OperationSucceeded !== true) {
            reject(
              new BusError(
                'BUSBAR_ERR_BROKER',
                `Artemis management ${operation} on ${resource} failed: ${Array.isArray(value) ? value[0] : raw}`,
              ),
            );
            return;
          }
          resolve(Array.isArray(value) && value.length === 1 ? value[0] : value);
        };
        link.sender.send({
          reply_to: link.replyTo,
          application_properties: { _AMQ_ResourceName: resource, _AMQ_OperationName: operation },
          body: JSON.stringify(args),
        });
        return () => {
          this.#pending = undefined;
        };
      },
    );
  }
}

function closeQuietly(link: Sender | Receiver): void {
  try {
    link.close();
  } catch {}
}
