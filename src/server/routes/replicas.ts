/**
 * Lease extension and replica-to-replica settling:
 * - `POST /v1/leases` `{ receipts, leaseMs?, group? }` moves each lease's expiry to leaseMs from now (never past the
 *   broker's own lease on the message), through any replica;
 * - `POST /v1/replicas/settle` is what a replica calls on the replica that holds a lease (../replicas.ts), with the
 *   client's bearer token; it never forwards further.
 * Every answer carries `Busbar-Replica`: the id of the replica that gave it.
 */
import type { FastifyInstance } from 'fastify';
import type { Gateway } from '../gateway.ts';
import type { ExtendResult } from '../leases.ts';
import type { ApiRegistry } from '../openapi.ts';
import { REPLICA_HEADER, runAnywhere, settleForPeer, verifyReceipts } from '../replicas.ts';
import { answerResults } from './pull.ts';

export function registerReplicaRoutes(app: FastifyInstance, gw: Gateway, api: ApiRegistry): void {
  const { errorBody, ackBody } = gw.schemas;
  const limits = gw.settings.limits;
  const leaseMs = {
    type: 'integer',
    minimum: 100,
    maximum: limits.maxLeaseMs,
    description:
      `ms from now the leases should last (default ${gw.defaultLeaseMs}); never past the broker's own lease on ` +
      `the message, maxLeaseMs (${limits.maxLeaseMs}) after the gateway received it`,
  } as const;

  app.addHook('onSend', async (_request, reply) => {
    reply.header(REPLICA_HEADER, gw.replica.id);
  });

  api.define(
    app,
    {
      method: 'POST',
      url: '/v1/leases',
      operationId: 'extendLeases',
      summary: 'Extend the leases of received messages, so a slow worker keeps them',
      description:
        'Each lease then ends leaseMs from now, at most maxLeaseMs after the gateway received the message (the ' +
        "broker's own lease); the answer gives each new leaseExpiresAt. Any replica takes any receipt.",
      tag: 'messages',
      auth: 'token',
      body: {
        type: 'object',
        required: ['receipts'],
        additionalProperties: false,
        properties: { ...ackBody.properties, leaseMs },
      },
      responses: {
        200: {
          description: 'every lease extended',
          schema: {
            type: 'object',
            properties: {
              extended: { type: 'integer' },
              leases: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    receipt: { type: 'string' },
                    leaseExpiresAt: { type: 'string', format: 'date-time' },
                  },
                },
              },
            },
          },
        },
        410: { description: 'some leases had run out or were settled; the others were extended', schema: errorBody },
      },
    },
    async (request) => {
      const body = request.body as { receipts: string[]; group?: string; leaseMs?: number };
      const claims = verifyReceipts(gw, request, body.receipts, body.group);
      const results = await runAnywhere(gw, request, body.receipts, claims, {
        action: 'extend',
        leaseMs: body.leaseMs ?? gw.defaultLeaseMs,
      });
      const count = answerResults(results, 'extend');
      return {
        extended: count,
        leases: results.map((r, i) => ({
          receipt: body.receipts[i],
          leaseExpiresAt: new Date((r as Extract<ExtendResult, { status: 'done' }>).expiresAt).toISOString(),
        })),
      };
    },
  );

  api.define(
    app,
    {
      method: 'POST',
      url: '/v1/replicas/settle',
      operationId: 'replicaSettle',
      summary: 'Settle leases held by this replica on behalf of another (replicas call it; clients need not)',
      description:
        'Acks, nacks or extends the leases this replica holds, one result per receipt; receipts it does not hold ' +
        'are unknown. Needs the consume scope of each receipt type, as the client that sent them to the other ' +
        'replica.',
      tag: 'messages',
      auth: 'token',
      body: {
        type: 'object',
        required: ['action', 'receipts'],
        additionalProperties: false,
        properties: {
          action: { type: 'string', enum: ['ack', 'nack', 'extend'] },
          receipts: ackBody.properties.receipts,
          delayMs: { type: 'integer', minimum: 0, maximum: limits.maxNackDelayMs },
          leaseMs,
        },
      },
      responses: {
        200: {
          description: 'one result per receipt',
          schema: { type: 'object', properties: { results: { type: 'array', items: { type: 'object' } } } },
        },
      },
    },
    async (request) =>
      settleForPeer(
        gw,
        request,
        request.body as { action: 'ack' | 'nack' | 'extend'; receipts: string[]; delayMs?: number; leaseMs?: number },
      ),
  );
}
