/**
 * busbar/koa: request-scoped messaging for Koa.
 *
 *   app.use(busbarKoa(bus));
 *   router.post('/orders', async (ctx) => {
 *     ctx.bus.send('order.created', order);   // sent once the response succeeds
 *     ctx.status = 201;
 *   });
 *
 * Koa writes the response after the middleware chain returns, so busbar delivers before that and can still turn a
 * failed delivery into an error response. A thrown error, a status >= 400 or a client that went away discards the
 * messages. The user comes from `ctx.state.user` (koa-passport, koa-jwt) by default.
 */
import type { Context, Middleware, Next } from 'koa';
import { headerOf, userOf } from './node-response.ts';
import { type AdapterOptions, messagingFor, type Target } from './options.ts';
import type { RequestMessages } from './scope.ts';

export { broker, type Delivery, outbox, producers } from './delivery.ts';
export { REQUEST_HEADERS, RequestMessages } from './scope.ts';

declare module 'koa' {
  interface DefaultContext {
    /** The request's messages: queued by send(), sent once the response succeeds. */
    bus: RequestMessages;
  }
}

export function busbarKoa(target: Target, options: AdapterOptions<Context> = {}): Middleware {
  const { user = (ctx: Context) => userOf(ctx.state.user), ...rest } = options;
  const messaging = messagingFor(target, rest);
  return async (ctx: Context, next: Next) => {
    const scope = messaging.begin({ header: headerOf(ctx.req), user: () => user(ctx) });
    ctx.bus = scope;
    let aborted = false;
    const onClose = () => {
      if (!ctx.res.writableFinished) aborted = true;
    };
    ctx.res.once('close', onClose);
    try {
      await next();
    } catch (error) {
      await messaging.commit(scope, 0, 'error');
      throw error;
    } finally {
      ctx.res.off('close', onClose);
    }
    const result = await messaging.commit(scope, ctx.status, aborted ? 'aborted' : undefined);
    if (!result.ok) {
      ctx.status = result.status;
      ctx.type = 'application/json';
      ctx.body = result.body;
    }
  };
}
