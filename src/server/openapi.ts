/**
 * Routes are declared once (method, path, schemas, answers) and both registered with Fastify and recorded here, so
 * `GET /openapi.json` is generated from the very schemas that validate requests.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

type Schema = Readonly<Record<string, unknown>>;

export interface RouteSpec {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Fastify form: `/v1/types/:type/messages`. */
  url: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  /** What a bearer token needs; 'public' routes need no token at all. */
  auth: 'public' | 'token' | 'publish' | 'consume' | 'admin';
  params?: Schema;
  querystring?: Schema;
  /** Validated by Fastify as JSON. */
  body?: Schema;
  /** Documented only: a body the handler reads raw (publish takes any content type). */
  rawBody?: Record<string, Schema>;
  headers?: Record<string, { description: string; schema: Schema }>;
  responses: Record<number, { description: string; schema?: Schema; contentType?: string }>;
}

type Handler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

export class ApiRegistry {
  readonly #routes: RouteSpec[] = [];

  /** Registers the route with Fastify (validating params, querystring and body) and records it for the document. */
  define(app: FastifyInstance, spec: RouteSpec, handler: Handler): void {
    this.#routes.push(spec);
    app.route({
      method: spec.method,
      url: spec.url,
      config: { auth: spec.auth },
      schema: {
        ...(spec.params ? { params: spec.params } : {}),
        ...(spec.querystring ? { querystring: spec.querystring } : {}),
        ...(spec.body ? { body: spec.body } : {}),
      },
      // The document marks a PUT's body optional (`curl -X PUT .../v1/types/t` registers a type): no body is {}.
      ...(spec.method === 'PUT' && spec.body
        ? {
            preValidation: async (request: FastifyRequest) => {
              request.body ??= {};
            },
          }
        : {}),
      handler,
    });
  }

  document(info: { title: string; version: string; errorSchema: Schema }): Record<string, unknown> {
    const paths: Record<string, Record<string, unknown>> = {};
    for (const spec of this.#routes) {
      const path = spec.url.replace(/:([A-Za-z_]+)/g, '{$1}');
      const parameters: unknown[] = [];
      for (const [where, schema] of [
        ['path', spec.params],
        ['query', spec.querystring],
      ] as const) {
        const properties = (schema?.properties ?? {}) as Record<string, Schema>;
        const required = (schema?.required ?? []) as string[];
        for (const [name, property] of Object.entries(properties)) {
          const { description, ...rest } = property;
          parameters.push({
            name,
            in: where,
            required: where === 'path' || required.includes(name),
            description,
            schema: rest,
          });
        }
      }
      for (const [name, header] of Object.entries(spec.headers ?? {})) {
        parameters.push({
          name,
          in: 'header',
          required: false,
          description: header.description,
          schema: header.schema,
        });
      }
      const responses: Record<string, unknown> = {};
      for (const [status, answer] of Object.entries(spec.responses)) {
        responses[status] = {
          description: answer.description,
          ...(answer.schema
            ? { content: { [answer.contentType ?? 'application/json']: { schema: answer.schema } } }
            : {}),
        };
      }
      responses.default = {
        description: 'any failure: a JSON error with a BUSBAR_ERR_* code (see docs/errors.md)',
        content: { 'application/json': { schema: info.errorSchema } },
      };
      const content = spec.body
        ? { 'application/json': { schema: spec.body } }
        : spec.rawBody
          ? Object.fromEntries(Object.entries(spec.rawBody).map(([type, schema]) => [type, { schema }]))
          : undefined;
      paths[path] ??= {};
      paths[path][spec.method.toLowerCase()] = {
        operationId: spec.operationId,
        summary: spec.summary,
        ...(spec.description ? { description: spec.description } : {}),
        tags: [spec.tag],
        ...(spec.auth === 'public' ? { security: [] } : {}),
        ...(spec.auth !== 'public' && spec.auth !== 'token' ? { 'x-busbar-scope': spec.auth } : {}),
        ...(parameters.length ? { parameters } : {}),
        ...(content ? { requestBody: { required: spec.method !== 'PUT', content } } : {}),
        responses,
      };
    }
    return {
      openapi: '3.1.0',
      info: { title: info.title, version: info.version },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
      paths,
    };
  }
}
