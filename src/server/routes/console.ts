/**
 * The web console at `/` (src/server/console/: plain HTML, CSS and an ES module, no build step). The page and its
 * files are public; everything it shows or changes goes through the REST API with the user's bearer token, so the
 * same scopes apply (admin to change anything). A strict Content-Security-Policy allows only the console's own
 * script and styles: even if a message body got into the page as markup, no script of it would run.
 */
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Gateway } from '../gateway.ts';

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
};

/** The console's files, beside this module's folder: src/server/console, or dist/server/console (the build copies them). */
function load(name: string): Buffer {
  return readFileSync(new URL(`../console/${name}`, import.meta.url));
}

export function registerConsoleRoutes(app: FastifyInstance, _gw: Gateway): void {
  const files = new Map(Object.entries(FILES).map(([name, type]) => [name, { body: load(name), type }]));
  const serve = (name: string) => {
    const file = files.get(name)!;
    app.route({
      method: 'GET',
      url: name === 'index.html' ? '/' : `/console/${name}`,
      config: { auth: 'public' },
      handler: async (_request, reply) => {
        reply
          .header('content-type', file.type)
          .header('content-security-policy', CSP)
          .header('x-content-type-options', 'nosniff')
          .header('referrer-policy', 'no-referrer')
          .header('cache-control', 'no-cache');
        return reply.send(file.body);
      },
    });
  };
  for (const name of files.keys()) serve(name);
}
