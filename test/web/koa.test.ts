import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { busbarKoa } from '../../src/web/koa.ts';
import { abortRoute, outboxRoute, type RouteAnswer, runWebScenarios, sendRoute, USER_HEADER } from './scenarios.ts';

runWebScenarios({
  name: 'koa',
  async start(via, options) {
    const app = new Koa();
    app.silent = true; // a handler's error is part of the test, not news for stderr
    app.use(
      busbarKoa(via, {
        onError: options.onError,
        onDiscard: options.onDiscard,
        user: (ctx) => ctx.get(USER_HEADER) || undefined,
      }),
    );
    app.use(async (ctx) => {
      const reply = (answer: RouteAnswer) => {
        ctx.status = answer.status;
        ctx.body = answer.body;
      };
      const query = new URLSearchParams(ctx.querystring);
      if (ctx.path === '/send') reply(sendRoute(ctx.bus, query));
      else if (ctx.path === '/outbox') reply(await outboxRoute(ctx.bus, query, options.db));
      else if (ctx.path === '/abort') {
        const closed = new Promise<void>((resolve) => ctx.res.once('close', () => resolve()));
        reply(await abortRoute(ctx.bus, query, closed, options));
      }
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
