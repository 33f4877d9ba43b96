/**
 * Admin and analytics under /v1/types: list, register (partitions, expiry), deregister, purge, create a consumer
 * group ahead of its first reader, and stats per type and group (depth, unread, in-flight, oldest age, rates through this gateway).
 */
import type { FastifyInstance } from 'fastify';
import type { TypeStats } from '../../transport/contract.ts';
import { seesType } from '../auth.ts';
import { brokerCall, httpError } from '../errors.ts';
import type { Gateway } from '../gateway.ts';
import type { ApiRegistry } from '../openapi.ts';
import { principalOf } from '../requests.ts';
import { groupName, typeName, typeParams } from '../schemas.ts';

export function withRates(gw: Gateway, stats: TypeStats, leased: Map<string, number>): Record<string, unknown> {
  return {
    ...stats,
    publishedPerSec: gw.metrics.publishedPerSec(stats.type),
    groups: stats.groups.map((g) => ({
      ...g,
      leased: leased.get(`${stats.type}\0${g.group}`) ?? 0,
      ...gw.metrics.groupRates(stats.type, g.group),
    })),
  };
}

export function registerAdminRoutes(app: FastifyInstance, gw: Gateway, api: ApiRegistry): void {
  const { registerBody, groupBody, typeStats } = gw.schemas;
  const admin = gw.bus.admin();
  const timeout = gw.settings.limits.brokerTimeoutMs;
  const typeInfo = {
    type: 'object',
    properties: {
      type: { type: 'string' },
      partitions: { type: 'integer' },
      retention: {
        type: 'object',
        properties: { maxAgeMs: { type: 'integer' }, maxBytes: { type: 'integer' } },
      },
    },
  };

  async function info(type: string) {
    const types = await brokerCall('listing types', timeout, () => admin.listMessageTypes());
    return types.find((t) => t.type === type);
  }

  async function statsOf(type?: string): Promise<TypeStats[]> {
    return brokerCall('reading stats', timeout, () => admin.stats(type));
  }

  api.define(
    app,
    {
      method: 'GET',
      url: '/v1/types',
      operationId: 'listTypes',
      summary: 'List the message types this token may see',
      tag: 'admin',
      auth: 'token',
      responses: {
        200: {
          description: 'types',
          schema: { type: 'object', properties: { types: { type: 'array', items: typeInfo } } },
        },
      },
    },
    async (request) => {
      const types = await brokerCall('listing types', timeout, () => admin.listMessageTypes());
      return { types: types.filter((t) => seesType(principalOf(request), t.type)) };
    },
  );

  api.define(
    app,
    {
      method: 'PUT',
      url: '/v1/types/:type',
      operationId: 'registerType',
      summary: 'Register a type (idempotent); grow its partitions (fewer than it has: 409); set its expiry',
      tag: 'admin',
      auth: 'admin',
      params: typeParams,
      body: registerBody,
      responses: {
        200: { description: 'the type as it now is', schema: typeInfo },
        409: { description: 'fewer partitions than the type has (partitions never shrink)' },
      },
    },
    async (request) => {
      const { type } = request.params as { type: string };
      const body = (request.body ?? {}) as { partitions?: number; expireTimeMs?: number; dataLimitBytes?: number };
      await brokerCall('registering a type', timeout, async () => {
        await admin.registerMessageType(type, { partitions: body.partitions });
        if (body.expireTimeMs !== undefined || body.dataLimitBytes !== undefined) {
          await admin.setExpiry(type, { expireTimeMs: body.expireTimeMs, dataLimitBytes: body.dataLimitBytes });
        }
      });
      return (await info(type)) ?? { type, partitions: body.partitions ?? 1, retention: {} };
    },
  );

  api.define(
    app,
    {
      method: 'DELETE',
      url: '/v1/types/:type',
      operationId: 'deregisterType',
      summary: 'Deregister a type: its messages and groups are removed',
      tag: 'admin',
      auth: 'admin',
      params: typeParams,
      responses: { 200: { description: 'removed' }, 404: { description: 'no such type' } },
    },
    async (request) => {
      const { type } = request.params as { type: string };
      await gw.pool.closeType(type);
      await brokerCall('deregistering a type', timeout, () => admin.deregisterMessageType(type));
      return { type, deleted: true };
    },
  );

  api.define(
    app,
    {
      method: 'POST',
      url: '/v1/types/:type/purge',
      operationId: 'purgeType',
      summary: 'Remove every stored message of a type; groups stay with nothing unread',
      tag: 'admin',
      auth: 'admin',
      params: typeParams,
      responses: { 200: { description: 'purged' }, 404: { description: 'no such type' } },
    },
    async (request) => {
      const { type } = request.params as { type: string };
      await brokerCall('purging a type', timeout, () => admin.purge(type));
      return { type, purged: true };
    },
  );

  api.define(
    app,
    {
      method: 'PUT',
      url: '/v1/types/:type/groups/:group',
      operationId: 'createGroup',
      summary: 'Create a consumer group before its first reader, so it keeps what is sent meanwhile (idempotent)',
      description:
        'Creates the type too if it does not exist. An existing group keeps its position and what it has not read. ' +
        '422 BUSBAR_ERR_UNSUPPORTED where the transport cannot create a group before a consumer joins it.',
      tag: 'admin',
      auth: 'admin',
      params: {
        type: 'object',
        required: ['type', 'group'],
        properties: { type: typeName, group: groupName },
      },
      body: groupBody,
      responses: {
        200: {
          description: 'the group exists',
          schema: {
            type: 'object',
            properties: { type: { type: 'string' }, group: { type: 'string' }, offset: { type: 'string' } },
          },
        },
        422: { description: 'the transport cannot create a group ahead of its first consumer' },
      },
    },
    async (request) => {
      const { type, group } = request.params as { type: string; group: string };
      const offset = ((request.body ?? {}) as { offset?: 'earliest' | 'latest' }).offset ?? 'latest';
      await brokerCall('creating a consumer group', timeout, () => admin.createConsumerGroup(type, group, { offset }));
      return { type, group, offset };
    },
  );

  api.define(
    app,
    {
      method: 'GET',
      url: '/v1/types/:type/stats',
      operationId: 'typeStats',
      summary: 'Depth, bytes and partitions of a type; unread, in-flight, oldest age and rates per group',
      tag: 'admin',
      auth: 'token',
      params: typeParams,
      responses: { 200: { description: 'stats', schema: typeStats } },
    },
    async (request) => {
      const { type } = request.params as { type: string };
      if (!seesType(principalOf(request), type)) {
        throw httpError('BUSBAR_ERR_FORBIDDEN', `token '${principalOf(request).name}' has no scope on type '${type}'`);
      }
      // admin.stats of a type that does not exist throws BUSBAR_ERR_UNKNOWN_TYPE (404).
      const [stats] = await statsOf(type);
      return withRates(gw, stats!, gw.leases.perGroup());
    },
  );

  api.define(
    app,
    {
      method: 'GET',
      url: '/v1/stats',
      operationId: 'allStats',
      summary: 'Stats of every type this token may see',
      tag: 'admin',
      auth: 'token',
      responses: {
        200: {
          description: 'stats',
          schema: { type: 'object', properties: { types: { type: 'array', items: typeStats } } },
        },
      },
    },
    async (request) => {
      const leased = gw.leases.perGroup();
      const all = await statsOf();
      return { types: all.filter((s) => seesType(principalOf(request), s.type)).map((s) => withRates(gw, s, leased)) };
    },
  );
}
