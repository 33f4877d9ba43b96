/**
 * Gateway replicas: N `busbar serve` processes on one broker behind a plain round-robin load balancer.
 *
 * A lease lives in the replica that pulled the message (the broker delivered it to that replica's consumer, and on
 * most brokers only that connection can settle it: AMQP delivery tags are per channel, Kafka offsets are committed
 * by the partition's owner, MQTT packet ids are per session). Its receipt names that replica (`owner`, the URL the
 * replicas reach each other at) under the shared HMAC, so any replica can check a receipt and hand a foreign one to
 * its owner in one HTTP call (`POST /v1/replicas/settle`, with the client's own bearer token). A replica that cannot
 * reach the owner answers 410 for those receipts: if the owner died, the broker returns its messages to the group
 * within the gateway's ack timeout (docs/rest.md, "Replicas").
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { FastifyRequest } from 'fastify';
import { BusError, type ErrorCode, isBusError } from '../errors.ts';
import { authorize } from './auth.ts';
import { httpError } from './errors.ts';
import type { Gateway } from './gateway.ts';
import type { ExtendResult, SettleResult } from './leases.ts';
import type { ReceiptClaims, VerifyCache } from './receipts.ts';
import { principalOf } from './requests.ts';

/** The header a forwarded request carries (its value: the forwarding replica's id); such a request never forwards. */
export const FORWARDED_BY = 'busbar-forwarded-by';
/** Every answer names the replica that gave it. */
export const REPLICA_HEADER = 'busbar-replica';

export type Operation =
  | { action: 'ack' }
  | { action: 'nack'; delayMs?: number }
  | { action: 'extend'; leaseMs: number };
export type Result = SettleResult | ExtendResult;

/** A result as it travels between replicas. */
interface WireResult {
  status: Result['status'];
  previous?: string;
  expiresAt?: number;
  owner?: string;
  code?: string;
  reason?: string;
}

function toWireResult(result: Result): WireResult {
  switch (result.status) {
    case 'conflict':
      return { status: 'conflict', previous: result.previous };
    case 'failed': {
      const error = result.error;
      return {
        status: 'failed',
        code: isBusError(error) ? error.code : 'BUSBAR_ERR_BROKER',
        reason: error instanceof Error ? error.message : String(error),
      };
    }
    case 'gone':
      return { status: 'gone', owner: result.owner };
    case 'done':
      return 'expiresAt' in result ? { status: 'done', expiresAt: result.expiresAt } : { status: 'done' };
    default:
      return { status: result.status };
  }
}

function fromWireResult(wire: WireResult, owner: string): Result {
  switch (wire.status) {
    case 'conflict':
      return { status: 'conflict', previous: (wire.previous ?? 'acked') as 'acked' };
    case 'failed':
      return {
        status: 'failed',
        error: new BusError((wire.code ?? 'BUSBAR_ERR_BROKER') as ErrorCode, wire.reason ?? 'failed', {
          retryable: true,
        }),
      };
    case 'gone':
      return { status: 'gone', owner: wire.owner ?? owner };
    case 'done':
      return typeof wire.expiresAt === 'number' ? { status: 'done', expiresAt: wire.expiresAt } : { status: 'done' };
    case 'repeat':
    case 'expired':
    case 'unknown':
      return { status: wire.status };
    default:
      return { status: 'unknown' };
  }
}

/** This replica's identity: an id for logs and the Busbar-Replica header, and the URL its peers reach it at. */
export class ReplicaIdentity {
  readonly id: string;
  #url = '';
  readonly #advertise: string | undefined;

  constructor(advertiseUrl: string | undefined) {
    this.#advertise = advertiseUrl?.replace(/\/+$/, '');
    this.id = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  }

  /** Set once listening: the advertised URL, or the listening one (the host name when bound to every address). */
  listening(url: string, wildcard: boolean, port: number, tls: boolean): void {
    this.#url = this.#advertise ?? (wildcard ? `${tls ? 'https' : 'http'}://${hostname()}:${port}` : url);
  }

  get url(): string {
    return this.#url;
  }
}

/** Verifies receipts (400 naming the bad one, nothing settled) and checks the caller's consume scope on each. */
export function verifyReceipts(
  gw: Gateway,
  request: FastifyRequest,
  receipts: readonly string[],
  group: string | undefined,
): ReceiptClaims[] {
  const principal = principalOf(request);
  const cache: VerifyCache = new Map();
  const issued = (pull: string, index: number) => gw.leases.issued(pull, index);
  const claims = receipts.map((receipt, i) => {
    try {
      return gw.signer.verify(receipt, issued, cache);
    } catch (error) {
      throw httpError('BUSBAR_ERR_INVALID_RECEIPT', `receipts[${i}]: ${(error as Error).message}; nothing was settled`);
    }
  });
  // Receipts of one pull share their type: each type is authorized once.
  for (const type of new Set(claims.map((c) => c.type))) authorize(principal, 'consume', type);
  claims.forEach((c, i) => {
    if (group !== undefined && c.group !== group) {
      throw httpError(
        'BUSBAR_ERR_INVALID_RECEIPT',
        `receipts[${i}] belongs to group '${c.group}', not '${group}': a receipt settles only its own group's delivery; nothing was settled`,
        { status: 409 },
      );
    }
  });
  return claims;
}

/** Runs `op` on the leases this replica holds; receipts owned elsewhere are unknown here. */
export async function runLocal(gw: Gateway, claims: readonly ReceiptClaims[], op: Operation): Promise<Result[]> {
  const mine = (c: ReceiptClaims) => c.owner === gw.replica.url || c.owner === '';
  const local = claims.filter(mine);
  const done: Result[] =
    local.length === 0
      ? []
      : op.action === 'extend'
        ? gw.leases.extend(local, op.leaseMs)
        : await gw.leases.settle(local, op.action, op.action === 'nack' ? op.delayMs : undefined);
  let next = 0;
  return claims.map((c) => (mine(c) ? done[next++]! : { status: 'unknown' }));
}

/**
 * Runs `op` on every receipt wherever its lease lives: here, or at the replica that issued it (one call per owner,
 * all at once). One result per receipt, in order.
 */
export async function runAnywhere(
  gw: Gateway,
  request: FastifyRequest,
  receipts: readonly string[],
  claims: readonly ReceiptClaims[],
  op: Operation,
): Promise<Result[]> {
  const forwarded = request.headers[FORWARDED_BY] !== undefined;
  const byOwner = new Map<string, number[]>();
  const localIndexes: number[] = [];
  claims.forEach((c, i) => {
    if (forwarded || c.owner === gw.replica.url || c.owner === '') localIndexes.push(i);
    else byOwner.set(c.owner, [...(byOwner.get(c.owner) ?? []), i]);
  });
  const results: Result[] = new Array(claims.length);
  const jobs: Promise<void>[] = [];
  if (localIndexes.length > 0) {
    jobs.push(
      runLocal(
        gw,
        localIndexes.map((i) => claims[i]!),
        op,
      ).then((local) => {
        local.forEach((r, j) => {
          results[localIndexes[j]!] = r;
        });
      }),
    );
  }
  for (const [owner, indexes] of byOwner) {
    jobs.push(
      forward(
        gw,
        request,
        owner,
        indexes.map((i) => receipts[i]!),
        op,
      ).then((remote) => {
        remote.forEach((r, j) => {
          results[indexes[j]!] = r;
        });
      }),
    );
  }
  await Promise.all(jobs);
  return results;
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/** Hands receipts to the replica that owns their leases; a replica that cannot be reached at all is `gone`. */
async function forward(
  gw: Gateway,
  request: FastifyRequest,
  owner: string,
  receipts: string[],
  op: Operation,
): Promise<Result[]> {
  const headers: Record<string, string> = { 'content-type': 'application/json', [FORWARDED_BY]: gw.replica.id };
  const authorization = request.headers.authorization;
  if (typeof authorization === 'string') headers.authorization = authorization;
  const timeoutMs = gw.settings.limits.brokerTimeoutMs;
  let response: Response;
  try {
    response = await fetch(`${owner}/v1/replicas/settle`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ ...op, receipts }),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    const code = (error as { cause?: { code?: string } }).cause?.code;
    if (code && UNREACHABLE.has(code)) return receipts.map(() => ({ status: 'gone', owner }));
    const failure = new BusError(
      'BUSBAR_ERR_TIMEOUT',
      `the replica at ${owner} that holds the lease did not answer within ${timeoutMs} ms (${(error as Error).message})`,
      { cause: error },
    );
    return receipts.map(() => ({ status: 'failed', error: failure }));
  }
  const text = await response.text();
  let body: { results?: WireResult[]; error?: { code?: string; message?: string } } = {};
  try {
    body = JSON.parse(text);
  } catch {}
  if (response.ok && Array.isArray(body.results) && body.results.length === receipts.length) {
    return body.results.map((w) => fromWireResult(w, owner));
  }
  const message = body.error?.message ?? text.slice(0, 200);
  if (response.status >= 500) {
    const failure = new BusError(
      (body.error?.code ?? 'BUSBAR_ERR_BROKER') as ErrorCode,
      `the replica at ${owner} that holds the lease failed: ${message}`,
      { retryable: true },
    );
    return receipts.map(() => ({ status: 'failed', error: failure }));
  }
  throw httpError(
    (body.error?.code ?? 'BUSBAR_ERR_INVALID_RECEIPT') as ErrorCode,
    `the replica at ${owner} that holds the lease refused it (${response.status}): ${message}; nothing was settled there`,
    { status: response.status },
  );
}

/** The answer of `POST /v1/replicas/settle`. */
export async function settleForPeer(
  gw: Gateway,
  request: FastifyRequest,
  body: { action: Operation['action']; receipts: string[]; delayMs?: number; leaseMs?: number },
): Promise<{ results: WireResult[] }> {
  const claims = verifyReceipts(gw, request, body.receipts, undefined);
  const op: Operation =
    body.action === 'extend'
      ? { action: 'extend', leaseMs: body.leaseMs ?? gw.defaultLeaseMs }
      : body.action === 'nack'
        ? { action: 'nack', ...(body.delayMs ? { delayMs: body.delayMs } : {}) }
        : { action: 'ack' };
  const results = await runLocal(gw, claims, op);
  return { results: results.map(toWireResult) };
}
