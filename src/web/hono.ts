/**
 * busbar/hono: request-scoped messaging for Hono.
 *
 *   app.use(busbarHono(bus));
 *   app.post('/orders', async (c) => {
 *     c.get('bus').send('order.created', order);   // sent once the response succeeds
 *     return c.json(order, 201);
 *   });
 *
 * The messages leave after the handler returned a response with status < 400 and before that response is handed to
 * the client; a thrown error (c.error), a status >= 400 or an aborted request (the request's signal, which
 * @hono/node-server and other runtimes fire when the client goes away) discards them. The user comes from
 * `c.get('user')` by default, or `c.get('jwtPayload').sub` as Hono's JWT middleware leaves it.
 */
import type { Context, MiddlewareHandler } from 'hono';
import { userOf } from './node-response.ts';
import { type AdapterOptions, messagingFor, type Target } from './options.ts';
import type { RequestMessages } from './scope.ts';

export { broker, type Delivery, outbox, producers } from './delivery.ts';
export { REQUEST_HEADERS, RequestMessages } from './scope.ts';

export type BusbarEnv = { Variables: { bus: RequestMessages } };

function defaultUser(c: Context): string | undefined {
  const get = c.get as (key: string) => unknown;
  return userOf(get('user')) ?? userOf(get('jwtPayload'));
}

export function busbarHono(target: Target, options: AdapterOptions<Context> = {}): MiddlewareHandler<BusbarEnv> {
  const { user = defaultUser, ...rest } = options;
  const messaging = messagingFor(target, rest);
  return async (c, next) => {
    const scope = messaging.begin({
      header: (name) => c.req.header(name),
      user: () => user(c as unknown as Context),
    });
    c.set('bus', scope);
    try {
      await next();
    } catch (error) {
      await messaging.commit(scope, 0, 'error');
      throw error;
    }
    const aborted = c.req.raw.signal?.aborted ? 'aborted' : undefined;
    const result = await messaging.commit(scope, c.res.status, c.error ? 'error' : aborted);
    if (!result.ok) {
      c.res = new Response(result.body, {
        status: result.status,
        headers: { 'content-type': 'application/json; charset=utf-8' },
      });
    }
  };
}
