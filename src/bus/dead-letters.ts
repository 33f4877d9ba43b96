/**
 * Dead-letter operations, the same on every transport: list (with the reason, attempts, original type and group),
 * redrive one, a selection or all back to the original type, and purge. They are written against the transport
 * contract only: the dead letters of `<type>.dlq` are those its DEAD_LETTER_GROUP has not acked. Listing leases them
 * and gives them back unacked (closing the subscription returns them at once, contract rule 1); a redrive publishes
 * each to its original type (a new id; the old one in busbar-redriven-from) and then acks it (publish first: a crash
 * in between duplicates, never loses).
 */
import { randomUUID } from 'node:crypto';
import { BusError, checkTypeName } from '../errors.ts';
import { DEAD_LETTER_HEADERS } from '../message/envelope.ts';
import type { Delivery, Transport, TransportMessage } from '../transport/contract.ts';
import { uuidv7 } from '../transport/uuid.ts';
import { DEAD_LETTER_GROUP } from './dead-letter.ts';
import { describeTypes } from './describe-types.ts';
import { deadLetterTypeOf } from './options.ts';

/** One dead letter as the operations show it. */
export interface DeadLetter {
  readonly id: string;
  /** The type it was published to first, where a redrive sends it back. */
  readonly originalType: string;
  /** The consumer group that gave up on it. */
  readonly group: string | undefined;
  readonly reason: string | undefined;
  /** How often it had been delivered when it was dead-lettered. */
  readonly attempts: number | undefined;
  /** When it was dead-lettered (RFC 3339). */
  readonly deadLetteredAt: string | undefined;
  /** The message as it was sent: its type is the original type, its headers without busbar-dlq-*. */
  readonly message: TransportMessage;
}

export interface DeadLetterReadOptions {
  /** At most this many dead letters (a whole number from 1 to 10000). Default 100. */
  limit?: number;
  /**
   * How long to wait for one more dead letter before deciding there are no more (ms). The count the broker reports
   * ends the read sooner where it can tell (capability `lag`). Default 1000.
   */
  idleMs?: number;
}

export interface RedriveOptions extends DeadLetterReadOptions {
  /** Redrive only these dead letters (by message id); all of them when absent. */
  ids?: readonly string[];
}

/** Header a redriven message carries: the id it had as a dead letter (and when it was first sent). */
export const REDRIVEN_FROM_HEADER = 'busbar-redriven-from';

export interface RedriveResult {
  /** Ids of the dead letters sent back to their original types, in order. */
  readonly redriven: string[];
  /**
   * The ids the redriven messages were sent with, in the same order. A redrive is a new send: brokers that drop a
   * repeated id (NATS JetStream's duplicate window, the gateway's idempotency keys) would drop the original id.
   */
  readonly newIds: string[];
  /** Ids asked for that were not among the dead letters. */
  readonly missing: string[];
}

const DLQ_HEADERS = new Set<string>(Object.values(DEAD_LETTER_HEADERS));

/**
 * One consumer id per process for the dead-letter reads, and one read at a time per transport: brokers that keep a
 * session per consumer id (MQTT) then hold one for this process, not one per read.
 */
const READER_ID = `busbar-dlq-${randomUUID().slice(0, 8)}`;
const reading = new WeakMap<Transport, Promise<unknown>>();
const MAX_LIMIT = 10_000;

function limitOf(value: number | undefined, fallback: number): number {
  const limit = value ?? fallback;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `limit must be a whole number from 1 to ${MAX_LIMIT}, not ${JSON.stringify(value)}`,
    );
  }
  return limit;
}

function idleOf(value: number | undefined): number {
  const idle = value ?? 1000;
  if (!Number.isInteger(idle) || idle < 1 || idle > 600_000) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `idleMs must be a whole number of ms from 1 to 600000, not ${JSON.stringify(value)}`,
    );
  }
  return idle;
}

/** A read-only admin call, tried again (3 times in all) when it failed with a retryable error. */
async function retrying<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (attempt >= 3 || (error as { retryable?: unknown }).retryable !== true) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    }
  }
}

/** The dead letter a stored copy describes; the original message is rebuilt from its headers. */
export function describeDeadLetter(stored: TransportMessage, deadLetterType: string): DeadLetter {
  const h = stored.headers;
  const suffix = deadLetterTypeOf('');
  const originalType =
    h[DEAD_LETTER_HEADERS.originalType] ??
    (deadLetterType.endsWith(suffix) ? deadLetterType.slice(0, -suffix.length) : deadLetterType);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(h)) if (!DLQ_HEADERS.has(name)) headers[name] = value;
  const key = stored.key ?? h[DEAD_LETTER_HEADERS.key];
  const attempts = Number(h[DEAD_LETTER_HEADERS.attempts]);
  const message: TransportMessage = {
    id: stored.id,
    type: originalType,
    source: stored.source,
    time: stored.time,
    contentType: stored.contentType,
    ...(key === undefined ? {} : { key }),
    headers,
    body: stored.body,
  };
  return {
    id: stored.id,
    originalType,
    group: h[DEAD_LETTER_HEADERS.group],
    reason: h[DEAD_LETTER_HEADERS.reason],
    attempts: Number.isInteger(attempts) ? attempts : undefined,
    deadLetteredAt: h[DEAD_LETTER_HEADERS.time],
    message,
  };
}

/** Dead-letter operations on one transport; Admin hands them out. */
export class DeadLetters {
  readonly #transport: Transport;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  /** The dead letters of `type` (its dead-letter type is `<type>.dlq`), oldest first, without consuming them. */
  async list(type: string, options: DeadLetterReadOptions = {}): Promise<DeadLetter[]> {
    const limit = limitOf(options.limit, 100);
    const dlq = await this.#deadLetterType(type);
    const found: DeadLetter[] = [];
    if (!dlq) return found;
    const seen = new Set<string>();
    await this.#read(dlq, limit, idleOf(options.idleMs), async (delivery) => {
      if (!seen.has(delivery.message.id)) {
        seen.add(delivery.message.id);
        found.push(describeDeadLetter(delivery.message, dlq));
      }
      return found.length < limit;
    });
    return found;
  }

  /** One dead letter by id, or undefined. */
  async peek(type: string, id: string, options: DeadLetterReadOptions = {}): Promise<DeadLetter | undefined> {
    const limit = limitOf(options.limit, MAX_LIMIT);
    const dlq = await this.#deadLetterType(type);
    if (!dlq) return undefined;
    let found: DeadLetter | undefined;
    await this.#read(dlq, limit, idleOf(options.idleMs), async (delivery) => {
      if (delivery.message.id === id) found = describeDeadLetter(delivery.message, dlq);
      return found === undefined;
    });
    return found;
  }

  /**
   * Sends dead letters back to their original types (the same id, body, key and headers, without busbar-dlq-*), then
   * removes them from the dead-letter type: all of them, or those named by `ids`.
   */
  async redrive(type: string, options: RedriveOptions = {}): Promise<RedriveResult> {
    if (
      options.ids !== undefined &&
      (!Array.isArray(options.ids) || options.ids.some((id) => typeof id !== 'string'))
    ) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        'ids must be a list of message ids (strings); leave it out to redrive every dead letter',
      );
    }
    const wanted = options.ids === undefined ? undefined : new Set(options.ids);
    const limit = limitOf(options.limit, MAX_LIMIT);
    const redriven: string[] = [];
    const newIds: string[] = [];
    const dlq = await this.#deadLetterType(type);
    if (dlq && (wanted === undefined || wanted.size > 0)) {
      await this.#read(dlq, limit, idleOf(options.idleMs), async (delivery) => {
        const id = delivery.message.id;
        if (wanted && !wanted.has(id)) return true;
        const { message, originalType } = describeDeadLetter(delivery.message, dlq);
        const newId = uuidv7();
        const headers = { ...message.headers, [REDRIVEN_FROM_HEADER]: id };
        await this.#transport.publish(originalType, [{ ...message, id: newId, headers }]);
        await delivery.ack();
        redriven.push(id);
        newIds.push(newId);
        wanted?.delete(id);
        return wanted === undefined ? redriven.length < limit : wanted.size > 0;
      });
    }
    return { redriven, newIds, missing: wanted ? [...wanted] : [] };
  }

  /** Removes every dead letter of `type`. */
  async purge(type: string, options: Pick<DeadLetterReadOptions, 'idleMs'> = {}): Promise<number | undefined> {
    const dlq = await this.#deadLetterType(type);
    if (!dlq) return 0;
    if (this.#transport.capabilities.purge) {
      await this.#transport.admin.purge(dlq);
      return undefined;
    }
    let removed = 0;
    await this.#read(dlq, MAX_LIMIT, idleOf(options.idleMs), async (delivery) => {
      await delivery.ack();
      removed++;
      return true;
    });
    return removed;
  }

  /** `<type>.dlq` when it exists; an unknown `type` (with no dead letters either) throws BUSBAR_ERR_UNKNOWN_TYPE. */
  async #deadLetterType(type: string): Promise<string | undefined> {
    checkTypeName(type);
    const dlq = deadLetterTypeOf(type);
    const found = await retrying(() => describeTypes(this.#transport.admin, [dlq, type]));
    const types = new Set(found.map((t) => t.type));
    if (types.has(dlq)) return dlq;
    if (types.has(type)) return undefined;
    throw new BusError(
      'BUSBAR_ERR_UNKNOWN_TYPE',
      `no message type '${type}' and no dead letters of it: check the name; busbar types list shows the types that exist`,
    );
  }

  /** How many dead letters the dead-letter group has not acked, where the broker can tell. */
  async #pending(dlq: string): Promise<number | undefined> {
    if (!this.#transport.capabilities.lag) return undefined;
    const [stats] = await retrying(() => this.#transport.admin.stats(dlq));
    if (!stats) return undefined;
    if (stats.depth === 0) return 0;
    const group = stats.groups.find((g) => g.group === DEAD_LETTER_GROUP);
    // Unread 0 of a type that holds messages is not trusted: a broker may not count every unacked one (Kafka leaves
    // out those waiting in its retry topic, e.g. dead letters a redrive of a selection stepped over and returned);
    // the read then ends when nothing more comes.
    if (group) return group.unread > 0 ? group.unread : undefined;
    return this.#transport.capabilities.replay ? stats.depth : undefined;
  }

  /**
   * Reads the dead-letter type in the dead-letter group, holding what it reads, until `visit` says stop, the count
   * the broker reported was read, or nothing came for `idleMs`. Whatever was not acked returns to the group at close.
   */
  async #read(dlq: string, limit: number, idleMs: number, visit: (d: Delivery) => Promise<boolean>): Promise<void> {
    const before = reading.get(this.#transport) ?? Promise.resolve();
    const mine = before.catch(() => {}).then(() => this.#readNow(dlq, limit, idleMs, visit));
    reading.set(this.#transport, mine);
    try {
      await mine;
    } finally {
      if (reading.get(this.#transport) === mine) reading.delete(this.#transport);
    }
  }

  async #readNow(dlq: string, limit: number, idleMs: number, visit: (d: Delivery) => Promise<boolean>): Promise<void> {
    const pending = await this.#pending(dlq);
    if (pending === 0) return;
    const subscription = this.#transport.consume({
      types: [dlq],
      group: DEAD_LETTER_GROUP,
      consumerId: READER_ID,
      offset: 'earliest',
      prefetch: Math.min(limit, pending ?? limit),
      ackTimeoutMs: 300_000,
    });
    const deliveries = subscription[Symbol.asyncIterator]();
    // Where the broker said how many there are, a slow one is waited for longer before the read gives up on it.
    const patience = pending === undefined ? idleMs : Math.max(idleMs, 5000);
    try {
      await subscription.ready;
      let read = 0;
      let timer: NodeJS.Timeout | undefined;
      for (;;) {
        if (pending !== undefined && read >= pending) break;
        const idle = new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), patience);
        });
        const next = await Promise.race([deliveries.next(), idle]);
        clearTimeout(timer);
        if (next === undefined || next.done) break;
        read++;
        if (!(await visit(next.value))) break;
      }
    } finally {
      await subscription.close();
    }
  }
}
