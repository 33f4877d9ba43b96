/**
 * Bearer tokens with per-type publish / consume / admin scopes. With no tokens configured every request is allowed
 * (the gateway then listens only on loopback unless started with --insecure).
 */
import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { httpError } from './errors.ts';
import type { Scope, TokenConfig } from './options.ts';

export interface Principal {
  readonly name: string;
  /** Scope -> type patterns; undefined for the anonymous principal of a gateway without tokens (allowed all). */
  readonly scopes: Readonly<Record<Scope, readonly string[]>> | undefined;
}

export const ANONYMOUS: Principal = Object.freeze({ name: 'anonymous', scopes: undefined });

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function matches(pattern: string, type: string): boolean {
  if (pattern === '*') return true;
  return pattern.endsWith('*') ? type.startsWith(pattern.slice(0, -1)) : pattern === type;
}

export class Authenticator {
  readonly #byDigest = new Map<string, Principal>();

  constructor(tokens: readonly TokenConfig[]) {
    for (const token of tokens) {
      const digest = token.sha256 ?? sha256(token.token ?? '');
      this.#byDigest.set(digest, {
        name: token.name,
        scopes: { publish: token.publish ?? [], consume: token.consume ?? [], admin: token.admin ?? [] },
      });
    }
  }

  get enabled(): boolean {
    return this.#byDigest.size > 0;
  }

  /** The caller of `request`; throws 401 when tokens are configured and none (or an unknown one) is given. */
  authenticate(request: FastifyRequest): Principal {
    if (!this.enabled) return ANONYMOUS;
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer[ \t]+([^\s]+)\s*$/i.exec(header) : null;
    if (!match) {
      throw httpError(
        'BUSBAR_ERR_UNAUTHORIZED',
        'this gateway needs a bearer token: send the header "Authorization: Bearer <token>"',
      );
    }
    // Looked up by digest: lookup timing can only tell about the hash of a guess, never about a stored secret.
    const principal = this.#byDigest.get(sha256(match[1]!));
    if (!principal) {
      throw httpError('BUSBAR_ERR_UNAUTHORIZED', 'unknown bearer token: check the token given in Authorization');
    }
    return principal;
  }
}

export function allows(principal: Principal, scope: Scope, type: string): boolean {
  if (!principal.scopes) return true;
  return principal.scopes[scope].some((pattern) => matches(pattern, type));
}

/** Throws 403 unless `principal` holds `scope` for `type`. */
export function authorize(principal: Principal, scope: Scope, type: string): void {
  if (!allows(principal, scope, type)) {
    throw httpError(
      'BUSBAR_ERR_FORBIDDEN',
      `token '${principal.name}' has no ${scope} scope for type '${type}': add it to the token's ${scope} list in the config file`,
    );
  }
}

/** True when the principal holds any scope on the type (enough to see it listed and read its stats). */
export function seesType(principal: Principal, type: string): boolean {
  return allows(principal, 'admin', type) || allows(principal, 'consume', type) || allows(principal, 'publish', type);
}
