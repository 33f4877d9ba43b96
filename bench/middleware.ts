/**
 * Request-scoped messaging: what busbar's middleware costs per request, on each framework's real server over a
 * socket, on the memory broker (so the broker's own time does not hide the middleware's).
 * - `request + 1 message`: a route that queues one message through the middleware (sent after the response is
 *   decided) beside the same route without the middleware that calls `await bus.send()` itself before answering.
 * - `request, no message`: the middleware on a route that sends nothing, beside the same route without it.
 * Each round sends REQUESTS requests from CONCURRENCY keep-alive connections; a message is counted once the broker
 * confirmed it (the response arrives after that), a request once its 200 arrived.
 */
import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import Koa from 'koa';
import { MessageBus } from '../src/index.ts';
import { busbarExpress } from '../src/web/express.ts';
import { busbarFastify } from '../src/web/fastify.ts';
import { busbarHono } from '../src/web/hono.ts';
import { withBusbar } from '../src/web/http.ts';
import { busbarKoa } from '../src/web/koa.ts';
import type { RequestMessages } from '../src/web/scope.ts';
import type { BenchCase } from './harness.ts';
import { Cleanup, defineCase, freshName, type Tally } from './lib/case.ts';

const REQUESTS = 2000;
const CONCURRENCY = 16;
const BODY = { order: 1, text: 'x'.repeat(80) };

type Mode = 'middleware' | 'direct' | 'bare';

interface Running {
  port: number;
  close(): Promise<void>;
}

/** What each route does: queue through the middleware, send itself, or nothing at all. */
async function work(mode: Mode, send: boolean, bus: MessageBus, scope: RequestMessages | undefined, type: string) {
  if (!send) return;
  if (mode === 'middleware') scope!.send(type, BODY);
  else await bus.send(type, BODY);
}

function listening(server: Server): Promise<Running> {
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      }),
    );
  });
}

const FRAMEWORKS: Record<string, (mode: Mode, send: boolean, bus: MessageBus, type: string) => Promise<Running>> = {
  async express(mode, send, bus, type) {
    const app = express();
    if (mode === 'middleware') app.use(busbarExpress(bus));
    app.post('/', async (req, res) => {
      await work(mode, send, bus, req.bus, type);
      res.json({ ok: true });
    });
    return listening(createServer(app));
  },
  async fastify(mode, send, bus, type) {
    const app = Fastify();
    if (mode === 'middleware') await app.register(busbarFastify, { bus });
    app.post('/', async (request) => {
      await work(mode, send, bus, request.bus, type);
      return { ok: true };
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    return { port: (app.server.address() as AddressInfo).port, close: () => app.close() };
  },
  async koa(mode, send, bus, type) {
    const app = new Koa();
    if (mode === 'middleware') app.use(busbarKoa(bus));
    app.use(async (ctx) => {
      await work(mode, send, bus, ctx.bus, type);
      ctx.body = { ok: true };
    });
    return listening(createServer(app.callback()));
  },
  async hono(mode, send, bus, type) {
    const app = new Hono<{ Variables: { bus: RequestMessages } }>();
    if (mode === 'middleware') app.use(busbarHono(bus));
    app.post('/', async (c) => {
      await work(mode, send, bus, mode === 'middleware' ? c.get('bus') : undefined, type);
      return c.json({ ok: true });
    });
    const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
    });
    return {
      port: (server.address() as AddressInfo).port,
      close: () =>
        new Promise<void>((done) => {
          (server as Server).closeAllConnections();
          server.close(() => done());
        }),
    };
  },
  async http(mode, send, bus, type) {
    const handler = async (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
      await work(mode, send, bus, (req as { bus?: RequestMessages }).bus, type);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    };
    return listening(createServer(mode === 'middleware' ? withBusbar(bus, handler) : handler));
  },
};

/** REQUESTS POSTs over CONCURRENCY keep-alive connections; counts each 200 and its latency. */
async function load(port: number, tally: Tally): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  let next = 0;
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const req = request({ port, host: '127.0.0.1', method: 'POST', path: '/', agent }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end();
    });
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < REQUESTS) {
        next++;
        await tally.timed(one);
        tally.count();
      }
    }),
  );
  agent.destroy();
}

function frameworkCases(name: string, send: boolean): BenchCase {
  const cleanup = new Cleanup();
  let bus: MessageBus;
  const servers: Partial<Record<Mode, Running>> = {};
  const type = freshName(`web-${name}`);
  return defineCase({
    name: `${name} ${send ? 'request + 1 message' : 'request, no message'}`,
    transport: 'memory',
    messages: REQUESTS,
    async setup() {
      bus = await MessageBus.connect(`memory:${type}`);
      cleanup.add(() => bus.close());
      for (const mode of ['middleware', send ? 'direct' : 'bare'] as Mode[]) {
        servers[mode] = await FRAMEWORKS[name]!(mode, send, bus, type);
        cleanup.add(() => servers[mode]!.close());
      }
    },
    teardown: () => cleanup.run(),
    subject: (tally) => load(servers.middleware!.port, tally),
    baseline: (tally) => load(servers[send ? 'direct' : 'bare']!.port, tally),
  });
}

export default async function cases(): Promise<BenchCase[]> {
  return Object.keys(FRAMEWORKS).flatMap((name) => [frameworkCases(name, true), frameworkCases(name, false)]);
}
