/** Per-request helpers shared by the app and its routes: who is calling, and validation messages. */
import { parse } from 'node:querystring';
import type { FastifyRequest } from 'fastify';
import { ANONYMOUS, type Principal } from './auth.ts';

const principals = new WeakMap<FastifyRequest, Principal>();

export function setPrincipal(request: FastifyRequest, principal: Principal): void {
  principals.set(request, principal);
}

/** The caller of a request (set by the auth hook before any handler runs). */
export function principalOf(request: FastifyRequest): Principal {
  return principals.get(request) ?? ANONYMOUS;
}

export interface AjvError {
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** `querystring/max must be <= 1000`, naming the offending property where ajv knows it. */
export function formatValidation(errors: readonly AjvError[], where: string): string {
  const first = errors[0];
  if (!first) return `invalid ${where}`;
  const path = `${where}${first.instancePath ?? ''}`;
  const extra = first.params?.additionalProperty;
  if (extra !== undefined) return `${path} has an unknown property '${String(extra)}'`;
  if (first.params?.pattern !== undefined) {
    return /\/(type|group|message_type|consumer_group)$/.test(path)
      ? `${path} must be 1-200 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit, with no '..'`
      : `${path} has characters or a form that is not allowed`;
  }
  return `${path} ${first.message ?? 'is invalid'}`;
}

const NUMBER_PARAMS = new Set(['max', 'wait', 'lease', 'inflight', 'limit', 'count']);
const BOOLEAN_PARAMS = new Set(['autoAck', 'auto_ack']);

/**
 * Query strings carry text; the few numeric and boolean parameters are typed here by name, so that schema
 * validation can run without coercion (a group named "123" stays a string; `max=ten` stays an error).
 */
export function parseQuery(text: string): Record<string, unknown> {
  const query: Record<string, unknown> = Object.create(null);
  for (const [name, value] of Object.entries(parse(text))) {
    if (typeof value !== 'string') query[name] = value;
    else if (NUMBER_PARAMS.has(name) && /^\d{1,15}$/.test(value)) query[name] = Number(value);
    else if (BOOLEAN_PARAMS.has(name) && (value === 'true' || value === 'false')) query[name] = value === 'true';
    else query[name] = value;
  }
  return query;
}
