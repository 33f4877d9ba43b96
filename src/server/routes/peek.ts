/** `GET /v1/types/{type}/peek?from=&fromTime=&count=`: browse stored messages without consuming them (admin.peek). */
import type { FastifyInstance } from 'fastify';
import type { PeekedMessage } from '../../transport/contract.ts';
import { brokerCall } from '../errors.ts';
import type { Gateway } from '../gateway.ts';
import type { ApiRegistry } from '../openapi.ts';
import { typeParams } from '../schemas.ts';
import { wireBody } from '../wire.ts';

/** A peeked message as JSON: the body as the gateway sends bodies (JSON, text, or base64 for anything else). */
export function peekedJson(p: PeekedMessage): Record<string, unknown> {
  const m = p.message;
  return {
    position: p.position,
    storedAt: p.storedAt === undefined ? null : new Date(p.storedAt).toISOString(),
    id: m.id,
    type: m.type,
    source: m.source,
    time: m.time,
    contentType: m.contentType,
    ...(m.key === undefined ? {} : { key: m.key }),
    headers: { ...m.headers },
    size: m.body.byteLength,
    ...wireBody(m.body, m.contentType),
  };
}

export function registerPeekRoutes(app: FastifyInstance, gw: Gateway, api: ApiRegistry): void {
  const admin = gw.bus.admin();
  api.define(
    app,
    {
      method: 'GET',
      url: '/v1/types/:type/peek',
      operationId: 'peekMessages',
      summary: 'Stored messages of a type, oldest first, from a position or a time, without consuming them',
      description:
        'Where the transport cannot browse (the peek row of docs/transports.md) the answer is 422 BUSBAR_ERR_UNSUPPORTED.',
      tag: 'admin',
      auth: 'consume',
      params: typeParams,
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          from: { type: 'string', maxLength: 64 },
          fromTime: { type: 'string', maxLength: 64 },
          count: { type: 'integer', minimum: 1, maximum: 1000 },
        },
      },
      responses: {
        200: {
          description: 'messages',
          schema: {
            type: 'object',
            properties: { messages: { type: 'array', items: { type: 'object', additionalProperties: true } } },
          },
        },
      },
    },
    async (request) => {
      const { type } = request.params as { type: string };
      const { from, fromTime, count } = request.query as { from?: string; fromTime?: string; count?: number };
      const found = await brokerCall('peeking', gw.settings.limits.brokerTimeoutMs, () =>
        admin.peek(type, { from, fromTime, count }),
      );
      return { type, messages: found.map(peekedJson) };
    },
  );
}
