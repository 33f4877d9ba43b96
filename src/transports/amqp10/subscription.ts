/**
 * A consumer: one receiver per (endpoint, type) on the group's queue `<type>::<type>:<group>`, created first
 * through management (createQueue, idempotent) so that it exists before any send reaches the type. A consumer
 * reads every endpoint of the URL, each over its own connection that reconnects on its own, so that messages stored
 * on a broker that was down are delivered once it is back (docs/wire/amqp10.md, "Failover").
 * Prefetch is link credit, issued by hand: one credit back per settled delivery. Ack is `accepted` inside a
 * transaction, resolved when the broker committed it (transactions.ts); nack is `modified` with delivery-failed (the
 * broker counts it in delivery-count), resolved once the broker answered the next discharge; a delayed nack sends a
 * scheduled copy (x-opt-delivery-delay) straight to the group's queue, then acks the original. The ack timeout is
 * emulated: a delivery held past ackTimeoutMs is returned like a nack.
 */
import type { Connection, EventContext, Message, Receiver, Delivery as RheaDelivery, Session } from 'rhea';
import { BusError, toBusError } from '../../errors.ts';
import type {
  ConsumeOptions,
  Delivery,
  NackOptions,
  Subscription,
  TransportMessage,
} from '../../transport/contract.ts';
import { DeliveryQueue } from '../../transport/queue.ts';
import { LeaseSweeper } from '../../transport/sweeper.ts';
import type { FailoverConnection } from './connection.ts';
import { fixDispositions } from './dispositions.ts';
import type { Management } from './management.ts';
import type { Publisher } from './publisher.ts';
import { AckTransactions } from './transactions.ts';
import { consumerSession, MAX_WINDOW, WINDOW_SLACK } from './window.ts';
import { attemptOf, delayedCopy, fqqn, fromAmqp, groupQueue } from './wire.ts';

const ATTACH_TIMEOUT_MS = 30_000;
/** Pause before attaching again on a connection where an attach failed. */
const REATTACH_PAUSE_MS = 1000;
/** Artemis reads link credit as a Java int: a link given more receives nothing at all. */
const MAX_LINK_CREDIT = 2 ** 31 - 1;

/** One broker of the endpoint list, as a consumer sees it. */
export interface Site {
  readonly failover: FailoverConnection;
  readonly management: Management;
}

export async function createGroupQueue(management: Management, type: string, group: string): Promise<void> {
  const config = { name: groupQueue(type, group), address: type, 'routing-type': 'MULTICAST', durable: true };
  await management.call('broker', 'createQueue', JSON.stringify(config), true);
}

type State = 'open' | 'acked' | 'nacked' | 'expired' | 'lost';

class Amqp10Delivery implements Delivery {
  readonly message: TransportMessage;
  readonly attempt: number;
  readonly deadline: number;
  readonly receiver: Receiver;
  readonly #owner: Amqp10Subscription;
  readonly #transactions: AckTransactions;
  /** The broker's confirmation of the ack, once asked for: a second ack() waits for the same answer. */
  #acked: Promise<void> | undefined;
  readonly #raw: RheaDelivery;
  readonly #amqp: Message;
  readonly #type: string;
  #state: State = 'open';

  constructor(
    owner: Amqp10Subscription,
    receiver: Receiver,
    transactions: AckTransactions,
    context: EventContext,
    type: string,
    ackTimeoutMs: number,
  ) {
    this.#owner = owner;
    this.receiver = receiver;
    this.#transactions = transactions;
    this.#raw = context.delivery!;
    this.#amqp = context.message!;
    this.#type = type;
    this.message = fromAmqp(this.#amqp, type);
    this.attempt = attemptOf(this.#amqp);
    this.deadline = Date.now() + ackTimeoutMs;
  }

  /** The lease ends at the deadline, or at once once the delivery is no longer held (contract rule 3). */
  get leaseUntil(): number {
    return this.#state === 'open' ? this.deadline : 0;
  }

  async ack(): Promise<void> {
    if (this.#state === 'acked') return this.#acked;
    if (this.#state === 'expired') return;
    if (this.#state !== 'open') throw this.#notHeld('ack');
    this.#settle('acked');
    this.#acked = this.#commit();
    return this.#acked;
  }

  /** Accepts the delivery in a transaction; resolves once the broker committed it. */
  async #commit(): Promise<void> {
    try {
      await this.#transactions.accept(this.#raw);
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      throw new BusError(
        'BUSBAR_ERR_ACK',
        `the broker did not confirm the ack of message ${this.message.id} (${why}); it will be redelivered`,
        { retryable: false },
      );
    }
  }

  async nack(options?: NackOptions): Promise<void> {
    if (this.#state !== 'open') return;
    this.#settle('nacked');
    const delayMs = options?.delayMs ?? 0;
    if (delayMs <= 0) {
      this.#returnNow();
      // Confirmed once the broker answered a later frame, so it has returned the message. If the connection goes
      // first, the broker returns it all the same: nothing to report.
      await this.#transactions.confirm().catch(() => {});
      return;
    }
    try {
      const copy = delayedCopy(this.#amqp, this.attempt, delayMs);
      await this.#owner.publisher.send(fqqn(this.#type, this.#owner.group), [copy]);
    } catch (error) {
      // The delayed copy is not stored: return the original now rather than lose or hold it.
      this.#returnNow();
      throw error;
    }
    // The copy is stored; if the link died meanwhile the original comes back too (a duplicate, never a loss).
    await this.#transactions.accept(this.#raw).catch(() => {});
  }

  expire(): void {
    if (this.#state !== 'open') return;
    this.#settle('expired');
    this.#returnNow();
  }

  lose(): void {
    if (this.#state === 'open') this.#settle('lost');
  }

  #returnNow(): void {
    this.#raw.modified({ delivery_failed: true });
  }

  #settle(state: State): void {
    this.#state = state;
    this.#owner.settled(this);
  }

  #notHeld(what: string): BusError {
    const why = this.#state === 'nacked' ? 'it was nacked' : 'the connection was lost, so the broker returned it';
    return new BusError('BUSBAR_ERR_ACK', `cannot ${what} message ${this.message.id}: ${why}; it will be redelivered`, {
      retryable: false,
    });
  }
}

export class Amqp10Subscription implements Subscription {
  readonly ready: Promise<void>;
  readonly publisher: Publisher;
  readonly group: string;
  readonly #options: ConsumeOptions;
  readonly #sites: readonly Site[];
  readonly #onClose: (s: Amqp10Subscription) => void;
  readonly #deliveries = new DeliveryQueue<Amqp10Delivery>({
    onLeave: () => this.close(),
    onExpired: (delivery) => delivery.expire(),
  });
  /** Open deliveries; the emulated ack timeout returns one held past its lease. */
  readonly #live = new LeaseSweeper<Amqp10Delivery>((delivery) => delivery.expire());
  /** Open receivers and sessions, with the connection each lives on; each session's acks go through its own
   * transactions. */
  readonly #receivers = new Map<Receiver, Connection>();
  readonly #sessions = new Map<Session, Connection>();
  readonly #transactions = new Map<Session, AckTransactions>();
  readonly #unsubscribe: Array<() => void> = [];
  readonly #credit: number;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(
    sites: readonly Site[],
    publisher: Publisher,
    options: ConsumeOptions,
    onClose: (s: Amqp10Subscription) => void,
  ) {
    this.#sites = sites;
    this.publisher = publisher;
    this.group = options.group;
    this.#options = options;
    this.#onClose = onClose;
    // A prefetch beyond what a link's credit and its session's window can hold is the most they can give.
    const perLink = Math.floor(options.prefetch / (options.types.length * sites.length));
    const most = Math.min(MAX_LINK_CREDIT, Math.floor((MAX_WINDOW - WINDOW_SLACK) / options.types.length));
    this.#credit = Math.max(1, Math.min(perLink, most));
    for (const site of sites) {
      this.#unsubscribe.push(site.failover.onOpen((connection) => void this.#attachQuietly(site, connection)));
      this.#unsubscribe.push(site.failover.onLost((connection) => this.#lost(connection)));
    }
    this.ready = this.#attachAll().catch((error: unknown) => {
      throw toBusError(
        error,
        'BUSBAR_ERR_BROKER',
        `cannot consume ${options.types.join(', ')} as group ${options.group}`,
      );
    });
    this.ready.catch((error) => {
      this.#deliveries.end(error);
      void this.close();
    });
    if (options.signal?.aborted) void this.close();
    else options.signal?.addEventListener('abort', () => void this.close(), { once: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return this.#deliveries[Symbol.asyncIterator]();
  }

  settled(delivery: Amqp10Delivery): void {
    if (!this.#live.delete(delivery)) return;
    if (this.#receivers.has(delivery.receiver) && delivery.receiver.is_open()) delivery.receiver.add_credit(1);
  }

  /** Ready once attached on every endpoint that is up; an endpoint that is down is attached when it comes back. */
  async #attachAll(): Promise<void> {
    if (!this.#sites.some((site) => site.failover.current)) {
      const deadline = Date.now() + ATTACH_TIMEOUT_MS;
      await Promise.any(this.#sites.map((site) => site.failover.connection(deadline)));
    }
    const up = this.#sites.filter((site) => site.failover.current);
    const attached = await Promise.allSettled(up.map((site) => this.#attach(site, site.failover.current!)));
    const failure = attached.find((a) => a.status === 'rejected');
    if (failure && !attached.some((a) => a.status === 'fulfilled')) throw (failure as PromiseRejectedResult).reason;
    // Ready on the endpoints that attached; the others keep trying on their own.
    attached.forEach((a, i) => {
      const site = up[i]!;
      if (a.status === 'rejected' && site.failover.current) void this.#attachQuietly(site, site.failover.current);
    });
  }

  /** The broker returns a lost connection's unsettled deliveries to their group: they are no longer ours. */
  #lost(connection: Connection): void {
    for (const [receiver, on] of this.#receivers) if (on === connection) this.#receivers.delete(receiver);
    for (const [session, on] of this.#sessions) {
      if (on !== connection) continue;
      this.#sessions.delete(session);
      this.#transactions.delete(session);
    }
    for (const delivery of [...this.#live]) if (!this.#receivers.has(delivery.receiver)) delivery.lose();
  }

  /** Attaches on a connection opened later, trying again while it stays up (each try is bounded). */
  async #attachQuietly(site: Site, connection: Connection): Promise<void> {
    while (!this.#closed && site.failover.current === connection) {
      try {
        await this.#attach(site, connection);
        return;
      } catch {
        // Lost again (the next connection attaches), or the broker did not answer: try again soon on this one.
        await new Promise((resolve) => setTimeout(resolve, REATTACH_PAUSE_MS).unref());
      }
    }
  }

  async #attach(site: Site, connection: Connection): Promise<void> {
    const { types, group } = this.#options;
    for (const type of types) await createGroupQueue(site.management, type, group);
    if (this.#closed || site.failover.current !== connection) return;
    // A session of its own: deliveries this consumer holds take room in its session's window, so they must not
    // stall other consumers, publishes or management replies on the connection. Its window has room for the credit
    // of all its links and frees each delivery as it is settled (window.ts).
    const session = consumerSession(connection, this.#credit * types.length);
    fixDispositions(session);
    session.begin();
    this.#sessions.set(session, connection);
    this.#transactions.set(session, new AckTransactions(site.failover, connection, session));
    try {
      await Promise.all(types.map((type) => this.#open(site, connection, session, type)));
    } catch (error) {
      // All or nothing: the session's receivers go (their deliveries return to the group), so a retry makes no
      // second receiver on a queue.
      for (const [receiver] of this.#receivers) if (receiver.session === session) this.#receivers.delete(receiver);
      for (const delivery of [...this.#live]) if (!this.#receivers.has(delivery.receiver)) delivery.lose();
      this.#sessions.delete(session);
      this.#transactions.delete(session);
      try {
        session.close();
      } catch {}
      throw error;
    }
  }

  #open(site: Site, connection: Connection, session: Session, type: string): Promise<void> {
    const receiver = session.open_receiver({
      source: { address: fqqn(type, this.group) },
      credit_window: 0,
      autoaccept: false,
      name: `${this.#options.consumerId}/${type}/${Math.random().toString(36).slice(2, 10)}`,
    });
    this.#receivers.set(receiver, connection);
    const forget = () => {
      this.#receivers.delete(receiver);
      for (const delivery of [...this.#live]) if (delivery.receiver === receiver) delivery.lose();
    };
    receiver.on('message', (context: EventContext) => this.#deliver(receiver, type, context));
    receiver.once('receiver_close', forget);
    // Bounded: rhea says nothing to a receiver whose connection dropped before the broker attached it.
    return site.failover.waitOn<void>(
      connection,
      Date.now() + ATTACH_TIMEOUT_MS,
      `attaching to ${type}`,
      (ok, fail) => {
        const opened = () => {
          if (this.#closed) receiver.close();
          else receiver.add_credit(this.#credit);
          ok();
        };
        const closed = () => {
          const error = receiver.error as { description?: string; condition?: string } | undefined;
          fail(new Error(error?.description ?? error?.condition ?? 'the broker closed the receiver'));
        };
        receiver.once('receiver_open', opened);
        receiver.once('receiver_close', closed);
        return () => {
          receiver.off('receiver_open', opened);
          receiver.off('receiver_close', closed);
        };
      },
    );
  }

  #deliver(receiver: Receiver, type: string, context: EventContext): void {
    if (this.#closed || !this.#receivers.has(receiver)) {
      context.delivery?.release();
      return;
    }
    const transactions = this.#transactions.get(receiver.session);
    if (!transactions) {
      context.delivery?.release();
      return;
    }
    const delivery = new Amqp10Delivery(this, receiver, transactions, context, type, this.#options.ackTimeoutMs);
    this.#live.add(delivery);
    this.#deliveries.push(delivery);
  }

  /** Idempotent. Closing the receivers returns every unsettled delivery to its group at once. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      this.#live.stop();
      for (const unsubscribe of this.#unsubscribe) unsubscribe();
      this.#deliveries.end();
      this.#deliveries.drain();
      // Returned now (counted as a failed delivery), rather than left to the detach: settled here, they free the
      // session's window too.
      const receivers = [...this.#receivers.keys()];
      this.#receivers.clear();
      for (const delivery of [...this.#live]) delivery.expire();
      // Acks not committed yet would be rolled back with the session: wait (bounded) for the broker's answer first.
      await Promise.all([...this.#transactions.values()].map((transactions) => transactions.drain()));
      this.#transactions.clear();
      await Promise.all(receivers.map((receiver) => closeLink(receiver)));
      for (const session of this.#sessions.keys()) {
        try {
          session.close();
        } catch {}
      }
      this.#sessions.clear();
      this.#onClose(this);
    })();
    return this.#closing;
  }
}

function closeLink(receiver: Receiver): Promise<void> {
  if (!receiver.is_open()) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 2000);
    receiver.once('receiver_close', () => {
      clearTimeout(timer);
      resolve();
    });
    try {
      receiver.close();
    } catch {
      clearTimeout(timer);
      resolve();
    }
  });
}
