/**
 * Push: `GET /v1/types/{type}/stream?group=G` as Server-Sent Events, written by hand on the raw response. Every
 * `message` event carries the same JSON (and receipt) as a pull; at most `inflight` unacked messages are out at once,
 * so a slow reader never drains the queue into leases. Comments keep idle connections alive.
 */
import { once } from 'node:events';
import type { FastifyInstance } from 'fastify';
import { toBusError } from '../../errors.ts';
import type { Offset } from '../../transport/contract.ts';
import { toStructured } from '../cloudevents.ts';
import { brokerCall, errorAnswer, httpError } from '../errors.ts';
import type { Gateway } from '../gateway.ts';
import type { ApiRegistry } from '../openapi.ts';
import { typeParams } from '../schemas.ts';
import { toWire } from '../wire.ts';

export const HEARTBEAT_MS = 15_000;

interface StreamQuery {
  group: string;
  lease: number;
  autoAck: boolean;
  offset: Offset;
  inflight: number;
  format: 'busbar' | 'cloudevents';
}

export function registerStreamRoutes(app: FastifyInstance, gw: Gateway, api: ApiRegistry): void {
  api.define(
    app,
    {
      method: 'GET',
      url: '/v1/types/:type/stream',
      operationId: 'stream',
      summary: 'Receive messages for a group as Server-Sent Events',
      description:
        'Each event is `event: message` with `id:` the message id and `data:` the same JSON as one pulled message ' +
        '(with its receipt). Ack or nack receipts with POST /v1/acks or /v1/nacks; the stream holds at most ' +
        '`inflight` unacked messages. An `event: error` with a JSON error ends the stream.',
      tag: 'messages',
      auth: 'consume',
      params: typeParams,
      querystring: gw.schemas.streamQuery,
      responses: {
        200: { description: 'an event stream', contentType: 'text/event-stream', schema: { type: 'string' } },
        429: { description: 'too many streams open', schema: gw.schemas.errorBody },
      },
    },
    async (request, reply) => {
      const { type } = request.params as { type: string };
      const query = request.query as StreamQuery;
      if (gw.streams.size >= gw.settings.limits.streams) {
        throw httpError(
          'BUSBAR_ERR_LIMIT',
          `too many streams open (limit ${gw.settings.limits.streams}): retry after Retry-After, or pull instead`,
        );
      }
      const entry = await gw.pool.acquire(type, query.group, query.offset);
      const res = reply.raw;
      let open = true;
      let held = 0;
      let wake: (() => void) | undefined;
      const end = () => {
        open = false;
        wake?.();
      };
      gw.streams.add(end);
      res.once('close', end);
      reply.hijack();
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      res.write(`retry: 3000\n: busbar stream of '${type}' for group '${query.group}'\n\n`);
      const pause = (ms: number) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, ms);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        }).finally(() => {
          wake = undefined;
        });
      try {
        while (open && !entry.closed) {
          if (!query.autoAck && held >= query.inflight) {
            await pause(HEARTBEAT_MS);
            continue;
          }
          let message: Awaited<ReturnType<typeof entry.consumer.receive>>;
          try {
            message = await entry.consumer.receive({ timeout: HEARTBEAT_MS });
          } catch (error) {
            gw.pool.discard(entry);
            throw toBusError(error, 'BUSBAR_ERR_BROKER', `receiving from '${type}' for group '${query.group}'`);
          }
          if (!open) {
            await message?.nack().catch(() => {});
            break;
          }
          if (message === null) {
            res.write(': keepalive\n\n');
            continue;
          }
          if (!query.autoAck && !gw.leases.leasable(message, query.lease)) {
            // Read ahead until its broker lease nearly ran out: back to the group, to come again with a full one.
            void message.nack().catch(() => {});
            continue;
          }
          let data: string;
          if (query.autoAck) {
            await brokerCall('ack', gw.settings.limits.brokerTimeoutMs, () => message.ack());
            gw.metrics.group('delivered', type, query.group);
            gw.metrics.group('acked', type, query.group);
            data = query.format === 'cloudevents' ? toStructured(message) : JSON.stringify(toWire(message));
          } else {
            held++;
            const [lease] = gw.leases.grant(entry, [message], query.lease, () => {
              held--;
              wake?.();
            });
            const wire = toWire(message, lease);
            data = query.format === 'cloudevents' ? toStructured(message, wire) : JSON.stringify(wire);
          }
          // A structured event embeds JSON data as sent, which may span lines: one `data:` line each.
          const lines = data.replace(/\r\n?|\n/g, '\ndata: ');
          if (!res.write(`id: ${message.id}\nevent: message\ndata: ${lines}\n\n`)) {
            await Promise.race([once(res, 'drain'), once(res, 'close')]);
          }
        }
      } catch (error) {
        if (open) res.write(`event: error\ndata: ${JSON.stringify(errorAnswer(error).body)}\n\n`);
      } finally {
        gw.streams.delete(end);
        gw.pool.release(entry);
        res.end();
      }
    },
  );
}
