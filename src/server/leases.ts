/**
 * The lease table: every message handed out with a receipt is held here until its receipt is acked or nacked, or
 * its lease runs out, when the gateway nacks it so it returns to its group at once. A lost HTTP response therefore
 * loses nothing: the message comes back after the lease.
 *
 * Settled receipts are remembered for a while, so a retried ack (whose first answer was lost) succeeds again
 * instead of failing, and an ack after expiry says so precisely.
 */
import type { Message } from '../bus/message.ts';
import { leaseEnded, type PooledConsumer } from './consumers.ts';
import { brokerCall } from './errors.ts';
import type { Metrics } from './metrics.ts';
import type { ReceiptClaims, ReceiptSigner } from './receipts.ts';

interface Lease {
  readonly claims: ReceiptClaims;
  readonly message: Message;
  readonly entry: PooledConsumer;
  readonly batch: Batch;
  expiresAt: number;
  /** The latest the lease may be extended to: a little before the broker's own lease on the message ends. */
  readonly limit: number;
  readonly receipt: string;
  ended: boolean;
  readonly onSettle: (() => void) | undefined;
}

/**
 * The leases of one pull. They share one timer, set for the earliest expiry among them; when it fires, the leases
 * due expire and it is set again for the next. An extension only moves a lease's expiry later, so the timer at
 * worst fires early and is set again: one timer per pull instead of one per message.
 */
interface Batch {
  readonly pull: string;
  readonly leases: Lease[];
  open: number;
  timer: NodeJS.Timeout | undefined;
}

type Outcome = 'acked' | 'nacked' | 'expired' | 'failed';

export type SettleResult =
  | { status: 'done' }
  /** The same action was already taken on this receipt (a retry): nothing more to do. */
  | { status: 'repeat' }
  /** The lease ran out (or the ack could not reach the broker): the message returned to its group. */
  | { status: 'expired' }
  /** The receipt was already settled the other way (acked, then nacked). */
  | { status: 'conflict'; previous: Outcome }
  /** Genuine but unknown here: from an earlier run of the gateway, or forgotten long ago. */
  | { status: 'unknown' }
  /** The broker refused or did not answer the ack / nack in time: the message will come again. */
  | { status: 'failed'; error: unknown }
  /** The replica that holds the lease cannot be reached: if it died, the broker returns the message to the group. */
  | { status: 'gone'; owner: string };

/** What extending a lease gave: its new expiry, or why it could not be extended. */
export type ExtendResult = { status: 'done'; expiresAt: number } | Exclude<SettleResult, { status: 'done' | 'repeat' }>;

export interface Granted {
  receipt: string;
  expiresAt: number;
}

/** How long settled receipts are remembered, beyond their lease. */
const REMEMBER_MS = 10 * 60_000;
/**
 * At most this many settled receipts are remembered (the oldest pulls are forgotten first). They are kept per pull,
 * one byte per receipt, so this bound is a few MB at most.
 */
export const REMEMBER_MAX = 250_000;

const OUTCOMES: readonly (Outcome | undefined)[] = [undefined, 'acked', 'nacked', 'expired', 'failed'];
const CODES: Record<Outcome, number> = { acked: 1, nacked: 2, expired: 3, failed: 4 };

/** What became of the settled receipts of one pull, by index (0: not settled, else a code of OUTCOMES). */
interface Settled {
  readonly outcomes: Uint8Array;
  until: number;
}

export class LeaseTable {
  readonly #signer: ReceiptSigner;
  readonly #metrics: Metrics;
  readonly #brokerTimeoutMs: number;
  /** The pulls with leases outstanding, by pull id. */
  readonly #batches = new Map<string, Batch>();
  #size = 0;
  readonly #settled = new Map<string, Settled>();
  #remembered = 0;
  readonly #sweeper: NodeJS.Timeout;

  readonly #owner: () => string;
  readonly #guardMs: number;
  readonly #idle = new Set<() => void>();

  /**
   * `owner()` is the URL other replicas reach this one at (written into every receipt); `guardMs` is how long before
   * the broker's own lease on a message (Delivery.leaseUntil) the gateway's lease must end, so that the gateway's
   * nack on expiry reaches the broker before the broker would hand the message to another member.
   */
  constructor(signer: ReceiptSigner, metrics: Metrics, brokerTimeoutMs: number, owner: () => string, guardMs: number) {
    this.#owner = owner;
    this.#guardMs = guardMs;
    this.#signer = signer;
    this.#metrics = metrics;
    this.#brokerTimeoutMs = brokerTimeoutMs;
    this.#sweeper = setInterval(() => this.#forget(), 30_000);
    this.#sweeper.unref();
  }

  get size(): number {
    return this.#size;
  }

  /** Settled receipts remembered now (at most REMEMBER_MAX). */
  get remembered(): number {
    return this.#remembered;
  }

  *#open(): Generator<Lease> {
    for (const batch of this.#batches.values()) {
      for (const lease of batch.leases) if (!lease.ended) yield lease;
    }
  }

  /** Leases outstanding per `type \0 group`. */
  perGroup(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const batch of this.#batches.values()) {
      const first = batch.leases[0]!.claims;
      const key = `${first.type}\0${first.group}`;
      counts.set(key, (counts.get(key) ?? 0) + batch.open);
    }
    return counts;
  }

  /**
   * Leases `messages` (one pull) for `leaseMs` each (at most until shortly before the broker's lease on it ends),
   * under one signature for the pull; `onSettle` runs once per lease when it ends, whichever way.
   */
  grant(entry: PooledConsumer, messages: readonly Message[], leaseMs: number, onSettle?: () => void): Granted[] {
    if (messages.length === 0) return [];
    const owner = this.#owner();
    const signer = this.#signer.openPull(entry.type, entry.group, owner);
    const batch: Batch = { pull: signer.pull, leases: [], open: messages.length, timer: undefined };
    const now = Date.now();
    let due = Number.POSITIVE_INFINITY;
    const granted = messages.map((message, index): Granted => {
      const limit = message.delivery.leaseUntil - this.#guardMs;
      const expiresAt = Math.max(now + 1, Math.min(now + leaseMs, limit));
      due = Math.min(due, expiresAt);
      const claims: ReceiptClaims = {
        type: entry.type,
        group: entry.group,
        messageId: message.id,
        pull: signer.pull,
        index,
        owner,
      };
      const receipt = signer.sign(index, message.id);
      batch.leases.push({ claims, message, entry, batch, expiresAt, limit, receipt, ended: false, onSettle });
      return { receipt, expiresAt };
    });
    this.#batches.set(batch.pull, batch);
    this.#size += messages.length;
    entry.held += messages.length;
    this.#arm(batch, due - now);
    this.#metrics.group('delivered', entry.type, entry.group, messages.length);
    return granted;
  }

  #arm(batch: Batch, ms: number): void {
    batch.timer = setTimeout(() => this.#due(batch), Math.max(1, ms));
    batch.timer.unref();
  }

  /** The batch timer fired: expires the leases due, and sets it again for the next. */
  #due(batch: Batch): void {
    batch.timer = undefined;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    for (const lease of batch.leases) {
      if (lease.ended) continue;
      if (lease.expiresAt <= now) void this.#expire(lease);
      else next = Math.min(next, lease.expiresAt);
    }
    if (batch.open > 0 && next !== Number.POSITIVE_INFINITY) this.#arm(batch, next - now);
  }

  /**
   * Whether `message` can still be leased for at least half of `leaseMs`. A message that waited in the gateway's
   * consumer (read ahead of pulls) until the broker's lease on it nearly ran out would reach the client with a
   * lease too short to use, and come again anyway: the caller returns such a message to its group instead.
   */
  leasable(message: Message, leaseMs: number): boolean {
    return message.delivery.leaseUntil - this.#guardMs - Date.now() >= leaseMs / 2;
  }

  /** The receipt issued at `index` of `pull`, while its lease is outstanding (lets verification skip the tag). */
  issued(pull: string, index: number): string | undefined {
    const lease = this.#batches.get(pull)?.leases[index];
    return lease && !lease.ended ? lease.receipt : undefined;
  }

  #end(lease: Lease, outcome: Outcome): void {
    lease.ended = true;
    const batch = lease.batch;
    if (--batch.open === 0) {
      clearTimeout(batch.timer);
      this.#batches.delete(batch.pull);
    }
    this.#size--;
    this.#remember(lease, outcome, Math.max(lease.expiresAt, Date.now()) + REMEMBER_MS);
    lease.entry.held--;
    lease.entry.lastUsed = Date.now();
    leaseEnded(lease.entry);
    lease.onSettle?.();
    if (this.#size === 0) for (const wake of [...this.#idle]) wake();
  }

  /** Resolves once no lease is outstanding, or after `ms` (a draining gateway waits for its clients' acks). */
  idle(ms: number): Promise<void> {
    if (this.#size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#idle.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#idle.add(done);
    });
  }

  /** When the last outstanding lease runs out (Date.now() ms), or 0 when none is outstanding. */
  lastExpiry(): number {
    let last = 0;
    for (const lease of this.#open()) last = Math.max(last, lease.expiresAt);
    return last;
  }

  /** The lease behind genuine claims, if it is still outstanding here. */
  #find(c: ReceiptClaims): Lease | undefined {
    const lease = this.#batches.get(c.pull)?.leases[c.index];
    if (!lease || lease.ended) return undefined;
    const l = lease.claims;
    return l.type === c.type && l.group === c.group && l.messageId === c.messageId ? lease : undefined;
  }

  /**
   * Moves each lease's expiry to `leaseMs` from now, but never past its limit (shortly before the broker's own lease
   * on the message ends: the gateway cannot hold a message longer than the broker lets it).
   */
  extend(claims: readonly ReceiptClaims[], leaseMs: number): ExtendResult[] {
    const now = Date.now();
    return claims.map((c) => {
      const lease = this.#find(c);
      if (!lease) {
        const recalled = this.#recall(c, 'ack');
        return recalled.status === 'repeat'
          ? { status: 'conflict', previous: 'acked' }
          : (recalled as Exclude<SettleResult, { status: 'done' | 'repeat' }>);
      }
      // Only ever later: the pull's timer then fires at the old expiry at the latest and is set again.
      lease.expiresAt = Math.max(lease.expiresAt, Math.min(now + leaseMs, lease.limit));
      return { status: 'done', expiresAt: lease.expiresAt };
    });
  }

  async #expire(lease: Lease): Promise<void> {
    this.#end(lease, 'expired');
    this.#metrics.group('expired', lease.claims.type, lease.claims.group);
    // If this nack fails the broker still returns the message after the consumer's own ack timeout or close.
    await lease.message.nack().catch(() => {});
  }
  /**
   * Acks or nacks the messages behind verified receipt claims, one result per claim. The broker calls run together
   * under one deadline, so a batch of receipts costs one timer, not one per receipt.
   */
  async settle(claims: readonly ReceiptClaims[], action: 'ack' | 'nack', delayMs?: number): Promise<SettleResult[]> {
    const results: SettleResult[] = [];
    const calls: { index: number; lease: Lease }[] = [];
    const done = action === 'ack' ? 'acked' : 'nacked';
    claims.forEach((c, index) => {
      const lease = this.#find(c);
      if (!lease) {
        results[index] = this.#recall(c, action);
        return;
      }
      this.#end(lease, done);
      calls.push({ index, lease });
    });
    if (calls.length === 0) return results;
    const outcomes = await brokerCall(`${action} of ${calls.length} message(s)`, this.#brokerTimeoutMs, () =>
      Promise.allSettled(
        calls.map(({ lease }) =>
          action === 'ack' ? lease.message.ack() : lease.message.nack(delayMs ? { delayMs } : undefined),
        ),
      ),
    ).catch((error: unknown) => calls.map(() => ({ status: 'rejected' as const, reason: error })));
    // Counted per run of receipts of one batch (one type and group), not one metrics update per receipt.
    let counted: Lease | undefined;
    let run = 0;
    const flush = () => {
      if (counted && run > 0) this.#metrics.group(done, counted.claims.type, counted.claims.group, run);
      run = 0;
    };
    outcomes.forEach((outcome, i) => {
      const { index, lease } = calls[i]!;
      if (outcome.status === 'fulfilled') {
        if (counted?.batch !== lease.batch) {
          flush();
          counted = lease;
        }
        run++;
        results[index] = { status: 'done' };
      } else {
        this.#remember(lease, 'failed', Date.now() + REMEMBER_MS);
        results[index] = { status: 'failed', error: outcome.reason };
      }
    });
    flush();
    return results;
  }

  #remember(lease: Lease, outcome: Outcome, until: number): void {
    const { pull, index } = lease.claims;
    let record = this.#settled.get(pull);
    if (!record) {
      record = { outcomes: new Uint8Array(lease.batch.leases.length), until };
      this.#settled.set(pull, record);
    }
    if (record.outcomes[index] === 0) this.#remembered++;
    record.outcomes[index] = CODES[outcome];
    record.until = Math.max(record.until, until);
    while (this.#remembered > REMEMBER_MAX) {
      const [oldest, forgotten] = this.#settled.entries().next().value!;
      this.#settled.delete(oldest);
      this.#remembered -= settledIn(forgotten);
    }
  }

  /** What became of a receipt whose lease is no longer outstanding. */
  #recall(claims: ReceiptClaims, action: 'ack' | 'nack'): SettleResult {
    const previous = OUTCOMES[this.#settled.get(claims.pull)?.outcomes[claims.index] ?? 0];
    if (!previous) return { status: 'unknown' };
    if (previous === 'expired' || previous === 'failed') return { status: 'expired' };
    return previous === (action === 'ack' ? 'acked' : 'nacked')
      ? { status: 'repeat' }
      : { status: 'conflict', previous };
  }

  /** Ends every lease without touching the broker: used at shutdown, where closing the consumers returns them. */
  clear(): void {
    for (const lease of [...this.#open()]) this.#end(lease, 'expired');
    clearInterval(this.#sweeper);
  }

  #forget(): void {
    const now = Date.now();
    for (const [pull, record] of this.#settled) {
      if (record.until > now) continue;
      this.#settled.delete(pull);
      this.#remembered -= settledIn(record);
    }
  }
}

function settledIn(record: Settled): number {
  let count = 0;
  for (const code of record.outcomes) if (code !== 0) count++;
  return count;
}
