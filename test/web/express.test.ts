import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { busbarExpress } from '../../src/web/express.ts';
import { abortRoute, outboxRoute, type RouteAnswer, runWebScenarios, sendRoute, USER_HEADER } from './scenarios.ts';

runWebScenarios({
  name: 'express',
  thrownErrorSeenAs: 'status',
  async start(via, options) {
    const app = express();
    app.set('env', 'test'); // Express prints the stack of a handler's error unless env is 'test'
    app.use(
      busbarExpress(via, {
        onError: options.onError,
        onDiscard: options.onDiscard,
        user: (req) => req.get(USER_HEADER),
      }),
    );
    const reply = (res: express.Response, answer: RouteAnswer) => res.status(answer.status).json(answer.body);
    const query = (req: express.Request) => new URL(req.originalUrl, 'http://x').searchParams;
    app.post('/send', (req, res) => {
      reply(res, sendRoute(req.bus, query(req)));
    });
    app.post('/outbox', async (req, res) => {
      reply(res, await outboxRoute(req.bus, query(req), options.db));
    });
    app.post('/abort', async (req, res) => {
      const closed = new Promise<void>((resolve) => res.once('close', () => resolve()));
      reply(res, await abortRoute(req.bus, query(req), closed, options));
    });
    const server = await new Promise<Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
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
