/**
 * The in-memory broker: the reference semantics of the contract (groups, leases with ack timeout, nack delay,
 * per-key order, retention, stats) with nothing on disk. embedded implements the same rules in SQLite.
 */
import { BusError } from '../../errors.ts';
import type {
  Delivery,
  GroupStats,
  Offset,
  PeekedMessage,
  PeekOptions,
  Retention,
  TransportMessage,
  TypeInfo,
  TypeStats,
} from '../../transport/contract.ts';
import { checkBatch, checkPartitionCount, checkRetention, partitionsCannotShrink } from '../../transport/rules.ts';

export const DEFAULT_RETENTION: Retention = { maxAgeMs: 7 * 24 * 3600 * 1000 };

interface Stored {
  seq: number;
  message: TransportMessage;
  publishedMs: number;
}

interface Pending {
  stored: Stored;
  attempt: number;
  /** 0 = ready to deliver (subject to notBefore). */
  leaseUntil: number;
  notBefore: number;
  holder: Member | undefined;
  token: number;
  /** Frees the prefetch slot the current lease holds (once). */
  freeSlot?: (() => void) | undefined;
}

interface Group {
  name: string;
  /** The next sequence number never delivered to this group. */
  cursor: number;
  pending: Map<number, Pending>;
  /** Pending entries not under a lease: returned, nacked, or waiting for their key. Leased ones join on expiry. */
  ready: Set<Pending>;
  /** Per key, the sequence numbers pending in order: only the first may be delivered (per-key order). */
  keys: Map<string, number[]>;
  members: Set<Member>;
  roundRobin: number;
}

interface Topic {
  name: string;
  partitions: number;
  retention: Retention;
  log: Stored[];
  nextSeq: number;
  bytes: number;
  groups: Map<string, Group>;
}

/** One subscription's membership in one group of one type. */
export interface Member {
  readonly prefetch: number;
  readonly ackTimeoutMs: number;
  /** Deliveries handed to this member and not yet settled. */
  outstanding: number;
  deliver(delivery: Delivery): void;
}

export class MemoryBroker {
  readonly #topics = new Map<string, Topic>();
  #token = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;

  #topic(type: string, create = true): Topic | undefined {
    let topic = this.#topics.get(type);
    if (!topic && create) {
      topic = {
        name: type,
        partitions: 1,
        retention: { ...DEFAULT_RETENTION },
        log: [],
        nextSeq: 1,
        bytes: 0,
        groups: new Map(),
      };
      this.#topics.set(type, topic);
    }
    return topic;
  }

  publish(type: string, batch: readonly TransportMessage[]): void {
    checkBatch(batch);
    const topic = this.#topic(type)!;
    const now = Date.now();
    for (const message of batch) {
      topic.log.push({ seq: topic.nextSeq++, message, publishedMs: now });
      topic.bytes += message.body.byteLength;
    }
    this.#trim(topic, now);
    this.#dispatch(topic);
  }

  join(type: string, groupName: string, offset: Offset, member: Member): void {
    const topic = this.#topic(type)!;
    this.#group(topic, groupName, offset).members.add(member);
    this.#dispatch(topic);
  }

  /** Creates the group without a member (admin.ensureGroup); an existing one is left as it is. */
  ensureGroup(type: string, groupName: string, offset: Offset): void {
    this.#group(this.#topic(type)!, groupName, offset);
  }

  #group(topic: Topic, groupName: string, offset: Offset): Group {
    let group = topic.groups.get(groupName);
    if (!group) {
      const cursor = offset === 'latest' ? topic.nextSeq : (topic.log[0]?.seq ?? topic.nextSeq);
      group = {
        name: groupName,
        cursor,
        pending: new Map(),
        ready: new Set(),
        keys: new Map(),
        members: new Set(),
        roundRobin: 0,
      };
      topic.groups.set(groupName, group);
    }
    return group;
  }

  /** Removes the member and returns its unsettled deliveries to the group at once. */
  leave(type: string, groupName: string, member: Member): void {
    const topic = this.#topics.get(type);
    const group = topic?.groups.get(groupName);
    if (!topic || !group) return;
    group.members.delete(member);
    for (const entry of group.pending.values()) {
      if (entry.holder === member) {
        entry.holder = undefined;
        entry.leaseUntil = 0;
        entry.token = ++this.#token;
        group.ready.add(entry);
      }
    }
    this.#dispatch(topic);
  }

  /** A member gained capacity (it settled a delivery). */
  wake(type: string): void {
    const topic = this.#topics.get(type);
    if (topic) this.#dispatch(topic);
  }

  #dispatch(topic: Topic): void {
    const now = Date.now();
    for (const group of topic.groups.values()) {
      const members = [...group.members].filter((m) => m.outstanding < m.prefetch);
      if (members.length === 0) continue;
      // Round-robin between members with capacity, one delivery at a time, until nothing more can be delivered.
      // The turn moves on only past a member that got one or is full: the next message goes to the next member.
      for (let idle = 0; idle < members.length; ) {
        const member = members[group.roundRobin % members.length]!;
        if (member.outstanding >= member.prefetch) {
          group.roundRobin++;
          idle++;
          continue;
        }
        const entry = this.#claim(topic, group, now);
        if (!entry) break;
        group.roundRobin++;
        idle = 0;
        this.#lease(topic, group, entry, member, now);
      }
    }
  }

  #deliverable(group: Group, entry: Pending, now: number): boolean {
    if (entry.leaseUntil > now || entry.notBefore > now) return false;
    const key = entry.stored.message.key;
    return key === undefined || group.keys.get(key)?.[0] === entry.stored.seq;
  }

  /** The next message for the group: a returned one first, else the next new one whose key is free. */
  #claim(topic: Topic, group: Group, now: number): Pending | undefined {
    for (const entry of group.ready) {
      if (this.#deliverable(group, entry, now)) {
        group.ready.delete(entry);
        return entry;
      }
    }
    while (group.cursor < topic.nextSeq) {
      const stored = topic.log[group.cursor - (topic.log[0]?.seq ?? topic.nextSeq)];
      group.cursor++;
      if (!stored) continue;
      const entry: Pending = { stored, attempt: 0, leaseUntil: 0, notBefore: 0, holder: undefined, token: 0 };
      group.pending.set(stored.seq, entry);
      const key = stored.message.key;
      if (key !== undefined) {
        const queue = group.keys.get(key);
        if (queue) queue.push(stored.seq);
        else group.keys.set(key, [stored.seq]);
      }
      if (this.#deliverable(group, entry, now)) return entry;
      group.ready.add(entry);
    }
    return undefined;
  }

  #lease(topic: Topic, group: Group, entry: Pending, member: Member, now: number): void {
    entry.attempt++;
    entry.leaseUntil = now + member.ackTimeoutMs;
    entry.holder = member;
    const token = ++this.#token;
    entry.token = token;
    member.outstanding++;
    this.#schedule(entry.leaseUntil);
    // The lease holds one of the member's prefetch slots until it is settled or expires, whichever comes first.
    let holdsSlot = true;
    const freeSlot = () => {
      if (!holdsSlot) return;
      holdsSlot = false;
      member.outstanding--;
    };
    entry.freeSlot = freeSlot;
    let settled = false;
    const settle = (ack: boolean, delayMs = 0) => {
      if (settled) return;
      settled = true;
      if (entry.holder === member && entry.token === token) entry.holder = undefined;
      freeSlot();
      const current = group.pending.get(entry.stored.seq);
      // A lease that expired and went to another member is no longer ours to nack; an ack still completes it.
      if (current === entry && (ack || entry.token === token)) {
        if (ack) this.#complete(group, entry);
        else {
          entry.leaseUntil = 0;
          entry.notBefore = Date.now() + delayMs;
          entry.token = ++this.#token;
          group.ready.add(entry);
          if (delayMs > 0) this.#schedule(entry.notBefore);
        }
      }
      this.#dispatch(topic);
    };
    member.deliver({
      message: entry.stored.message,
      attempt: entry.attempt,
      leaseUntil: entry.leaseUntil,
      ack: async () => settle(true),
      nack: async (options) => settle(false, Math.max(0, options?.delayMs ?? 0)),
    });
  }

  #complete(group: Group, entry: Pending): void {
    group.pending.delete(entry.stored.seq);
    group.ready.delete(entry);
    const key = entry.stored.message.key;
    if (key === undefined) return;
    const queue = group.keys.get(key);
    if (!queue) return;
    const index = queue.indexOf(entry.stored.seq);
    if (index >= 0) queue.splice(index, 1);
    if (queue.length === 0) group.keys.delete(key);
  }

  /** One timer for the earliest lease expiry or nack delay: set when a deadline is made, not by scanning. */
  #schedule(at: number): void {
    if (at >= this.#timerAt) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#expire(), Math.max(1, at - Date.now() + 1));
    this.#timer.unref();
  }

  /** Returns expired leases to their groups, delivers what became due, and arms the timer for the next deadline. */
  #expire(): void {
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    for (const topic of this.#topics.values()) {
      for (const group of topic.groups.values()) {
        for (const entry of group.pending.values()) {
          if (entry.leaseUntil > now) next = Math.min(next, entry.leaseUntil);
          else if (entry.leaseUntil > 0) {
            // Expired: the group has it back and its holder has the slot back (contract rule 3).
            entry.freeSlot?.();
            entry.holder = undefined;
            entry.leaseUntil = 0;
            group.ready.add(entry);
          } else if (entry.notBefore > now) next = Math.min(next, entry.notBefore);
        }
      }
      this.#dispatch(topic);
    }
    if (next < Number.POSITIVE_INFINITY) this.#schedule(next);
  }

  #trim(topic: Topic, now: number): void {
    const { maxAgeMs, maxBytes } = topic.retention;
    let removed = 0;
    while (topic.log.length > removed) {
      const head = topic.log[removed]!;
      const tooOld = maxAgeMs !== undefined && now - head.publishedMs > maxAgeMs;
      const tooBig = maxBytes !== undefined && topic.bytes > maxBytes;
      if (!tooOld && !tooBig) break;
      topic.bytes -= head.message.body.byteLength;
      removed++;
    }
    if (removed === 0) return;
    topic.log.splice(0, removed);
    this.#dropBefore(topic, topic.log[0]?.seq ?? topic.nextSeq);
  }

  /** Forgets group state for messages that are no longer stored. */
  #dropBefore(topic: Topic, firstSeq: number): void {
    for (const group of topic.groups.values()) {
      if (group.cursor < firstSeq) group.cursor = firstSeq;
      for (const entry of [...group.pending.values()]) {
        if (entry.stored.seq < firstSeq) this.#complete(group, entry);
      }
    }
  }

  ensureType(type: string, partitions?: number): void {
    const existed = this.#topics.has(type);
    const topic = this.#topic(type)!;
    if (!existed && partitions !== undefined) topic.partitions = checkPartitionCount(type, partitions);
  }

  deleteType(type: string): void {
    const topic = this.#topics.get(type);
    if (!topic) return;
    this.#topics.delete(type);
    topic.log = [];
    for (const group of topic.groups.values()) group.pending.clear();
  }

  listTypes(): TypeInfo[] {
    return [...this.#topics.values()].map((t) => ({
      type: t.name,
      partitions: t.partitions,
      retention: { ...t.retention },
    }));
  }

  setPartitions(type: string, partitions: number): void {
    const topic = this.#known(type);
    checkPartitionCount(type, partitions);
    if (partitions < topic.partitions) throw partitionsCannotShrink(type, topic.partitions, partitions);
    topic.partitions = partitions;
  }

  setRetention(type: string, retention: Retention): void {
    const topic = this.#known(type);
    topic.retention = { ...topic.retention, ...checkRetention(retention) };
    this.#trim(topic, Date.now());
  }

  purge(type: string): void {
    const topic = this.#topics.get(type);
    if (!topic) return;
    topic.log = [];
    topic.bytes = 0;
    this.#dropBefore(topic, topic.nextSeq);
  }

  peek(type: string, options: PeekOptions): PeekedMessage[] {
    const topic = this.#topic(type, false);
    if (!topic) return [];
    const from = options.from === undefined ? 0 : Number(options.from);
    const out: PeekedMessage[] = [];
    for (const stored of topic.log) {
      if (out.length >= options.count) break;
      if (stored.seq < from || (options.fromTime !== undefined && stored.publishedMs < options.fromTime)) continue;
      out.push({ position: String(stored.seq), storedAt: stored.publishedMs, message: stored.message });
    }
    return out;
  }

  stats(type?: string): TypeStats[] {
    const topics =
      type === undefined ? [...this.#topics.values()] : [this.#topics.get(type)].filter((t) => t !== undefined);
    const now = Date.now();
    return topics.map((topic) => ({
      type: topic.name,
      depth: topic.log.length,
      bytes: topic.bytes,
      partitions: topic.partitions,
      groups: [...topic.groups.values()].map((group): GroupStats => {
        const firstSeq = topic.log[0]?.seq ?? topic.nextSeq;
        let inflight = 0;
        let oldest = Number.POSITIVE_INFINITY;
        for (const entry of group.pending.values()) {
          if (entry.leaseUntil > now) inflight++;
          oldest = Math.min(oldest, entry.stored.publishedMs);
        }
        const unreadNew = topic.nextSeq - Math.max(group.cursor, firstSeq);
        if (unreadNew > 0)
          oldest = Math.min(oldest, topic.log[Math.max(group.cursor, firstSeq) - firstSeq]!.publishedMs);
        return {
          group: group.name,
          unread: unreadNew + group.pending.size,
          inflight,
          oldestAgeMs: oldest === Number.POSITIVE_INFINITY ? null : now - oldest,
          consumers: group.members.size,
        };
      }),
    }));
  }

  #known(type: string): Topic {
    const topic = this.#topics.get(type);
    if (!topic) {
      throw new BusError(
        'BUSBAR_ERR_UNKNOWN_TYPE',
        `message type '${type}' does not exist: register it first (admin.registerMessageType)`,
      );
    }
    return topic;
  }

  close(): void {
    clearTimeout(this.#timer);
  }
}
