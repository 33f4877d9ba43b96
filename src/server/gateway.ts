/**
 * The gateway's state, shared by every route: the bus, the consumer pool, the lease table, auth, limits, metrics,
 * and the open streams and long polls (counted against their limits, ended at shutdown).
 */

import type { FastifyRequest } from 'fastify';
import type { MessageBus } from '../bus/bus.ts';
import { DEFAULT_ACK_TIMEOUT_MS } from '../defaults.ts';
import { Authenticator, authorize } from './auth.ts';
import { ConsumerPool } from './consumers.ts';
import { httpError } from './errors.ts';
import { IdempotencyCache } from './idempotency.ts';
import { LeaseTable } from './leases.ts';
import { Metrics } from './metrics.ts';
import type { Scope, ServerSettings } from './options.ts';
import { ReceiptSigner } from './receipts.ts';
import { ReplicaIdentity } from './replicas.ts';
import { principalOf } from './requests.ts';
import { buildSchemas, type Schemas } from './schemas.ts';

/**
 * How much longer than the longest lease the gateway's consumers give the broker before it redelivers: a quarter of
 * the longest lease, between 1 s and 60 s. A lease never outlasts the broker's own lease minus half this margin.
 */
export function ackTimeoutMargin(maxLeaseMs: number): number {
  return Math.round(Math.min(60_000, Math.max(1_000, maxLeaseMs / 4)));
}

export class Gateway {
  readonly bus: MessageBus;
  readonly settings: ServerSettings;
  readonly schemas: Schemas;
  readonly auth: Authenticator;
  readonly signer: ReceiptSigner;
  readonly metrics = new Metrics();
  readonly pool: ConsumerPool;
  readonly leases: LeaseTable;
  readonly idempotency: IdempotencyCache;
  readonly replica: ReplicaIdentity;
  /** The lease a pull or stream gets when it names none (also what an extension without leaseMs asks for). */
  readonly defaultLeaseMs: number;
  /** The ack timeout of the gateway's consumers: how soon the broker returns the leases of a replica that died. */
  readonly ackTimeoutMs: number;
  /** Ends each open stream (at shutdown). */
  readonly streams = new Set<() => void>();
  longPolls = 0;
  /** Pulls waiting for a lease of their group to end (the group at server.prefetch leases through this gateway). */
  queuedPulls = 0;
  closing = false;

  constructor(bus: MessageBus, settings: ServerSettings) {
    this.bus = bus;
    this.settings = settings;
    const limits = settings.limits;
    this.schemas = buildSchemas(limits, bus.config?.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS);
    this.auth = new Authenticator(settings.tokens);
    this.signer = new ReceiptSigner(settings.receiptSecret);
    this.replica = new ReplicaIdentity(settings.advertiseUrl);
    this.defaultLeaseMs = Math.min(bus.config?.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS, limits.maxLeaseMs);
    const margin = ackTimeoutMargin(limits.maxLeaseMs);
    this.ackTimeoutMs = limits.maxLeaseMs + margin;
    this.pool = new ConsumerPool(bus, {
      idleMs: settings.consumerIdleMs,
      prefetch: settings.prefetch,
      ackTimeoutMs: this.ackTimeoutMs,
      brokerTimeoutMs: limits.brokerTimeoutMs,
    });
    this.leases = new LeaseTable(
      this.signer,
      this.metrics,
      limits.brokerTimeoutMs,
      () => this.replica.url,
      Math.round(margin / 2),
    );
    this.idempotency = new IdempotencyCache(
      limits.idempotencyKeys,
      limits.idempotencyTtlMs,
      limits.brokerTimeoutMs + 15_000,
    );
  }

  /** Throws 403 unless the caller of `request` holds `scope` for `type`. */
  authorize(request: FastifyRequest, scope: Scope, type: string): void {
    authorize(principalOf(request), scope, type);
  }

  /** Counts a long poll against its limit; the returned function gives the slot back. */
  enterLongPoll(): () => void {
    if (this.longPolls >= this.settings.limits.longPolls) {
      throw httpError(
        'BUSBAR_ERR_LIMIT',
        `too many long polls waiting (limit ${this.settings.limits.longPolls}): retry after Retry-After, or poll with wait=0`,
      );
    }
    this.longPolls++;
    let left = false;
    return () => {
      if (!left) this.longPolls--;
      left = true;
    };
  }

  /**
   * Whether a request may still run while the gateway drains: settling (ack, nack, lease extension, and what other
   * replicas forward) goes on, so clients can finish the work they hold; pulls, streams and the rest are refused.
   */
  servesWhileDraining(url: string | undefined): boolean {
    return url === '/v1/acks' || url === '/v1/nacks' || url === '/v1/leases' || url === '/v1/replicas/settle';
  }

  /**
   * Stops taking pulls and streams, then waits up to `drainMs` (never past the last lease's expiry) for clients to
   * settle the leases outstanding here; whatever is left returns to its group when the consumers close.
   */
  async drain(drainMs: number): Promise<void> {
    this.closing = true;
    for (const end of [...this.streams]) end();
    const wait = Math.min(drainMs, Math.max(0, this.leases.lastExpiry() - Date.now()));
    if (wait > 0) await this.leases.idle(wait);
  }

  /** Returns leased messages to their groups and closes every consumer; open streams are ended first. */
  async shutdown(): Promise<void> {
    this.closing = true;
    for (const end of [...this.streams]) end();
    this.leases.clear();
    await this.pool.close();
  }
}
