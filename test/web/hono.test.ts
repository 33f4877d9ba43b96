import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type HttpBindings, serve } from '@hono/node-server';
import { Hono } from 'hono';
import { type BusbarEnv, busbarHono } from '../../src/web/hono.ts';
import { abortRoute, outboxRoute, type RouteAnswer, runWebScenarios, sendRoute, USER_HEADER } from './scenarios.ts';

runWebScenarios({
  name: 'hono',
  async start(via, options) {
    const app = new Hono<BusbarEnv & { Bindings: HttpBindings }>();
    app.use(
      busbarHono(via, {
        onError: options.onError,
        onDiscard: options.onDiscard,
        user: (c) => c.req.header(USER_HEADER),
      }),
    );
    app.onError((_error, c) => c.json({ error: 'internal' }, 500));
    const reply = (c: { json(body: unknown, status: number): Response }, answer: RouteAnswer) =>
      c.json(answer.body, answer.status as 200);
    const query = (url: string) => new URL(url).searchParams;
    app.post('/send', (c) => reply(c, sendRoute(c.get('bus'), query(c.req.url))));
    app.post('/outbox', async (c) => reply(c, await outboxRoute(c.get('bus'), query(c.req.url), options.db)));
    app.post('/abort', async (c) => {
      const res = c.env.outgoing as ServerResponse;
      const closed = new Promise<void>((resolve) => res.once('close', () => resolve()));
      return reply(c, await abortRoute(c.get('bus'), query(c.req.url), closed, options));
    });
    const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
    });
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () =>
        new Promise<void>((resolve) => {
          (server as import('node:http').Server).closeAllConnections();
          server.close(() => resolve());
        }),
    };
  },
});
