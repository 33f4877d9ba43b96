/**
 * Broker-confirmed settlement (docs/wire/amqp10.md, "Acknowledgement"). A plain `accepted` disposition is answered
 * by nothing: Artemis (2.55) answers a receiver's rcv-settle-mode `second` with `first`, and a delivery the consumer
 * accepts unsettled is never settled back, so an ack sent that way is confirmed by no frame at all. What Artemis
 * does answer is a transaction's discharge: its `accepted` comes once the commit is in the journal. So an ack is
 * `accepted` inside an AMQP 1.0 local transaction (a transactional-state disposition, settled), and resolves when
 * the transaction that carries it is discharged; the broker then will not deliver the message again, even after a
 * restart. A nack's `modified` goes outside any transaction, at once, and resolves with the next discharge: Artemis
 * handles a connection's frames in order, so by then it has returned the message.
 *
 * Coalescing: one open transaction per session takes every ack of an event-loop turn; the turn after (setImmediate,
 * so that rhea, which writes on process.nextTick, has sent the dispositions first: a discharge written before them
 * would end the transaction they name) discharges it and declares the next at once, so acks arriving meanwhile wait
 * for that declare only. Any number of discharges may be under way.
 */
import type { Connection, EventContext, Delivery as RheaDelivery, Sender, Session } from 'rhea';
import rhea from 'rhea';
import type { FailoverConnection } from './connection.ts';

/** rhea's encoder for described values, which its typings leave out. */
const types = rhea.types as unknown as {
  described(descriptor: unknown, value: unknown): unknown;
  wrap_ulong(n: number): unknown;
  wrap_list(items: unknown[]): unknown;
  wrap_binary(b: Buffer): unknown;
};

/** How long a declare or a discharge may go unanswered before the acks it carries fail. */
const ANSWER_TIMEOUT_MS = 30_000;
const TRANSACTIONAL_STATE = 0x34;
const COORDINATOR = 0x30;
const DECLARED = 0x33;

/** AMQP value section holding `declare` (0x31), no fields: the broker's global-id is left to it. */
export const DECLARE = Buffer.from([0x00, 0x53, 0x77, 0x00, 0x53, 0x31, 0x45]);

/** AMQP value section holding `discharge` (0x32): list8 of the txn-id (vbin8) and fail=false. */
export function discharge(id: Buffer): Buffer {
  const head = Buffer.from([0x00, 0x53, 0x77, 0x00, 0x53, 0x32, 0xc0, 4 + id.length, 2, 0xa0, id.length]);
  return Buffer.concat([head, id, Buffer.from([0x42])]);
}

/** The coordinator terminus (0x30), no capabilities: the target of the link that declares and discharges. */
export function coordinatorTarget(): unknown {
  return types.described(types.wrap_ulong(COORDINATOR), types.wrap_list([]));
}

/** The txn-id of a `declared` outcome (0x33), or undefined for any other outcome. */
export function declaredId(state: unknown): Buffer | undefined {
  const declared = state as Described | undefined;
  const id = declared?.descriptor?.value === DECLARED ? declared.value?.[0]?.value : undefined;
  return Buffer.isBuffer(id) ? id : undefined;
}

/** `transactional-state` (0x34) with outcome `accepted`: a delivery's disposition that accepts it in transaction `id`. */
export function acceptedIn(id: Buffer): unknown {
  const accepted = (rhea.message as unknown as { accepted(): { described(): unknown } }).accepted().described();
  return types.described(types.wrap_ulong(TRANSACTIONAL_STATE), types.wrap_list([types.wrap_binary(id), accepted]));
}

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
}

interface Batch {
  readonly id: Buffer;
  /** One state object per transaction: consecutive acks in it go out as one disposition frame (dispositions.ts). */
  readonly state: unknown;
  readonly waiters: Waiter[];
}

interface Described {
  descriptor?: { value?: unknown };
  value?: Array<{ value?: unknown }>;
}

export class AckTransactions {
  readonly #failover: FailoverConnection;
  readonly #connection: Connection;
  readonly #coordinator: Sender;
  /** Answers awaited on the coordinator link, by delivery. */
  readonly #answers = new Map<RheaDelivery, (state: unknown) => void>();
  /** The transaction taking acks; undefined while the next one is being declared. */
  #batch: Batch | undefined;
  /** Work that waits for the next transaction's id. */
  #pending: Array<{ run: (batch: Batch) => void; fail: (error: Error) => void }> = [];
  /** Every confirmation not answered yet: what drain() waits for. */
  readonly #unanswered = new Set<Promise<void>>();
  #scheduled = false;
  #declaring = false;
  /** Set once the connection is gone: every later ack fails at once (the broker returns the messages). */
  #broken: Error | undefined;

  constructor(failover: FailoverConnection, connection: Connection, session: Session) {
    this.#failover = failover;
    this.#connection = connection;
    // Made by hand, not with open_sender, which would wrap the target in rhea's own terminus type.
    const coordinator = (session as unknown as { create_sender(name: string, options: object): Sender }).create_sender(
      `txn-${Math.random().toString(36).slice(2, 10)}`,
      {},
    );
    // rhea knows no coordinator terminus (0x30): the attach carries it as a described list of its own.
    (coordinator as unknown as { local: { attach: { target: unknown } } }).local.attach.target = coordinatorTarget();
    coordinator.on('settled', (context: EventContext) => {
      const delivery = context.delivery!;
      const answer = this.#answers.get(delivery);
      this.#answers.delete(delivery);
      answer?.(delivery.remote_state);
    });
    (coordinator as unknown as { attach(): void }).attach();
    this.#coordinator = coordinator;
    this.#declare();
  }

  /** Accepts `delivery` in the open transaction; resolves once the broker committed it. */
  accept(delivery: RheaDelivery): Promise<void> {
    return this.#join((batch) => {
      (delivery as unknown as { update(settled: boolean, state: unknown): void }).update(true, batch.state);
    });
  }

  /** Resolves once the broker answered a discharge sent after this call: it has handled every earlier frame. */
  confirm(): Promise<void> {
    return this.#join(() => {});
  }

  /** Waits (bounded) until every confirmation asked for is answered or failed: before closing the links. */
  async drain(): Promise<void> {
    while (this.#unanswered.size > 0) await Promise.allSettled([...this.#unanswered]);
  }

  #join(apply: (batch: Batch) => void): Promise<void> {
    const confirmed = new Promise<void>((resolve, reject) => {
      if (this.#broken) {
        reject(this.#broken);
        return;
      }
      const run = (batch: Batch) => {
        apply(batch);
        batch.waiters.push({ resolve, reject });
        this.#schedule();
      };
      if (this.#batch) run(this.#batch);
      else {
        this.#pending.push({ run, fail: reject });
        // A declare that failed on a connection still up (no answer in time) is tried again by the next ack.
        if (!this.#declaring) this.#declare();
      }
    });
    this.#unanswered.add(confirmed);
    const forget = () => this.#unanswered.delete(confirmed);
    confirmed.then(forget, forget);
    return confirmed;
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      const batch = this.#batch;
      if (!batch || batch.waiters.length === 0) return;
      this.#batch = undefined;
      this.#declare();
      this.#discharge(batch);
    });
  }

  #declare(): void {
    this.#declaring = true;
    this.#ask(DECLARE, 'declaring a transaction').then(
      (state) => {
        this.#declaring = false;
        const id = declaredId(state);
        if (!id) {
          this.#fail(new Error(`the broker did not declare a transaction (${describe(state)})`));
          return;
        }
        const batch: Batch = { id, state: acceptedIn(id), waiters: [] };
        this.#batch = batch;
        const pending = this.#pending;
        this.#pending = [];
        for (const work of pending) work.run(batch);
      },
      (error: Error) => this.#fail(error),
    );
  }

  #discharge(batch: Batch): void {
    this.#ask(discharge(batch.id), 'committing acks').then(
      (state) => {
        const outcome = state as { constructor?: { composite_type?: string }; error?: { description?: string } };
        if (outcome?.constructor?.composite_type === 'accepted') {
          for (const waiter of batch.waiters) waiter.resolve();
          return;
        }
        const why = outcome?.error?.description ?? describe(state);
        const error = new Error(`the broker did not commit the transaction (${why})`);
        for (const waiter of batch.waiters) waiter.reject(error);
      },
      (error: Error) => {
        for (const waiter of batch.waiters) waiter.reject(error);
      },
    );
  }

  /** Sends one coordinator message and resolves with the broker's outcome for it (bounded; ends on a lost link). */
  #ask(body: Buffer, what: string): Promise<unknown> {
    return this.#failover.waitOn<unknown>(this.#connection, Date.now() + ANSWER_TIMEOUT_MS, what, (ok, fail) => {
      const delivery = this.#coordinator.send(body, undefined, 0);
      this.#answers.set(delivery, ok);
      const closed = () => {
        const error = this.#coordinator.error as { description?: string; condition?: string } | undefined;
        fail(new Error(error?.description ?? error?.condition ?? 'the broker closed the transaction coordinator'));
      };
      this.#coordinator.once('sender_close', closed);
      return () => {
        this.#answers.delete(delivery);
        this.#coordinator.off('sender_close', closed);
      };
    });
  }

  /** No transaction was declared: what waits for one fails; on a lost connection, so does everything after. */
  #fail(error: Error): void {
    this.#declaring = false;
    if (this.#failover.current !== this.#connection || this.#failover.closed) this.#broken = error;
    const pending = this.#pending;
    this.#pending = [];
    for (const work of pending) work.fail(error);
  }
}

function describe(state: unknown): string {
  try {
    return JSON.stringify(state) ?? 'no outcome';
  } catch {
    return String(state);
  }
}
