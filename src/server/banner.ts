import type { ResolvedConfig } from '../config/index.ts';
import { redactUrl } from '../config/url.ts';
import { parseEmbeddedOptions } from '../transports/embedded/options.ts';

/**
 * Where the messages live, for banners (`serve`, `demo`): the embedded broker's database file as an absolute path
 * (the one thing a user must know to back it up, move it or delete it), else the broker URL without its password.
 */
export function describeBroker(config: ResolvedConfig | undefined): string | undefined {
  if (!config) return undefined;
  if (config.scheme === 'embedded:') return `database file ${parseEmbeddedOptions(config.transport).path}`;
  if (config.scheme === 'memory:') return 'in this process only: nothing is kept after it stops';
  return redactUrl(config.transport.url);
}

/** What `busbar serve` prints at start: where it listens, where the messages live, a curl line to try, the console. */
export function banner(url: string, transport: string, tokens: boolean, broker?: string): string {
  const auth = tokens ? ` -H 'Authorization: Bearer <token>'` : '';
  return [
    `busbar gateway listening on ${url} (broker: ${transport}${broker ? `, ${broker}` : ''})`,
    'try:',
    `  curl${auth} -X POST ${url}/v1/types/demo/messages -H 'Content-Type: text/plain' -d 'hello'`,
    `  curl${auth} '${url}/v1/types/demo/messages?group=g1&wait=1000'`,
    `console: ${url}/ in a browser`,
    `reference: ${url}/openapi.json and docs/rest.md`,
  ].join('\n');
}
