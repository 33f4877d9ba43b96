/**
 * 405 for a known path asked with the wrong method. Fastify routes by method first, so such a request reaches the
 * not-found handler; the table of every registered route's path pattern tells a wrong method (405 with `Allow`) from
 * a path that does not exist (404).
 */
import type { FastifyInstance } from 'fastify';

interface Pattern {
  readonly path: RegExp;
  readonly methods: Set<string>;
}

function toRegExp(url: string): RegExp {
  const source = url
    .split('/')
    .map((part) => (part.startsWith(':') ? '[^/]+' : part === '*' ? '.*' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}$`);
}

export class RouteMethods {
  readonly #patterns = new Map<string, Pattern>();

  /** Records every route registered on `app` (and its child scopes) from now on. */
  constructor(app: FastifyInstance) {
    app.addHook('onRoute', (route) => {
      const pattern = this.#patterns.get(route.url) ?? { path: toRegExp(route.url), methods: new Set<string>() };
      for (const method of [route.method].flat()) pattern.methods.add(method.toUpperCase());
      this.#patterns.set(route.url, pattern);
    });
  }

  /** The methods some route allows on this concrete path (sorted), or none when no route has the path. */
  allowed(path: string): string[] {
    const methods = new Set<string>();
    for (const pattern of this.#patterns.values()) {
      if (pattern.path.test(path)) for (const method of pattern.methods) methods.add(method);
    }
    return [...methods].sort();
  }
}
