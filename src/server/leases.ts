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
  readonly expiresAt: number;
  readonly receipt: string;
  readonly timer: NodeJS.Timeout;
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
  | { status: 'failed'; error: unknown };

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

  constructor(signer: ReceiptSigner, metrics: Metrics, brokerTimeoutMs: number) {
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

  /** Leases `message` for `leaseMs`; `onSettle` runs once when the lease ends, whichever way. */
  grant(entry: PooledConsumer, message: Message, leaseMs: number, onSettle?: () => void): Granted {
    const claims: ReceiptClaims = {
      type: entry.type,
      group: entry.group,
      messageId: message.id,
      nonce: this.#signer.newNonce(),
    };
    const expiresAt = Date.now() + leaseMs;
    const timer = setTimeout(() => void this.#expire(claims.nonce), leaseMs);
    timer.unref();
    const receipt = this.#signer.sign(claims);
    this.#active.set(claims.nonce, { claims, message, entry, expiresAt, receipt, timer, onSettle });
    entry.held++;
    this.#metrics.group('delivered', entry.type, entry.group);
    return { receipt, expiresAt };
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
      const lease = this.#active.get(c.nonce);
      if (
        !lease ||
        lease.claims.type !== c.type ||
        lease.claims.group !== c.group ||
        lease.claims.messageId !== c.messageId
      ) {
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
