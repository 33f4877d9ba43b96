/**
 * The lease table: every message handed out with a receipt is held here until its receipt is acked or nacked, or
 * its lease runs out, when the gateway nacks it so it returns to its group at once. A lost HTTP response therefore
 * loses nothing: the message comes back after the lease.
 *
 * Settled receipts are remembered for a while, so a retried ack (whose first answer was lost) succeeds again
 * instead of failing, and an ack after expiry says so precisely.
 */
import type { Message } from '../bus/message.ts';
import type { PooledConsumer } from './consumers.ts';
import { brokerCall } from './errors.ts';
import type { Metrics } from './metrics.ts';
import type { ReceiptClaims, ReceiptSigner } from './receipts.ts';

interface Lease {
  readonly claims: ReceiptClaims;
  readonly message: Message;
  readonly entry: PooledConsumer;
  expiresAt: number;
  /** The latest the lease may be extended to: a little before the broker's own lease on the message ends. */
  readonly limit: number;
  readonly receipt: string;
  timer: NodeJS.Timeout;
  readonly onSettle: (() => void) | undefined;
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
/** At most this many settled receipts are remembered (the oldest are forgotten first), so memory stays bounded. */
const REMEMBER_MAX = 250_000;

export class LeaseTable {
  readonly #signer: ReceiptSigner;
  readonly #metrics: Metrics;
  readonly #brokerTimeoutMs: number;
  readonly #active = new Map<string, Lease>();
  readonly #settled = new Map<string, { outcome: Outcome; until: number }>();
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
    return this.#active.size;
  }

  /** Leases outstanding per `type \0 group`. */
  perGroup(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const lease of this.#active.values()) {
      const key = `${lease.claims.type}\0${lease.claims.group}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return counts;
  }

  /**
   * Leases `message` for `leaseMs` (at most until shortly before the broker's lease on it ends); `onSettle` runs
   * once when the lease ends, whichever way.
   */
  grant(entry: PooledConsumer, message: Message, leaseMs: number, onSettle?: () => void): Granted {
    const claims: ReceiptClaims = {
      type: entry.type,
      group: entry.group,
      messageId: message.id,
      nonce: this.#signer.newNonce(),
      owner: this.#owner(),
    };
    const now = Date.now();
    const limit = message.delivery.leaseUntil - this.#guardMs;
    const expiresAt = Math.max(now + 1, Math.min(now + leaseMs, limit));
    const timer = setTimeout(() => void this.#expire(claims.nonce), expiresAt - now);
    timer.unref();
    const receipt = this.#signer.sign(claims);
    this.#active.set(claims.nonce, { claims, message, entry, expiresAt, limit, receipt, timer, onSettle });
    entry.held++;
    this.#metrics.group('delivered', entry.type, entry.group);
    return { receipt, expiresAt };
  }

  /**
   * Whether `message` can still be leased for at least half of `leaseMs`. A message that waited in the gateway's
   * consumer (read ahead of pulls) until the broker's lease on it nearly ran out would reach the client with a
   * lease too short to use, and come again anyway: the caller returns such a message to its group instead.
   */
  leasable(message: Message, leaseMs: number): boolean {
    return message.delivery.leaseUntil - this.#guardMs - Date.now() >= leaseMs / 2;
  }

  /** The receipt issued with `nonce`, while its lease is outstanding (lets verification skip the HMAC). */
  issued(nonce: string): string | undefined {
    return this.#active.get(nonce)?.receipt;
  }

  #end(lease: Lease, outcome: Outcome): void {
    clearTimeout(lease.timer);
    this.#active.delete(lease.claims.nonce);
    this.#remember(lease.claims.nonce, outcome, Math.max(lease.expiresAt, Date.now()) + REMEMBER_MS);
    lease.entry.held--;
    lease.entry.lastUsed = Date.now();
    lease.onSettle?.();
    if (this.#active.size === 0) for (const wake of [...this.#idle]) wake();
  }

  /** Resolves once no lease is outstanding, or after `ms` (a draining gateway waits for its clients' acks). */
  idle(ms: number): Promise<void> {
    if (this.#active.size === 0) return Promise.resolve();
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
    for (const lease of this.#active.values()) last = Math.max(last, lease.expiresAt);
    return last;
  }

  /** The lease behind genuine claims, if it is still outstanding here. */
  #find(c: ReceiptClaims): Lease | undefined {
    const lease = this.#active.get(c.nonce);
    if (!lease) return undefined;
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
      const expiresAt = Math.max(lease.expiresAt, Math.min(now + leaseMs, lease.limit));
      if (expiresAt !== lease.expiresAt) {
        clearTimeout(lease.timer);
        lease.expiresAt = expiresAt;
        lease.timer = setTimeout(() => void this.#expire(c.nonce), expiresAt - now);
        lease.timer.unref();
      }
      return { status: 'done', expiresAt };
    });
  }

  async #expire(nonce: string): Promise<void> {
    const lease = this.#active.get(nonce);
    if (!lease) return;
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
    outcomes.forEach((outcome, i) => {
      const { index, lease } = calls[i]!;
      if (outcome.status === 'fulfilled') {
        this.#metrics.group(done, lease.claims.type, lease.claims.group);
        results[index] = { status: 'done' };
      } else {
        this.#remember(lease.claims.nonce, 'failed', Date.now() + REMEMBER_MS);
        results[index] = { status: 'failed', error: outcome.reason };
      }
    });
    return results;
  }

  #remember(nonce: string, outcome: Outcome, until: number): void {
    this.#settled.delete(nonce);
    this.#settled.set(nonce, { outcome, until });
    if (this.#settled.size > REMEMBER_MAX) {
      for (const oldest of this.#settled.keys()) {
        this.#settled.delete(oldest);
        if (this.#settled.size <= REMEMBER_MAX) break;
      }
    }
  }

  /** What became of a receipt whose lease is no longer outstanding. */
  #recall(claims: ReceiptClaims, action: 'ack' | 'nack'): SettleResult {
    const previous = this.#settled.get(claims.nonce);
    if (!previous) return { status: 'unknown' };
    if (previous.outcome === 'expired' || previous.outcome === 'failed') return { status: 'expired' };
    return previous.outcome === (action === 'ack' ? 'acked' : 'nacked')
      ? { status: 'repeat' }
      : { status: 'conflict', previous: previous.outcome };
  }

  /** Ends every lease without touching the broker: used at shutdown, where closing the consumers returns them. */
  clear(): void {
    for (const lease of [...this.#active.values()]) this.#end(lease, 'expired');
    clearInterval(this.#sweeper);
  }

  #forget(): void {
    const now = Date.now();
    for (const [nonce, record] of this.#settled) {
      if (record.until <= now) this.#settled.delete(nonce);
    }
  }
}
