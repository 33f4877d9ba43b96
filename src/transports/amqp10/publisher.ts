/**
 * Settled publishing: every message is durable and sent unsettled; the broker's `accepted` disposition is its
 * durable ack, and a publish resolves once every message of its batch is accepted. `rejected` fails the publish
 * (the broker's reason in the error); `released` and `modified` (the broker did not take it, e.g. an address full
 * with the FAIL policy) fail it as retryable. Sends are pipelined within the sender's credit, one sender per type
 * address. A message not yet settled when the connection is lost is sent again on the next one (connection.ts),
 * so a publish either resolves with everything stored or fails at publishTimeoutMs (duplicates possible, no loss).
 */
import type { Connection, Delivery, EventContext, Message, Sender } from 'rhea';
import { BusError } from '../../errors.ts';
import type { FailoverConnection } from './connection.ts';

/** One publish() call: it ends once every message of it is settled (accepted, refused, or timed out). */
interface Batch {
  left: number;
  failure: Error | undefined;
  readonly end: (failure: Error | undefined) => void;
}

interface Outgoing {
  readonly address: string;
  readonly message: Message;
  readonly batch: Batch;
  /** The connection it was last written to; undefined while it waits for credit or a connection. */
  sentOn: Connection | undefined;
  done: boolean;
}

/** The message a rhea delivery carries, kept on the delivery itself (a WeakMap entry per message costs the GC more). */
const OUTGOING = Symbol('busbar.outgoing');
type Tracked = Delivery & { [OUTGOING]?: Outgoing };

interface SenderSlot {
  readonly sender: Sender;
  readonly waiting: Outgoing[];
}

export class Publisher {
  readonly #failover: FailoverConnection;
  readonly #timeoutMs: number;
  /** Every message not settled yet, in send order: what is sent again after a failover. */
  readonly #outstanding = new Set<Outgoing>();
  readonly #senders = new Map<string, SenderSlot>();
  #connection: Connection | undefined;

  /**
   * Makes sure the groups of an address exist on the current broker before a send reaches it (see index.ts);
   * undefined when they are known to exist there already (the common case: no promise to wait for).
   */
  readonly #prepare: (address: string) => Promise<void> | undefined;

  constructor(
    failover: FailoverConnection,
    timeoutMs: number,
    prepare: (address: string) => Promise<void> | undefined,
  ) {
    this.#failover = failover;
    this.#timeoutMs = timeoutMs;
    this.#prepare = prepare;
    failover.resendCount = () => this.#outstanding.size;
    failover.onOpen((connection) => void this.#resend(connection));
  }

  /**
   * Resolves once the broker accepted every message; rejects with a BusError otherwise, at the latest after
   * publishTimeoutMs (retryable), whatever the broker or the connection does meanwhile.
   */
  async send(address: string, messages: readonly Message[]): Promise<void> {
    if (messages.length === 0) return;
    let batch: Batch | undefined;
    let expire: ((error: BusError) => void) | undefined;
    const items: Outgoing[] = [];
    const done = new Promise<void>((resolve, reject) => {
      expire = reject;
      batch = {
        left: messages.length,
        failure: undefined,
        end: (failure) => (failure ? reject(failure) : resolve()),
      };
    });
    const timer = setTimeout(() => {
      const error = new BusError(
        'BUSBAR_ERR_PUBLISH',
        `the AMQP 1.0 broker did not accept every message to ${address} within ${this.#timeoutMs} ms; retry the send`,
        { retryable: true },
      );
      for (const item of items) this.#settle(item, error);
      expire!(error);
    }, this.#timeoutMs);
    try {
      // Bounded by the same deadline: carrying the groups to a broker goes through management requests.
      const preparing = this.#prepare(address);
      if (preparing) await Promise.race([preparing, done]);
      for (const message of messages) {
        const item: Outgoing = { address, message, batch: batch!, sentOn: undefined, done: false };
        items.push(item);
        this.#outstanding.add(item);
        this.#write(item);
      }
      await done;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Settles one message of its batch; the batch ends, with its first failure if any, once all are settled. */
  #settle(item: Outgoing, error?: Error): void {
    if (item.done) return;
    item.done = true;
    this.#outstanding.delete(item);
    const batch = item.batch;
    if (error && !batch.failure) batch.failure = error;
    if (--batch.left === 0) batch.end(batch.failure);
  }

  /** Writes the message now if there is a connection and credit, else queues it on its sender. */
  #write(item: Outgoing): void {
    const connection = this.#failover.current;
    if (!connection) return; // sent by #resend when a connection opens
    const slot = this.#slot(connection, item.address);
    if (slot.waiting.length > 0 || !slot.sender.sendable()) {
      slot.waiting.push(item);
      return;
    }
    this.#transmit(slot.sender, connection, item);
  }

  #transmit(sender: Sender, connection: Connection, item: Outgoing): void {
    item.sentOn = connection;
    (sender.send(item.message) as Tracked)[OUTGOING] = item;
  }

  #slot(connection: Connection, address: string): SenderSlot {
    if (this.#connection !== connection) {
      this.#connection = connection;
      this.#senders.clear();
    }
    let slot = this.#senders.get(address);
    if (slot) return slot;
    const sender = connection.open_sender({ target: { address }, autosettle: true });
    const made: SenderSlot = { sender, waiting: [] };
    slot = made;
    const flush = () => {
      while (made.waiting.length > 0 && sender.sendable()) {
        const item = made.waiting.shift()!;
        if (!item.done) this.#transmit(sender, connection, item);
      }
    };
    sender.on('sendable', flush);
    for (const outcome of ['accepted', 'rejected', 'released', 'modified'] as const) {
      sender.on(outcome, (context: EventContext) => {
        this.#settled(context, outcome);
        // rhea's 'sendable' comes with the broker's credit only; a full session buffer frees up on settlement.
        if (made.waiting.length > 0) flush();
      });
    }
    sender.on('sender_error', () => {
      const error = sender.error as { description?: string; condition?: string } | undefined;
      const why = error?.description ?? error?.condition ?? 'link closed';
      for (const item of this.#outstanding) {
        if (item.address === address && (item.sentOn === connection || made.waiting.includes(item))) {
          this.#settle(
            item,
            new BusError('BUSBAR_ERR_PUBLISH', `the AMQP 1.0 broker refused sends to ${address}: ${why}`),
          );
        }
      }
    });
    sender.on('sender_close', () => {
      if (this.#senders.get(address) === made) this.#senders.delete(address);
    });
    this.#senders.set(address, slot);
    return slot;
  }

  #settled(context: EventContext, outcome: 'accepted' | 'rejected' | 'released' | 'modified'): void {
    const delivery = context.delivery!;
    const item = (delivery as Tracked)[OUTGOING];
    if (!item) return;
    if (outcome === 'accepted') {
      this.#settle(item);
      return;
    }
    if (outcome === 'rejected') {
      const state = delivery.remote_state as { error?: { description?: string; condition?: string } } | undefined;
      const why = state?.error?.description ?? state?.error?.condition ?? 'no reason given';
      this.#settle(
        item,
        new BusError('BUSBAR_ERR_PUBLISH', `the AMQP 1.0 broker rejected a message to ${item.address}: ${why}`),
      );
      return;
    }
    this.#settle(
      item,
      new BusError(
        'BUSBAR_ERR_PUBLISH',
        `the AMQP 1.0 broker did not take a message to ${item.address} (${outcome}); retry the send`,
        { retryable: true },
      ),
    );
  }

  /** A new connection: every message not settled yet goes again, in its original order. */
  async #resend(connection: Connection): Promise<void> {
    const items = [...this.#outstanding].filter((item) => item.sentOn !== connection);
    for (const address of new Set(items.map((item) => item.address))) {
      await this.#prepare(address)?.catch(() => {});
    }
    if (this.#failover.current !== connection) return;
    for (const item of items) if (!item.done && item.sentOn !== connection) this.#write(item);
  }
}
