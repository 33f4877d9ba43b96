/**
 * Every failure the gateway answers is `{ "error": { "code": "BUSBAR_ERR_...", "message": "..." } }` with the HTTP
 * status the code calls for; a broker outage is 503 with Retry-After, never a 500 with a stack.
 */
import type { FastifyReply } from 'fastify';
import { BusError, type ErrorCode, isBusError } from '../errors.ts';

const STATUS: Partial<Record<ErrorCode, number>> = {
  BUSBAR_ERR_INVALID_ARGUMENT: 400,
  BUSBAR_ERR_INVALID_TYPE_NAME: 400,
  BUSBAR_ERR_INVALID_GROUP_NAME: 400,
  BUSBAR_ERR_USAGE: 400,
  BUSBAR_ERR_ENCODE: 400,
  BUSBAR_ERR_INVALID_RECEIPT: 400,
  BUSBAR_ERR_UNAUTHORIZED: 401,
  BUSBAR_ERR_FORBIDDEN: 403,
  BUSBAR_ERR_NOT_FOUND: 404,
  BUSBAR_ERR_UNKNOWN_TYPE: 404,
  BUSBAR_ERR_METHOD_NOT_ALLOWED: 405,
  BUSBAR_ERR_PARTITIONS: 409,
  BUSBAR_ERR_PAYLOAD_TOO_LARGE: 413,
  BUSBAR_ERR_MESSAGE_TOO_LARGE: 413,
  BUSBAR_ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  BUSBAR_ERR_UNSUPPORTED: 422,
  BUSBAR_ERR_IDEMPOTENCY_KEY: 422,
  BUSBAR_ERR_LIMIT: 429,
  BUSBAR_ERR_AUTH: 502,
  BUSBAR_ERR_CLOSED: 503,
  BUSBAR_ERR_CONNECTION: 503,
  BUSBAR_ERR_PUBLISH: 503,
  BUSBAR_ERR_TIMEOUT: 503,
  BUSBAR_ERR_ACK: 503,
  BUSBAR_ERR_BROKER: 503,
};

/** Seconds a client should wait before retrying a 429 or 503. */
export const RETRY_AFTER_SECONDS = 1;

export interface HttpErrorDetails {
  /** Overrides the status the code maps to (e.g. 410 for an expired receipt, 431 for a too-large head). */
  status?: number;
  /** Extra JSON fields placed beside code and message in the answer. */
  body?: Record<string, unknown>;
  retryAfterSeconds?: number;
}

/** A BusError meant for an HTTP answer. */
export function httpError(code: ErrorCode, message: string, details: HttpErrorDetails = {}): BusError {
  return new BusError(code, message, { details: { http: details } });
}

export interface ErrorAnswer {
  status: number;
  headers: Record<string, string>;
  body: { error: Record<string, unknown> };
}

function httpDetails(error: BusError): HttpErrorDetails {
  return (error.details?.http as HttpErrorDetails | undefined) ?? {};
}

/** Turns any failure into the answer to send; unexpected ones become a 500 without internals. */
export function errorAnswer(error: unknown): ErrorAnswer {
  if (!isBusError(error)) {
    return {
      status: 500,
      headers: {},
      body: {
        error: {
          code: 'BUSBAR_ERR_INTERNAL',
          message: "internal error in the gateway; the gateway's log has the details",
        },
      },
    };
  }
  const details = httpDetails(error);
  const status = details.status ?? STATUS[error.code] ?? (error.retryable ? 503 : 500);
  const headers: Record<string, string> = {};
  if (status === 503 || status === 429) {
    headers['retry-after'] = String(details.retryAfterSeconds ?? RETRY_AFTER_SECONDS);
  }
  if (status === 401) headers['www-authenticate'] = 'Bearer realm="busbar"';
  return {
    status,
    headers,
    body: { error: { code: error.code, message: error.message, ...details.body } },
  };
}

export function sendError(reply: FastifyReply, error: unknown): FastifyReply {
  const answer = errorAnswer(error);
  if (answer.status >= 500 && !isBusError(error)) reply.log.error({ err: error }, 'unexpected gateway failure');
  return reply.code(answer.status).headers(answer.headers).type('application/json; charset=utf-8').send(answer.body);
}

/** The raw form, for answers written before Fastify has a reply (client errors on the socket). */
export function rawErrorResponse(status: number, code: ErrorCode, message: string): string {
  const body = JSON.stringify({ error: { code, message } });
  const reason = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }[status] ?? '';
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}

/** Wraps a broker call: a failure that is not a BusError becomes a retryable BUSBAR_ERR_BROKER (503). */
export async function brokerCall<T>(what: string, timeoutMs: number, call: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new BusError('BUSBAR_ERR_TIMEOUT', `the broker did not answer ${what} within ${timeoutMs} ms; retry later`),
        ),
      timeoutMs,
    );
    timer.unref();
  });
  try {
    return await Promise.race([call(), timeout]);
  } catch (error) {
    if (isBusError(error)) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new BusError('BUSBAR_ERR_BROKER', `${what} failed at the broker: ${reason}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
}
