import type { Message } from './message.ts';

/** What bus.handle() runs per message: resolve = ack, throw = nack (retry) or dead-letter. */
export type HandlerFn<T = unknown> = (message: Message<T>) => Promise<void> | void;

/** A function from handler to handler (Watermill's shape): wraps the next one to add behaviour. */
export type Middleware = (next: HandlerFn) => HandlerFn;

/** The first middleware in the list runs outermost. */
export function compose(middlewares: readonly Middleware[], handler: HandlerFn): HandlerFn {
  return middlewares.reduceRight<HandlerFn>((next, middleware) => middleware(next), handler);
}

/** Fails a handler call that runs longer than `ms` (it is then retried like any failure). */
export function timeout(ms: number): Middleware {
  return (next) => (message) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`handler did not finish within ${ms} ms`)), ms);
      Promise.resolve()
        .then(() => next(message))
        .then(resolve, reject)
        .finally(() => clearTimeout(timer));
    });
}

/**
 * Skips messages whose id was handled successfully in the last `size` ids seen by this process
 * (effectively-once for redeliveries that reach the same process).
 */
export function deduplicate(size = 10_000): Middleware {
  const seen = new Set<string>();
  return (next) => async (message) => {
    if (seen.has(message.id)) return;
    await next(message);
    seen.add(message.id);
    if (seen.size > size) seen.delete(seen.values().next().value as string);
  };
}
