import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { withBusbar } from '../../src/web/http.ts';
import { abortRoute, outboxRoute, type RouteAnswer, runWebScenarios, sendRoute, USER_HEADER } from './scenarios.ts';

runWebScenarios({
  name: 'http',
  async start(via, options) {
    // Answers the way bare node:http code does: writeHead, then end.
    const reply = (res: ServerResponse, answer: RouteAnswer) =>
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
    const server = createServer(
      withBusbar(
        via,
        async (req, res) => {
          const url = new URL(req.url ?? '/', 'http://x');
          if (url.pathname === '/send') reply(res, sendRoute(req.bus, url.searchParams));
          else if (url.pathname === '/outbox') reply(res, await outboxRoute(req.bus, url.searchParams, options.db));
          else if (url.pathname === '/abort') {
            const closed = new Promise<void>((resolve) => res.once('close', () => resolve()));
            reply(res, await abortRoute(req.bus, url.searchParams, closed, options));
          } else reply(res, { status: 404, body: {} });
        },
        {
          onError: options.onError,
          onDiscard: options.onDiscard,
          user: (req) => req.headers[USER_HEADER] as string | undefined,
        },
      ),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
  },
});
