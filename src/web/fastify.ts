/**
 * busbar/fastify: request-scoped messaging for Fastify, as a plugin that applies to the whole app.
 *
 *   await app.register(busbarFastify, { bus });
 *   app.post('/orders', async (request, reply) => {
 *     request.bus.send('order.created', order);   // sent once the response succeeds
 *     return reply.code(201).send(order);
 *   });
 *
 * Delivery runs in the onSend hook, after the status and payload are known and before anything is written, so a
 * failed delivery becomes the error response instead. A thrown error (the onError hook), a status >= 400 or a
 * client that went away first (onRequestAbort) discards the messages. The user comes from `request.user`
 * (@fastify/jwt, @fastify/passport) by default.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Delivery } from './delivery.ts';
import { userOf } from './node-response.ts';
import { type AdapterOptions, messagingFor, type Target } from './options.ts';
import type { RequestMessages } from './scope.ts';

export { broker, type Delivery, outbox, producers } from './delivery.ts';
export { REQUEST_HEADERS, RequestMessages } from './scope.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's messages: queued by send(), sent once the response succeeds. */
    bus: RequestMessages;
  }
}

export type BusbarFastifyOptions = AdapterOptions<FastifyRequest> & {
  /** A MessageBus, or a delivery mode: broker(bus), producers(...), outbox(...). */
  bus?: Target;
  via?: Delivery;
};

function plugin(app: FastifyInstance, options: BusbarFastifyOptions, done: (error?: Error) => void): void {
  const {
    bus,
    via,
    user = (request: FastifyRequest) => userOf((request as { user?: unknown }).user),
    ...rest
  } = options;
  let messaging: ReturnType<typeof messagingFor>;
  try {
    messaging = messagingFor((via ?? bus) as Target, rest);
  } catch (error) {
    done(error as Error);
    return;
  }
  app.decorateRequest('bus', null as unknown as RequestMessages);
  app.addHook('onRequest', async (request) => {
    request.bus = messaging.begin({
      frameworkId: request.id,
      header: (name) => {
        const value = request.headers[name];
        return Array.isArray(value) ? value[0] : value;
      },
      user: () => user(request),
    });
  });
  app.addHook('onSend', async (request, reply, payload) => {
    if (!request.bus) return payload;
    const result = await messaging.commit(request.bus, reply.statusCode);
    if (result.ok) return payload;
    reply.code(result.status);
    reply.header('content-type', 'application/json; charset=utf-8');
    reply.removeHeader('content-length');
    return result.body;
  });
  app.addHook('onError', async (request) => {
    if (request.bus) await messaging.commit(request.bus, 0, 'error');
  });
  app.addHook('onRequestAbort', async (request) => {
    if (request.bus) await messaging.commit(request.bus, 0, 'aborted');
  });
  done();
}

/** Hooks registered by this plugin apply to every route of the app, not only to routes inside the plugin. */
export const busbarFastify = Object.assign(plugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'busbar',
});
