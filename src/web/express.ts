/**
 * busbar/express: request-scoped messaging for Express (4 and 5).
 *
 *   app.use(busbarExpress(bus));
 *   app.post('/orders', async (req, res) => {
 *     req.bus.send('order.created', order, { key: order.customer });   // sent once the response succeeds
 *     res.status(201).json(order);
 *   });
 *
 * Messages leave when the handler ends a response with status < 400; an error (Express answers 500), a 4xx/5xx
 * response or a client that went away discards them. The user comes from `req.user` (e.g. Passport) by default.
 */
import type { NextFunction, Request, Response } from 'express';
import { headerOf, holdResponse, userOf } from './node-response.ts';
import { type AdapterOptions, messagingFor, type Target } from './options.ts';
import type { RequestMessages } from './scope.ts';

export { broker, type Delivery, outbox, producers } from './delivery.ts';
export { REQUEST_HEADERS, RequestMessages } from './scope.ts';

declare global {
  namespace Express {
    interface Request {
      /** The request's messages: queued by send(), sent once the response succeeds. */
      bus: RequestMessages;
    }
  }
}

export function busbarExpress(
  target: Target,
  options: AdapterOptions<Request> = {},
): (req: Request, res: Response, next: NextFunction) => void {
  const { user = (req: Request) => userOf((req as { user?: unknown }).user), ...rest } = options;
  const messaging = messagingFor(target, rest);
  return (req, res, next) => {
    req.bus = messaging.begin({ header: headerOf(req), user: () => user(req) });
    holdResponse(messaging, req.bus, res);
    next();
  };
}
