import Fastify from 'fastify';
import { busbarFastify } from '../../src/web/fastify.ts';
import { abortRoute, outboxRoute, type RouteAnswer, runWebScenarios, sendRoute, USER_HEADER } from './scenarios.ts';

runWebScenarios({
  name: 'fastify',
  async start(via, options) {
    const app = Fastify({ forceCloseConnections: true });
    await app.register(busbarFastify, {
      via,
      onError: options.onError,
      onDiscard: options.onDiscard,
      user: (request) => request.headers[USER_HEADER] as string | undefined,
    });
    const query = (url: string) => new URL(url, 'http://x').searchParams;
    const reply = (r: import('fastify').FastifyReply, answer: RouteAnswer) => r.code(answer.status).send(answer.body);
    app.post('/send', async (request, r) => reply(r, sendRoute(request.bus, query(request.url))));
    app.post('/outbox', async (request, r) => reply(r, await outboxRoute(request.bus, query(request.url), options.db)));
    app.post('/abort', async (request, r) => {
      const closed = new Promise<void>((resolve) => r.raw.once('close', () => resolve()));
      return reply(r, await abortRoute(request.bus, query(request.url), closed, options));
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as import('node:net').AddressInfo;
    return { url: `http://127.0.0.1:${port}`, close: () => app.close() };
  },
});
