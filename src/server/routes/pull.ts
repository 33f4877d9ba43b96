/**
 * Pull: `GET /v1/types/{type}/messages?group=G&max=N&wait=MS&lease=MS` long-polls for messages, each leased with a
 * receipt; `POST /v1/acks` and `POST /v1/nacks` settle receipts. An unsettled lease returns its message to the
 * group, so a lost response loses nothing.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Message } from '../../bus/message.ts';
import { toBusError } from '../../errors.ts';
import type { Offset } from '../../transport/contract.ts';
import { BATCH, toStructured } from '../cloudevents.ts';
import { type PooledConsumer, roomFor } from '../consumers.ts';
import { brokerCall, httpError } from '../errors.ts';
import type { Gateway } from '../gateway.ts';
import type { SettleResult } from '../leases.ts';
import type { ApiRegistry } from '../openapi.ts';
import { type Operation, type Result, runAnywhere, verifyReceipts } from '../replicas.ts';
import { typeParams } from '../schemas.ts';
import { toWire, type WireMessage } from '../wire.ts';

const JSON_UTF8 = 'application/json; charset=utf-8';

export interface PullOptions {
  group: string;
  max: number;
  wait: number;
  lease: number;
  autoAck: boolean;
  offset: Offset;
  /** Absent where another route pulls (CORTX): the busbar shape. */
  format?: 'busbar' | 'cloudevents';
}

/** Takes up to `max` messages for (type, group) and leases them (or acks them, with autoAck). */
export async function pull(
  gw: Gateway,
  request: FastifyRequest,
  reply: FastifyReply,
  type: string,
  options: PullOptions,
): Promise<{ messages: Message[]; wire: WireMessage[] }> {
  const leave = options.wait > 0 ? gw.enterLongPoll() : () => {};
  let entry: PooledConsumer | undefined;
  try {
    entry = await gw.pool.acquire(type, options.group, options.offset);
    const current = entry;
    const started = Date.now();
    if (!options.autoAck && !(await queueFor(gw, current, options.wait))) {
      // Every lease this gateway may hold for the group is out, and none ended while this pull waited.
      throw httpError(
        'BUSBAR_ERR_LIMIT',
        `group '${options.group}' holds ${current.held} unsettled leases on '${type}' through this gateway, its ` +
          `limit (server.prefetch = ${gw.settings.prefetch}), and none was settled within this pull's wait of ` +
          `${options.wait} ms: ack or nack the receipts you hold (or let their leases run out), pull with a longer ` +
          'wait, or raise server.prefetch',
      );
    }
    const gone = () => reply.raw.destroyed || request.raw.socket.destroyed;
    let messages: Message[];
    try {
      // Messages read ahead too long ago to lease properly go back to the group (to come again afresh).
      const usable = (m: Message) => options.autoAck || gw.leases.leasable(m, options.lease);
      messages = await gw.pool.take(current, options.max, options.wait - (Date.now() - started), gone, usable);
    } catch (error) {
      gw.pool.discard(current);
      throw toBusError(error, 'BUSBAR_ERR_BROKER', `receiving from '${type}' for group '${options.group}'`);
    }
    if (gw.closing && messages.length > 0) {
      // The gateway began draining while this poll waited: it leases nothing more; the messages go back at once.
      await Promise.allSettled(messages.map((m) => m.nack()));
      return { messages: [], wire: [] };
    }
    if (options.autoAck) {
      await brokerCall(`acking ${messages.length} message(s)`, gw.settings.limits.brokerTimeoutMs, () =>
        Promise.all(messages.map((m) => m.ack())),
      );
      gw.metrics.group('delivered', type, options.group, messages.length);
      gw.metrics.group('acked', type, options.group, messages.length);
      return { messages, wire: messages.map((m) => toWire(m)) };
    }
    const leases = gw.leases.grant(current, messages, options.lease);
    return { messages, wire: messages.map((m, i) => toWire(m, leases[i])) };
  } finally {
    leave();
    if (entry) gw.pool.release(entry);
  }
}

/** Waits (counted in gw.queuedPulls) until the group has room for another lease, or `waitMs` pass. */
async function queueFor(gw: Gateway, entry: PooledConsumer, waitMs: number): Promise<boolean> {
  if (entry.held < gw.settings.prefetch) return true;
  gw.queuedPulls++;
  try {
    return await roomFor(entry, gw.settings.prefetch, waitMs);
  } finally {
    gw.queuedPulls--;
  }
}

const REASONS: Record<Exclude<SettleResult['status'], 'done' | 'repeat' | 'failed'>, string> = {
  expired: 'its lease ran out, so the message returned to its group and will be delivered again',
  unknown: 'this gateway holds no lease for it (it restarted, or the receipt is very old); the message was returned',
  conflict: 'it was already settled the other way',
  gone:
    'the gateway replica that leased it cannot be reached; if it is gone, the broker returns the message to the ' +
    'group within the ack timeout',
};

/**
 * Verifies, authorizes and settles receipts, here or at the replica that leased them (../replicas.ts); answers 200
 * when all settled, else 409 / 410 with the details.
 */
export async function settle(
  gw: Gateway,
  request: FastifyRequest,
  receipts: readonly string[],
  action: 'ack' | 'nack',
  options: { group?: string; delayMs?: number },
): Promise<{ count: number }> {
  const claims = verifyReceipts(gw, request, receipts, options.group);
  const op: Operation =
    action === 'ack' ? { action } : { action, ...(options.delayMs ? { delayMs: options.delayMs } : {}) };
  const results = await runAnywhere(gw, request, receipts, claims, op);
  return { count: answerResults(results, action) };
}

/** Throws the 409 / 410 / 503 for results that are not all done (or repeats); returns how many there are. */
export function answerResults(results: readonly Result[], action: 'ack' | 'nack' | 'extend'): number {
  const failed: { index: number; reason: string }[] = [];
  let brokerFailure: unknown;
  let expired = false;
  results.forEach((result, index) => {
    if (result.status === 'failed') {
      brokerFailure ??= result.error;
      failed.push({ index, reason: result.error instanceof Error ? result.error.message : String(result.error) });
    } else if (result.status !== 'done' && result.status !== 'repeat') {
      if (result.status !== 'conflict') expired = true;
      const extra =
        result.status === 'conflict' ? ` (${result.previous})` : result.status === 'gone' ? ` (${result.owner})` : '';
      failed.push({ index, reason: REASONS[result.status] + extra });
    }
  });
  if (failed.length === 0) return results.length;
  const settled = results.length - failed.length;
  const summary =
    `${failed.length} of ${results.length} receipt(s) could not be ${action}ed: ` +
    failed
      .slice(0, 3)
      .map((f) => `receipts[${f.index}]: ${f.reason}`)
      .join('; ') +
    (failed.length > 3 ? `; and ${failed.length - 3} more` : '') +
    `; the other ${settled} were ${action}ed`;
  if (brokerFailure !== undefined) {
    const cause = toBusError(brokerFailure, 'BUSBAR_ERR_BROKER', `${action} failed`);
    throw httpError(cause.code, `${summary}; retry the failed ones`, {
      status: 503,
      body: { settled, failed },
    });
  }
  throw httpError('BUSBAR_ERR_INVALID_RECEIPT', summary, { status: expired ? 410 : 409, body: { settled, failed } });
}

export function registerPullRoutes(app: FastifyInstance, gw: Gateway, api: ApiRegistry): void {
  const { pullQuery, ackBody, nackBody, wireMessage, errorBody } = gw.schemas;

  api.define(
    app,
    {
      method: 'GET',
      url: '/v1/types/:type/messages',
      operationId: 'pull',
      summary: 'Pull up to max messages for a group, waiting up to wait ms for the first',
      description:
        'Each message carries a receipt and is leased for lease ms: ack or nack it with POST /v1/acks or ' +
        '/v1/nacks before leaseExpiresAt, or it returns to the group. An empty list means nothing arrived in time. ' +
        'While the group holds server.prefetch unsettled leases through this gateway, the pull queues (within ' +
        'its wait) until one ends.',
      tag: 'messages',
      auth: 'consume',
      params: typeParams,
      querystring: pullQuery,
      responses: {
        200: {
          description: 'the messages (possibly none)',
          schema: { type: 'object', properties: { messages: { type: 'array', items: wireMessage } } },
        },
        429: {
          description:
            'too many long polls waiting, or the group held server.prefetch unsettled leases through this gateway ' +
            'for the whole wait',
          schema: errorBody,
        },
      },
    },
    async (request, reply) => {
      const { type } = request.params as { type: string };
      const query = request.query as PullOptions;
      const { messages, wire } = await pull(gw, request, reply, type, query);
      if (query.format === 'cloudevents' || request.headers.accept?.includes(BATCH)) {
        return reply.type(BATCH).send(`[${messages.map((m, i) => toStructured(m, wire[i])).join(',')}]`);
      }
      // Serialized here: the response schema's generated serializer walks every message's fields in JS, and
      // cost more per pull than everything else the gateway adds (docs in BENCHMARKS.md, REST gateway).
      return reply.type(JSON_UTF8).send(JSON.stringify({ messages: wire }));
    },
  );

  for (const action of ['ack', 'nack'] as const) {
    api.define(
      app,
      {
        method: 'POST',
        url: `/v1/${action}s`,
        operationId: action,
        summary:
          action === 'ack'
            ? 'Acknowledge messages by their receipts'
            : 'Return messages to their group by their receipts, optionally after delayMs',
        description:
          'Retrying with receipts already settled the same way succeeds again. A receipt whose lease ran out ' +
          'answers 410 (its message was returned and will come again); one settled the other way answers 409.',
        tag: 'messages',
        auth: 'token',
        body: action === 'ack' ? ackBody : nackBody,
        responses: {
          200: {
            description: 'every receipt settled',
            schema: { type: 'object', properties: { [`${action}ed`]: { type: 'integer' } } },
          },
          410: { description: 'some leases had run out; the others were settled', schema: errorBody },
        },
      },
      async (request) => {
        const body = request.body as { receipts: string[]; group?: string; delayMs?: number };
        const { count } = await settle(gw, request, body.receipts, action, body);
        return { [`${action}ed`]: count };
      },
    );
  }
}
