/**
 * Consumer groups kept in this process: ZeroMQ has no broker to hold a group's messages, so each transport keeps,
 * per type and group, the messages its SUB socket received since the group was first opened here, and shares them
 * out between the group's members in this process (leases, ack timeout, nack delay, redelivery on close), as the
 * memory broker does. The buffer is bounded: beyond `limit` messages a group drops its oldest waiting message and
 * counts it (GroupStats.dropped), so a slow or absent consumer costs memory up to the bound, never more, and never
 * slows the socket (which would push back on the publishers).
 */
import type { Delivery, GroupStats, NackOptions, TransportMessage } from '../../transport/contract.ts';

/** One subscription's membership in one group of one type. */
export interface Member {
  readonly prefetch: number;
  readonly ackTimeoutMs: number;
  /** Deliveries handed to this member and not yet settled (expired leases excepted). */
  outstanding: number;
  deliver(delivery: Delivery): void;
}

/**
 * A FIFO whose shift() is O(1): Array#shift moves every element once the array is large, which made a group with a
 * backlog quadratic. Returned messages go to the front (rare: nack, close, lease end).
 */
class Fifo<T> {
  #items: T[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head]!;
    this.#items[this.#head++] = undefined as T;
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  unshift(...items: T[]): void {
    if (items.length === 0) return;
    if (this.#head >= items.length) {
      this.#head -= items.length;
      for (let i = 0; i < items.length; i++) this.#items[this.#head + i] = items[i]!;
    } else this.#items.splice(this.#head, 0, ...items);
  }

  *[Symbol.iterator](): Iterator<T> {
    for (let i = this.#head; i < this.#items.length; i++) yield this.#items[i]!;
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}

/** The longest delay setTimeout keeps; a later deadline is checked again when this timer fires. */
const MAX_TIMER_MS = 2_147_483_647;

interface Entry {
  readonly message: TransportMessage;
  readonly receivedMs: number;
  attempt: number;
  holder: Member | undefined;
  leaseUntil: number;
  /** Changes on every lease and return: a settle from an older lease is recognised and ignored. */
  token: number;
  /** The current lease's holder still counts it in its `outstanding` (until it is settled, returned or expires). */
  holdsSlot: boolean;
  /** Acked by a holder whose lease had ended: dropped instead of delivered again. */
  acked: boolean;
}

export class LocalGroup {
  readonly type: string;
  readonly name: string;
  readonly #limit: number;
  /** Waiting to be delivered, oldest first; returned messages go to the front. */
  readonly #ready = new Fifo<Entry>();
  readonly #leased = new Set<Entry>();
  /**
   * Per-key order: the one entry of each key that is out (leased, delayed, or returned and waiting to go out again)
   * owns its key until it is acked; later entries of the key wait in #waiting, in arrival order, until then.
   */
  readonly #owners = new Map<string, Entry>();
  readonly #waiting = new Map<string, Entry[]>();
  #waitingCount = 0;
  /** Nacked with a delay: back in #ready when the delay ends. */
  readonly #delayed = new Map<Entry, NodeJS.Timeout>();
  readonly #members = new Set<Member>();
  /** #members as an array for round-robin, rebuilt only on join and leave (dispatch runs for every message). */
  #memberList: Member[] = [];
  #roundRobin = 0;
  #token = 0;
  #dropped = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #closed = false;
  #armed = false;
  /** Resolves once the group is armed (see arm()): a member's `ready`. */
  armed: Promise<void> = Promise.resolve();

  constructor(type: string, name: string, limit: number) {
    this.type = type;
    this.name = name;
    this.#limit = limit;
  }

  /**
   * A new group takes messages only once armed: when its subscription is known to be in place (subscriber.ts), so
   * a message published before the group's `ready` never reaches it (offset `latest`; ZeroMQ cannot replay).
   */
  arm(): void {
    this.#armed = true;
  }

  /** A message the SUB socket received for this group's type. */
  offer(message: TransportMessage): void {
    if (this.#closed || !this.#armed) return;
    this.#ready.push({
      message,
      receivedMs: Date.now(),
      attempt: 0,
      holder: undefined,
      leaseUntil: 0,
      token: 0,
      holdsSlot: false,
      acked: false,
    });
    if (this.#held() > this.#limit) {
      // The oldest waiting message goes; leased ones stay with their holders.
      this.#release(this.#ready.shift()!);
      this.#dropped++;
    }
    this.#dispatch();
  }

  join(member: Member): void {
    this.#members.add(member);
    this.#memberList = [...this.#members];
    this.#dispatch();
  }

  /** Removes the member; its unsettled deliveries return to the group at once, ahead of newer messages. */
  leave(member: Member): void {
    this.#members.delete(member);
    this.#memberList = [...this.#members];
    const back = [...this.#leased].filter((entry) => entry.holder === member);
    for (const entry of back) this.#return(entry);
    this.#ready.unshift(...back);
    this.#dispatch();
  }

  get memberCount(): number {
    return this.#members.size;
  }

  #held(): number {
    return this.#ready.length + this.#leased.size + this.#delayed.size + this.#waitingCount;
  }

  #return(entry: Entry): void {
    this.#leased.delete(entry);
    if (entry.holdsSlot) {
      entry.holdsSlot = false;
      entry.holder!.outstanding--;
    }
    entry.holder = undefined;
    entry.leaseUntil = 0;
    entry.token = ++this.#token;
  }

  #dispatch(): void {
    if (this.#ready.length === 0 || this.#members.size === 0) return;
    const members = this.#memberList;
    // Round-robin between members with capacity, one delivery at a time.
    for (let idle = 0; idle < members.length && this.#ready.length > 0; ) {
      const member = members[this.#roundRobin++ % members.length]!;
      if (member.outstanding >= member.prefetch) {
        idle++;
        continue;
      }
      const entry = this.#ready.shift()!;
      if (entry.acked) {
        this.#release(entry); // acked late by an earlier holder, after its lease had ended
        continue;
      }
      const key = entry.message.key;
      if (key !== undefined) {
        const owner = this.#owners.get(key);
        if (owner !== undefined && owner !== entry) {
          const queue = this.#waiting.get(key);
          if (queue) queue.push(entry);
          else this.#waiting.set(key, [entry]);
          this.#waitingCount++;
          continue;
        }
        this.#owners.set(key, entry);
      }
      idle = 0;
      this.#lease(entry, member);
    }
  }

  #lease(entry: Entry, member: Member): void {
    const now = Date.now();
    entry.attempt++;
    entry.holder = member;
    entry.leaseUntil = now + member.ackTimeoutMs;
    entry.token = ++this.#token;
    entry.holdsSlot = true;
    this.#leased.add(entry);
    member.outstanding++;
    this.#schedule(entry.leaseUntil);
    // A Lease, not closures: this runs for every message, and a class's methods cost no allocation per delivery.
    member.deliver(new Lease(this, entry));
  }

  /** A lease's ack or nack (once per lease; see Lease). */
  settle(entry: Entry, token: number, ack: boolean, delayMs: number): void {
    if (this.#closed) return;
    if (entry.token !== token) {
      // The lease ended and the message is back in the group (or with another member). A late ack still counts
      // (the group drops the message when it comes up again); a late nack is no longer this delivery's to make.
      if (ack) entry.acked = true;
      return;
    }
    this.#return(entry);
    if (ack || entry.acked) this.#release(entry);
    else {
      if (delayMs > 0) {
        const timer = setTimeout(() => {
          this.#delayed.delete(entry);
          this.#ready.unshift(entry);
          this.#dispatch();
        }, delayMs);
        timer.unref();
        this.#delayed.set(entry, timer);
      } else this.#ready.unshift(entry);
    }
    this.#dispatch();
  }

  /** A message leaves the group (acked or dropped): the next of its key, if any, may go out. */
  #release(entry: Entry): void {
    const key = entry.message.key;
    if (key === undefined || this.#owners.get(key) !== entry) return;
    this.#owners.delete(key);
    const queue = this.#waiting.get(key);
    if (!queue) return;
    const next = queue.shift()!;
    this.#waitingCount--;
    if (queue.length === 0) this.#waiting.delete(key);
    this.#ready.unshift(next);
  }

  /** One timer for the earliest lease end, set when a lease is made. */
  #schedule(at: number): void {
    if (at >= this.#timerAt || this.#closed) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#expire(), Math.min(MAX_TIMER_MS, Math.max(1, at - Date.now() + 1)));
    this.#timer.unref();
  }

  /** Returns expired leases to the group (their holders get the prefetch slot back: contract rule 3). */
  #expire(): void {
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    const expired: Entry[] = [];
    for (const entry of this.#leased) {
      if (entry.leaseUntil <= now) expired.push(entry);
      else next = Math.min(next, entry.leaseUntil);
    }
    for (const entry of expired) this.#return(entry);
    this.#ready.unshift(...expired);
    if (next < Number.POSITIVE_INFINITY) this.#schedule(next);
    this.#dispatch();
  }

  stats(): GroupStats {
    const now = Date.now();
    let oldest = Number.POSITIVE_INFINITY;
    for (const entry of this.#ready) oldest = Math.min(oldest, entry.receivedMs);
    for (const entry of this.#leased) oldest = Math.min(oldest, entry.receivedMs);
    for (const entry of this.#delayed.keys()) oldest = Math.min(oldest, entry.receivedMs);
    for (const queue of this.#waiting.values()) oldest = Math.min(oldest, queue[0]!.receivedMs);
    let inflight = 0;
    for (const entry of this.#leased) if (entry.leaseUntil > now) inflight++;
    return {
      group: this.name,
      unread: this.#held(),
      inflight,
      oldestAgeMs: oldest === Number.POSITIVE_INFINITY ? null : now - oldest,
      dropped: this.#dropped,
    };
  }

  /** Forgets every message (the type was deleted or the transport closed). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const timer of this.#delayed.values()) clearTimeout(timer);
    this.#delayed.clear();
    this.#ready.clear();
    this.#leased.clear();
    this.#owners.clear();
    this.#waiting.clear();
    this.#waitingCount = 0;
  }
}

/** One delivery of an entry: settles at most once, and only while its lease is the entry's current one. */
class Lease implements Delivery {
  readonly message: TransportMessage;
  readonly attempt: number;
  readonly leaseUntil: number;
  readonly #group: LocalGroup;
  readonly #entry: Entry;
  readonly #token: number;
  #settled = false;

  constructor(group: LocalGroup, entry: Entry) {
    this.message = entry.message;
    this.attempt = entry.attempt;
    this.leaseUntil = entry.leaseUntil;
    this.#group = group;
    this.#entry = entry;
    this.#token = entry.token;
  }

  async ack(): Promise<void> {
    this.#settle(true, 0);
  }

  async nack(options?: NackOptions): Promise<void> {
    this.#settle(false, Math.max(0, options?.delayMs ?? 0));
  }

  #settle(ack: boolean, delayMs: number): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#group.settle(this.#entry, this.#token, ack, delayMs);
  }
}
