/** Operations: liveness, readiness (the broker answers), Prometheus metrics, and the OpenAPI document. */
import type { FastifyInstance } from 'fastify';
import { seesType } from '../auth.ts';
import { brokerCall } from '../errors.ts';
import type { Gateway } from '../gateway.ts';
import type { ApiRegistry } from '../openapi.ts';
import { renderMetrics } from '../prometheus.ts';
import { principalOf } from '../requests.ts';

const READY_TIMEOUT_MS = 3000;
const VERSION = '0.1.0';

export function registerOpsRoutes(app: FastifyInstance, gw: Gateway, api: ApiRegistry): void {
  api.define(
    app,
    {
      method: 'GET',
      url: '/healthz',
      operationId: 'healthz',
      summary: 'Liveness: the gateway process answers',
      tag: 'operations',
      auth: 'public',
      responses: { 200: { description: 'alive' } },
    },
    async () => ({ status: 'ok' }),
  );

  api.define(
    app,
    {
      method: 'GET',
      url: '/readyz',
      operationId: 'readyz',
      summary: 'Readiness: the broker answers (503 with Retry-After when it does not)',
      tag: 'operations',
      auth: 'public',
      responses: { 200: { description: 'ready' } },
    },
    async () => {
      await brokerCall('a readiness check', READY_TIMEOUT_MS, () => gw.bus.admin().listMessageTypes());
      return { status: 'ready', transport: gw.bus.transportName };
    },
  );

  api.define(
    app,
    {
      method: 'GET',
      url: '/metrics',
      operationId: 'metrics',
      summary: 'Prometheus metrics: gateway counters and per type / group queue stats',
      tag: 'operations',
      auth: 'token',
      responses: {
        200: { description: 'Prometheus text format', contentType: 'text/plain', schema: { type: 'string' } },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const stats = await brokerCall('reading stats', READY_TIMEOUT_MS, () => gw.bus.admin().stats()).catch(
        () => undefined,
      );
      const gauges = {
        leases: gw.leases.size,
        consumers: gw.pool.size,
        streams: gw.streams.size,
        longPolls: gw.longPolls,
        queuedPulls: gw.queuedPulls,
      };
      const visible = stats?.filter((s) => seesType(principal, s.type));
      return reply.type('text/plain; version=0.0.4; charset=utf-8').send(renderMetrics(gw.metrics, gauges, visible));
    },
  );

  let document: Record<string, unknown> | undefined;
  api.define(
    app,
    {
      method: 'GET',
      url: '/openapi.json',
      operationId: 'openapi',
      summary: 'This API as OpenAPI 3.1, generated from the schemas that validate requests',
      tag: 'operations',
      auth: 'public',
      responses: { 200: { description: 'the OpenAPI document' } },
    },
    async () => {
      document ??= api.document({ title: 'busbar REST gateway', version: VERSION, errorSchema: gw.schemas.errorBody });
      return document;
    },
  );
}
