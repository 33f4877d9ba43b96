/**
 * busbar/http: request-scoped messaging for a bare node:http server.
 *
 *   http.createServer(withBusbar(bus, async (req, res) => {
 *     req.bus.send('order.created', order);            // sent once the response succeeds
 *     res.writeHead(201).end();
 *   }));
 *
 * A handler that throws (or rejects) gets a 500 and its messages are discarded.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { headerOf, holdResponse, userOf } from './node-response.ts';
import { type AdapterOptions, messagingFor, type Target } from './options.ts';
import type { RequestMessages } from './scope.ts';

export { broker, type Delivery, outbox, producers } from './delivery.ts';
export { REQUEST_HEADERS, RequestMessages } from './scope.ts';

export type BusbarRequest = IncomingMessage & { bus: RequestMessages; user?: unknown };
export type BusbarHandler = (req: BusbarRequest, res: ServerResponse) => unknown;

/** Default `user`: `req.user` as an auth layer left it (a string, or an object's id / sub / username). */
export function withBusbar(
  target: Target,
  handler: BusbarHandler,
  options: AdapterOptions<BusbarRequest> = {},
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { user = (req: BusbarRequest) => userOf(req.user), ...rest } = options;
  const messaging = messagingFor(target, rest);
  return async (req, res) => {
    const request = req as BusbarRequest;
    request.bus = messaging.begin({ header: headerOf(req), user: () => user(request) });
    const fail = holdResponse(messaging, request.bus, res);
    try {
      await handler(request, res);
    } catch (error) {
      await fail('error');
      if (!res.headersSent) {
        res.statusCode = 500;
        res.setHeader('content-type', 'application/json; charset=utf-8');
        res.end(JSON.stringify({ error: { message: 'internal error', requestId: request.bus.requestId } }));
      } else res.destroy(error as Error);
    }
  };
}
