/**
 * `POST /v1/types/{type}/messages`: one message (the request body, with its Content-Type), a JSON batch
 * `{ "messages": [...] }`, or CloudEvents in any HTTP binding mode (../cloudevents.ts). Answers only after the broker
 * accepted every message; `Idempotency-Key` makes a retried POST publish once.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { message, type Outgoing } from '../../bus/producer.ts';
import { isJsonType } from '../../message/codec.ts';
import type { OutgoingOptions } from '../../message/envelope.ts';
import type { Principal } from '../auth.ts';
import { BATCH, eventMode, fromBinary, fromStructured, STRUCTURED } from '../cloudevents.ts';
import { brokerCall, httpError } from '../errors.ts';
import type { Gateway } from '../gateway.ts';
import { fingerprint, IdempotencyCache, type StoredAnswer } from '../idempotency.ts';
import type { ApiRegistry } from '../openapi.ts';
import { formatValidation, principalOf } from '../requests.ts';
import { typeParams } from '../schemas.ts';
import { fromWire, type WireOutgoing } from '../wire.ts';

const HEADER_PREFIX = 'busbar-header-';

type Validator = ((data: unknown) => boolean) & { errors?: unknown[] | null };

/** Parses a raw request body as JSON, with a 400 that says what is wrong. */
export function parseJson(raw: Buffer | undefined): unknown {
  if (!raw || raw.length === 0) {
    throw httpError('BUSBAR_ERR_INVALID_ARGUMENT', 'the body is empty: send a JSON object');
  }
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (error) {
    throw httpError('BUSBAR_ERR_INVALID_ARGUMENT', `the body is not valid JSON: ${(error as Error).message}`);
  }
}

export function sourceOf(gw: Gateway, principal: Principal): string {
  return gw.bus.config?.producerId ?? `busbar-gateway/${principal.name}`;
}

export function checkBatchSize(gw: Gateway, count: number): void {
  const limit = gw.settings.limits.batchMessages;
  if (count > limit) {
    throw httpError(
      'BUSBAR_ERR_PAYLOAD_TOO_LARGE',
      `a batch of ${count} messages exceeds the limit of ${limit}: split it into batches of at most ${limit}`,
    );
  }
}

/** A message of a request as the gateway read it: body, options, and a CloudEvent's own source. */
export interface RequestMessage {
  body: unknown;
  options: OutgoingOptions;
  source?: string | undefined;
}

/** The request's messages as the bus takes them; an item's own source (a CloudEvent's) wins over `source`. */
export function outgoing(source: string, items: readonly RequestMessage[]): Outgoing[] {
  return items.map((item) => message(item.body, { ...item.options, source: item.source ?? source }));
}

/**
 * Publishes once the broker accepted all, once per Idempotency-Key; `answer` shapes the success body. The bus builds
 * every envelope before it sends, so one bad message rejects the request with nothing published.
 */
export async function publishOnce(
  gw: Gateway,
  request: FastifyRequest,
  type: string,
  messages: readonly Outgoing[],
  print: () => string,
  answer: (ids: string[]) => unknown,
): Promise<StoredAnswer> {
  const key = IdempotencyCache.check(request.headers['idempotency-key']);
  const publish = async (): Promise<StoredAnswer> => {
    const ids = await brokerCall(`publishing to '${type}'`, gw.settings.limits.brokerTimeoutMs, () =>
      gw.bus.sendBatch(type, messages),
    );
    gw.metrics.publish(type, ids.length);
    return { status: 200, body: answer(ids) };
  };
  if (key === undefined) return publish();
  return gw.idempotency.run(
    `${principalOf(request).name}\0${request.routeOptions.url}\0${type}`,
    key,
    print(),
    publish,
  );
}

function messageHeaders(request: FastifyRequest): Record<string, string> | undefined {
  let headers: Record<string, string> | undefined;
  for (const [name, value] of Object.entries(request.headers)) {
    if (!name.startsWith(HEADER_PREFIX) || typeof value !== 'string') continue;
    const key = name.slice(HEADER_PREFIX.length);
    if (key === '') continue;
    headers ??= {};
    headers[key] = value;
  }
  return headers;
}

function single(
  request: FastifyRequest,
  raw: Buffer,
  contentType: string,
): { body: Uint8Array; options: { contentType: string; key?: string | undefined; headers?: Record<string, string> } } {
  const query = request.query as { key?: string };
  const headerKey = request.headers['busbar-key'];
  const key = query.key ?? (typeof headerKey === 'string' ? headerKey : undefined);
  return {
    body: new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength),
    options: { contentType, key, headers: messageHeaders(request) },
  };
}

/** Registers into a scope whose content type parser hands the body over raw (see app.ts). */
export function registerPublishRoutes(app: FastifyInstance, gw: Gateway, api: ApiRegistry): void {
  const { publishBatch, errorBody } = gw.schemas;

  api.define(
    app,
    {
      method: 'POST',
      url: '/v1/types/:type/messages',
      operationId: 'publish',
      summary: 'Publish one message (the body as is) or a batch { "messages": [...] }',
      description:
        'A JSON object with a top-level "messages" list is a batch; any other body is one message whose bytes ' +
        'and Content-Type are kept as sent. Answers once the broker durably accepted every message.',
      tag: 'messages',
      auth: 'publish',
      params: typeParams,
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: { key: { type: 'string', maxLength: 1024, description: 'key of a single message' } },
      },
      headers: {
        'Idempotency-Key': {
          description: 'a retried POST with the same key publishes once (1-200 visible ASCII characters)',
          schema: { type: 'string' },
        },
        'Busbar-Key': { description: 'key of a single message (same as ?key=)', schema: { type: 'string' } },
        'Busbar-Header-{name}': { description: 'a user header {name} of a single message', schema: { type: 'string' } },
      },
      rawBody: {
        'application/json': publishBatch,
        [STRUCTURED]: { description: 'one CloudEvent in the JSON event format (structured mode)', type: 'object' },
        [BATCH]: { description: 'CloudEvents in the JSON batch format', type: 'array', items: { type: 'object' } },
        '*/*': {
          description:
            'one message: these bytes, with this Content-Type; with ce-specversion and other ce-* headers, a ' +
            'CloudEvent in binary mode',
        },
      },
      responses: {
        200: {
          description: 'every message accepted by the broker',
          schema: { type: 'object', properties: { ids: { type: 'array', items: { type: 'string' } } } },
        },
        413: { description: 'body or batch too large', schema: errorBody },
      },
    },
    async (request: FastifyRequest, reply: FastifyReply) => {
      const { type } = request.params as { type: string };
      const raw = request.body as Buffer | undefined;
      const contentType = request.headers['content-type'];
      if (contentType === undefined) {
        throw httpError(
          'BUSBAR_ERR_UNSUPPORTED_MEDIA_TYPE',
          'send the message as the body with a Content-Type, or {"messages": [...]} as application/json',
        );
      }
      const source = sourceOf(gw, principalOf(request));
      let items: RequestMessage[];
      const mode = eventMode(contentType, request.headers);
      const parsed = isJsonType(contentType) && mode === undefined ? parseJson(raw) : undefined;
      if (mode === 'binary') {
        const { body, options } = single(request, raw ?? Buffer.alloc(0), contentType);
        items = [fromBinary(request.headers, body, contentType, type, options)];
      } else if (mode !== undefined) {
        items = fromStructured(raw ?? Buffer.alloc(0), type, mode === 'batch');
        checkBatchSize(gw, items.length);
      } else if (
        parsed !== null &&
        typeof parsed === 'object' &&
        !Array.isArray(parsed) &&
        Object.hasOwn(parsed, 'messages')
      ) {
        const list = (parsed as { messages: unknown }).messages;
        if (Array.isArray(list)) checkBatchSize(gw, list.length);
        const validate = request.compileValidationSchema(publishBatch) as Validator;
        if (!validate(parsed)) {
          throw httpError(
            'BUSBAR_ERR_INVALID_ARGUMENT',
            `${formatValidation((validate.errors ?? []) as [], 'body')}: see /openapi.json for what is accepted`,
          );
        }
        items = (parsed as { messages: WireOutgoing[] }).messages.map((item, i) => fromWire(item, i));
      } else {
        items = [single(request, raw ?? Buffer.alloc(0), contentType)];
      }
      const messages = outgoing(source, items);
      const query = request.query as { key?: string };
      const answer = await publishOnce(
        gw,
        request,
        type,
        messages,
        () =>
          fingerprint(
            type,
            contentType,
            query.key,
            JSON.stringify(
              Object.entries(request.headers).filter(([n]) => n.startsWith('busbar-') || n.startsWith('ce-')),
            ),
            raw,
          ),
        (ids) => ({ ids }),
      );
      return reply.code(answer.status).send(answer.body);
    },
  );
}
