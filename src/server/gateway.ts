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
import { principalOf } from './requests.ts';
import { buildSchemas, type Schemas } from './schemas.ts';

/** How much longer than the longest lease the gateway's consumers give the broker before it redelivers. */
const ACK_TIMEOUT_MARGIN_MS = 60_000;

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
  /** Ends each open stream (at shutdown). */
  readonly streams = new Set<() => void>();
  longPolls = 0;
  closing = false;

  constructor(bus: MessageBus, settings: ServerSettings) {
    this.bus = bus;
    this.settings = settings;
    const limits = settings.limits;
    this.schemas = buildSchemas(limits, bus.config?.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS);
    this.auth = new Authenticator(settings.tokens);
    this.signer = new ReceiptSigner(settings.receiptSecret);
    this.pool = new ConsumerPool(bus, {
      idleMs: settings.consumerIdleMs,
      prefetch: settings.prefetch,
      ackTimeoutMs: limits.maxLeaseMs + ACK_TIMEOUT_MARGIN_MS,
      brokerTimeoutMs: limits.brokerTimeoutMs,
    });
    this.leases = new LeaseTable(this.signer, this.metrics, limits.brokerTimeoutMs);
    this.idempotency = new IdempotencyCache(limits.idempotencyKeys, limits.idempotencyTtlMs);
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

  /** Returns leased messages to their groups and closes every consumer; open streams are ended first. */
  async shutdown(): Promise<void> {
    this.closing = true;
    for (const end of [...this.streams]) end();
    this.leases.clear();
    await this.pool.close();
  }
}
