import { BusError } from '../errors.ts';

export interface ParsedUrl {
  /** e.g. `amqp:` */
  scheme: string;
  username?: string | undefined;
  password?: string | undefined;
  /** `host:port` entries of a comma-separated host list (`kafka://h1:9092,h2:9092`). */
  hosts: string[];
  /** Path after the host list, or the opaque part of `embedded:/path/to.db`. */
  path: string;
  query: Record<string, string>;
}

const URL_SHAPE = /^([a-z][a-z0-9+.-]*):(.*)$/i;

/** Parses broker URLs, including host lists that WHATWG URL rejects. */
export function parseBrokerUrl(url: string): ParsedUrl {
  const match = typeof url === 'string' ? URL_SHAPE.exec(url.trim()) : null;
  if (!match) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_URL',
      `invalid broker URL ${JSON.stringify(url)}: expected <scheme>:..., e.g. embedded:./bus.db, amqp://localhost, kafka://h1:9092,h2:9092`,
    );
  }
  const scheme = `${match[1]!.toLowerCase()}:`;
  let rest = match[2]!;
  const query: Record<string, string> = {};
  const q = rest.indexOf('?');
  if (q >= 0) {
    for (const [k, v] of new URLSearchParams(rest.slice(q + 1))) query[k] = v;
    rest = rest.slice(0, q);
  }
  if (!rest.startsWith('//')) return { scheme, hosts: [], path: decodeURIComponent(rest), query };
  rest = rest.slice(2);
  const slash = rest.indexOf('/');
  const authority = slash >= 0 ? rest.slice(0, slash) : rest;
  const path = slash >= 0 ? rest.slice(slash) : '';
  const at = authority.lastIndexOf('@');
  let username: string | undefined;
  let password: string | undefined;
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(':');
    username = decodeURIComponent(colon >= 0 ? userinfo.slice(0, colon) : userinfo);
    password = colon >= 0 ? decodeURIComponent(userinfo.slice(colon + 1)) : undefined;
  }
  const hosts = (at >= 0 ? authority.slice(at + 1) : authority).split(',').filter((h) => h.length > 0);
  for (const host of hosts) {
    if (!/^(\[[0-9a-f:.]+\]|[A-Za-z0-9._-]+)(:\d{1,5})?$/i.test(host)) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_URL',
        `invalid host ${JSON.stringify(host)} in broker URL: expected host or host:port`,
      );
    }
  }
  return { scheme, username, password, hosts, path, query };
}

/** The URL with any password replaced, for logs and errors. */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:/@]*:)[^@/]*@/, '$1***@');
}
