/**
 * A consumer's session, with an incoming window that counts the deliveries it holds. rhea keeps a session's incoming
 * deliveries in a circular buffer in arrival order (2,048 slots by default) and frees a slot only once the delivery
 * and every earlier one are settled (lib/session.js, `Incoming.process` pops settled ones from the head); the
 * session's incoming window is its free slots. So a consumer that held one delivery while it acked those after it
 * ran the window down to 0 after 2,048 deliveries, whatever its prefetch, and the broker sent it nothing more until
 * the held one was settled (by its ack timeout, if nothing else): a stall. A consumer holding more than 2,048 at
 * once stalled for good.
 *
 * Here the buffer has room for the session's credit plus rhea's 2,048, and is swapped for one keyed by delivery id
 * that frees each delivery as soon as it is settled, in any order: the window is that room less the deliveries held,
 * which the credit bounds, so it never closes. rhea uses the buffer only through `push`, `by_id`, `pop_if` and
 * `available` (the window); its class is not exported, so the buffer is reached through the session, like the patch
 * in dispositions.ts.
 */
import type { Connection, Session } from 'rhea';

/** rhea's default session buffer: kept as room above the credit, for deliveries whose ack waits for its transaction. */
export const WINDOW_SLACK = 2048;
/** The session window is an AMQP uint. */
export const MAX_WINDOW = 2 ** 32 - 1;

interface IncomingDelivery {
  readonly id: number;
  settled: boolean;
}

interface Incoming {
  deliveries: unknown;
  update(delivery: IncomingDelivery | undefined, settled: boolean, state: unknown): void;
}

/** Unsettled deliveries by id; each leaves on its `pop_if` after it was settled, in whatever order. */
class HeldDeliveries {
  readonly #capacity: number;
  readonly #held = new Map<number, IncomingDelivery>();
  /** Deliveries settled since the last `pop_if`: it checks these only, not every delivery held. */
  #settled: IncomingDelivery[] = [];

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  available(): number {
    return this.#capacity - this.#held.size;
  }

  push(delivery: IncomingDelivery): void {
    // As rhea's buffer: the broker sent past the window it was given.
    if (this.#held.size >= this.#capacity) throw new Error(`session window overflow: ${this.#capacity} held`);
    this.#held.set(delivery.id, delivery);
  }

  by_id(id: number): IncomingDelivery | undefined {
    return this.#held.get(id);
  }

  settled(delivery: IncomingDelivery): void {
    this.#settled.push(delivery);
  }

  pop_if(leaves: (delivery: IncomingDelivery) => boolean): number {
    const settled = this.#settled;
    this.#settled = [];
    let count = 0;
    for (const delivery of settled) {
      if (this.#held.get(delivery.id) !== delivery) continue; // settled twice: already gone
      if (leaves(delivery)) {
        this.#held.delete(delivery.id);
        count++;
      } else this.#settled.push(delivery);
    }
    return count;
  }
}

/** Creates (does not begin) a session whose window has room for `credit` held deliveries and never closes. */
export function consumerSession(connection: Connection, credit: number): Session {
  const capacity = Math.min(MAX_WINDOW, credit + WINDOW_SLACK);
  const session = connection.create_session({ incoming: capacity });
  const incoming = (session as unknown as { incoming?: Incoming }).incoming;
  if (!incoming || typeof incoming.update !== 'function') return session;
  const held = new HeldDeliveries(capacity);
  incoming.deliveries = held;
  const update = incoming.update;
  incoming.update = function (this: Incoming, delivery, settled, state) {
    update.call(this, delivery, settled, state);
    if (delivery?.settled) held.settled(delivery);
  };
  return session;
}
