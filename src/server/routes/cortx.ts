/**
 * CORTX's REST routes, with its JSON shapes but none of its faults: real JSON (not a Python repr), real HTTP
 * statuses, any consumer group per request, several messages per GET, and receipts on request.
 *   POST /MessageBus/message/{message_type}  {"messages": [...]}  ->  {"status_code": 200, "status": "success"}
 *   GET  /MessageBus/message/{message_type}?consumer_group=G     ->  {"messages": [...]}
 */
import type { FastifyInstance } from 'fastify';
import { httpError } from '../errors.ts';
import type { Gateway } from '../gateway.ts';
import { fingerprint } from '../idempotency.ts';
import type { ApiRegistry } from '../openapi.ts';
import { formatValidation, principalOf } from '../requests.ts';
import { wireBody } from '../wire.ts';
import { checkBatchSize, outgoing, parseJson, publishOnce, sourceOf } from './publish.ts';
import { pull } from './pull.ts';

const cortxParams = {
  type: 'object',
  required: ['message_type'],
  properties: { message_type: { type: 'string', pattern: '^[A-Za-z0-9](?!.*\\.\\.)[A-Za-z0-9._-]{0,199}$' } },
} as const;

type Validator = ((data: unknown) => boolean) & { errors?: unknown[] | null };

/** Registers into the raw-body scope: CORTX clients send JSON under various content types. */
export function registerCortxPublish(app: FastifyInstance, gw: Gateway, api: ApiRegistry): void {
  const { cortxPublish } = gw.schemas;
  api.define(
    app,
    {
      method: 'POST',
      url: '/MessageBus/message/:message_type',
      operationId: 'cortxSend',
      summary: 'CORTX: send {"messages": [...]}; strings are sent as text, other values as JSON',
      tag: 'cortx',
      auth: 'token',
      params: cortxParams,
      rawBody: { 'application/json': cortxPublish },
      responses: {
        200: {
          description: 'every message accepted by the broker',
          schema: {
            type: 'object',
            properties: {
              status_code: { type: 'integer', enum: [200] },
              status: { type: 'string', enum: ['success'] },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const { message_type: type } = request.params as { message_type: string };
      gw.authorize(request, 'publish', type);
      const raw = request.body as Buffer | undefined;
      const parsed = parseJson(raw);
      const list = (parsed as { messages?: unknown } | null)?.messages;
      if (Array.isArray(list)) checkBatchSize(gw, list.length);
      const validate = request.compileValidationSchema(cortxPublish) as Validator;
      if (!validate(parsed)) {
        throw httpError('BUSBAR_ERR_INVALID_ARGUMENT', formatValidation((validate.errors ?? []) as [], 'body'));
      }
      const items = (parsed as { messages: unknown[] }).messages.map((body) => ({ body, options: {} }));
      const messages = outgoing(sourceOf(gw, principalOf(request)), items);
      const answer = await publishOnce(
        gw,
        request,
        type,
        messages,
        () => fingerprint(type, raw),
        () => ({ status_code: 200, status: 'success' }),
      );
      return reply.code(answer.status).send(answer.body);
    },
  );
}

export function registerCortxRoutes(app: FastifyInstance, gw: Gateway, api: ApiRegistry): void {
  const { cortxQuery } = gw.schemas;
  api.define(
    app,
    {
      method: 'GET',
      url: '/MessageBus/message/:message_type',
      operationId: 'cortxReceive',
      summary: 'CORTX: receive {"messages": [...]} for any consumer_group (acked on delivery unless auto_ack=false)',
      description:
        'Bodies come as JSON values (JSON content), strings (text) or base64 strings (other bytes). With ' +
        'auto_ack=false the answer also has "receipts", one per message, to settle with POST /v1/acks.',
      tag: 'cortx',
      auth: 'token',
      params: cortxParams,
      querystring: cortxQuery,
      responses: {
        200: {
          description: 'the messages (possibly none)',
          schema: {
            type: 'object',
            properties: { messages: { type: 'array' }, receipts: { type: 'array', items: { type: 'string' } } },
          },
        },
      },
    },
    async (request, reply) => {
      const { message_type: type } = request.params as { message_type: string };
      gw.authorize(request, 'consume', type);
      const q = request.query as {
        consumer_group: string;
        max: number;
        wait: number;
        lease: number;
        auto_ack: boolean;
      };
      const { messages, wire } = await pull(gw, request, reply, type, {
        group: q.consumer_group,
        max: q.max,
        wait: q.wait,
        lease: q.lease,
        autoAck: q.auto_ack,
        offset: 'earliest',
      });
      const bodies = messages.map((m) => wireBody(m.raw, m.contentType).body);
      return reply.send(q.auto_ack ? { messages: bodies } : { messages: bodies, receipts: wire.map((w) => w.receipt) });
    },
  );
}
