/**
 * Dead letters under /v1/types/{type}/dead-letters: list (reason, attempts, original type and group, body), one by
 * id, redrive (one, a selection, or all) back to the original type, and purge. The same operations as
 * admin.deadLetters / redriveDeadLetters / purgeDeadLetters and `busbar dlq`, on every transport.
 */
import type { FastifyInstance } from 'fastify';
import type { DeadLetter } from '../../bus/dead-letters.ts';
import { brokerCall, httpError } from '../errors.ts';
import type { Gateway } from '../gateway.ts';
import type { ApiRegistry } from '../openapi.ts';
import { typeParams } from '../schemas.ts';
import { wireBody } from '../wire.ts';

/** A dead letter as JSON: the message's body as the gateway sends bodies (JSON, text, or base64). */
export function deadLetterJson(d: DeadLetter): Record<string, unknown> {
  const m = d.message;
  return {
    id: d.id,
    originalType: d.originalType,
    group: d.group ?? null,
    reason: d.reason ?? null,
    attempts: d.attempts ?? null,
    deadLetteredAt: d.deadLetteredAt ?? null,
    source: m.source,
    time: m.time,
    contentType: m.contentType,
    ...(m.key === undefined ? {} : { key: m.key }),
    headers: { ...m.headers },
    size: m.body.byteLength,
    ...wireBody(m.body, m.contentType),
  };
}

const deadLetterSchema = {
  type: 'object',
  additionalProperties: true,
  properties: {
    id: { type: 'string' },
    originalType: { type: 'string' },
    group: { type: ['string', 'null'] },
    reason: { type: ['string', 'null'] },
    attempts: { type: ['integer', 'null'] },
    deadLetteredAt: { type: ['string', 'null'] },
  },
} as const;

const limitQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { limit: { type: 'integer', minimum: 1, maximum: 10_000 } },
} as const;

/** Dead-letter operations wait for the last dead letter a while; they get more time than one broker call. */
const OPERATION_MS = 120_000;

export function registerDeadLetterRoutes(app: FastifyInstance, gw: Gateway, api: ApiRegistry): void {
  const admin = gw.bus.admin();

  api.define(
    app,
    {
      method: 'GET',
      url: '/v1/types/:type/dead-letters',
      operationId: 'listDeadLetters',
      summary: 'The dead letters of a type (oldest first) with reason, attempts, original type and group; none removed',
      tag: 'dead letters',
      auth: 'consume',
      params: typeParams,
      querystring: limitQuery,
      responses: {
        200: {
          description: 'dead letters',
          schema: {
            type: 'object',
            properties: { type: { type: 'string' }, deadLetters: { type: 'array', items: deadLetterSchema } },
          },
        },
        404: { description: 'no such type' },
      },
    },
    async (request) => {
      const { type } = request.params as { type: string };
      const { limit } = request.query as { limit?: number };
      const list = await brokerCall('listing dead letters', OPERATION_MS, () => admin.deadLetters(type, { limit }));
      return { type, deadLetterType: `${type}.dlq`, deadLetters: list.map(deadLetterJson) };
    },
  );

  api.define(
    app,
    {
      method: 'GET',
      url: '/v1/types/:type/dead-letters/messages/:id',
      operationId: 'peekDeadLetter',
      summary: 'One dead letter by message id, without removing it',
      tag: 'dead letters',
      auth: 'consume',
      params: {
        type: 'object',
        required: ['type', 'id'],
        properties: { ...typeParams.properties, id: { type: 'string', minLength: 1, maxLength: 512 } },
      },
      responses: { 200: { description: 'the dead letter', schema: deadLetterSchema }, 404: { description: 'none' } },
    },
    async (request) => {
      const { type, id } = request.params as { type: string; id: string };
      const found = await brokerCall('reading a dead letter', OPERATION_MS, () => admin.peekDeadLetter(type, id));
      if (!found) {
        throw httpError(
          'BUSBAR_ERR_NOT_FOUND',
          `no dead letter '${id}' of type '${type}': list them with GET /v1/types/${type}/dead-letters`,
        );
      }
      return deadLetterJson(found);
    },
  );

  api.define(
    app,
    {
      method: 'POST',
      url: '/v1/types/:type/dead-letters/redrive',
      operationId: 'redriveDeadLetters',
      summary: 'Send dead letters back to their original type: those named by ids, or all when ids is absent',
      tag: 'dead letters',
      auth: 'admin',
      params: typeParams,
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          ids: { type: 'array', maxItems: 10_000, items: { type: 'string', minLength: 1, maxLength: 512 } },
        },
      },
      responses: {
        200: {
          description: 'what was redriven, and ids asked for that were not found',
          schema: {
            type: 'object',
            properties: {
              redriven: { type: 'array', items: { type: 'string' } },
              missing: { type: 'array', items: { type: 'string' } },
            },
          },
        },
      },
    },
    async (request) => {
      const { type } = request.params as { type: string };
      const { ids } = (request.body ?? {}) as { ids?: string[] };
      return brokerCall('redriving dead letters', OPERATION_MS, () => admin.redriveDeadLetters(type, { ids }));
    },
  );

  api.define(
    app,
    {
      method: 'POST',
      url: '/v1/types/:type/dead-letters/purge',
      operationId: 'purgeDeadLetters',
      summary: 'Remove every dead letter of a type',
      tag: 'dead letters',
      auth: 'admin',
      params: typeParams,
      responses: { 200: { description: 'purged' } },
    },
    async (request) => {
      const { type } = request.params as { type: string };
      const removed = await brokerCall('purging dead letters', OPERATION_MS, () => admin.purgeDeadLetters(type));
      return { type, purged: true, ...(removed === undefined ? {} : { removed }) };
    },
  );
}
