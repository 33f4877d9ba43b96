/**
 * Holding a node:http response until its messages are delivered: the shared part of the Express and node:http
 * adapters (frameworks that write the response themselves, through res.writeHead / res.write / res.end).
 * The response's head is held back until end(), so a failed delivery can still become an error response; a handler
 * that streams (res.write before end) has sent its head already, and then a failed delivery cuts the connection
 * rather than let a partial response pass as a success.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DiscardReason, RequestMessages, WebMessaging } from './scope.ts';

type Args = unknown[];

/** Reads one header of a node:http request (lower-case name; the first of repeated ones). */
export function headerOf(req: IncomingMessage): (name: string) => string | undefined {
  return (name) => {
    const value = req.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
}

/** Turns a user value the app attached (a string, or an object with id / username / sub) into a header value. */
export function userOf(value: unknown): string | undefined {
  if (typeof value === 'string' && value) return value;
  if (typeof value === 'number') return String(value);
  if (value && typeof value === 'object') {
    const { id, username, sub } = value as { id?: unknown; username?: unknown; sub?: unknown };
    for (const candidate of [id, sub, username]) {
      if ((typeof candidate === 'string' && candidate) || typeof candidate === 'number') return String(candidate);
    }
  }
  return undefined;
}

/**
 * Hooks `scope` to `res`: its messages are committed when the handler ends the response (delivered when the status
 * is < 400), discarded when the client goes away first. Returns `fail(reason)` for an adapter that learns of a
 * thrown error before the response ends.
 */
export function holdResponse(
  messaging: WebMessaging,
  scope: RequestMessages,
  res: ServerResponse,
): (reason: DiscardReason) => Promise<void> {
  const originalWriteHead = res.writeHead;
  const originalWrite = res.write;
  const originalEnd = res.end;
  let heldHead: Args | undefined;
  let committed = false;

  const restore = () => {
    res.writeHead = originalWriteHead;
    res.write = originalWrite;
    res.end = originalEnd;
  };
  const releaseHead = () => {
    if (heldHead) (originalWriteHead as (...a: Args) => unknown).apply(res, heldHead);
    heldHead = undefined;
  };

  res.writeHead = function writeHead(this: ServerResponse, ...args: Args) {
    heldHead = args;
    return this;
  } as ServerResponse['writeHead'];

  res.write = function write(this: ServerResponse, ...args: Args) {
    releaseHead();
    return (originalWrite as (...a: Args) => boolean).apply(this, args);
  } as ServerResponse['write'];

  res.end = function end(this: ServerResponse, ...args: Args) {
    if (committed) return (originalEnd as (...a: Args) => ServerResponse).apply(this, args);
    committed = true;
    const status = heldHead ? Number(heldHead[0]) : res.statusCode;
    void messaging.commit(scope, status).then((result) => {
      restore();
      if (result.ok) {
        releaseHead();
        (originalEnd as (...a: Args) => unknown).apply(res, args);
      } else if (!res.headersSent) {
        heldHead = undefined;
        for (const name of res.getHeaderNames()) res.removeHeader(name);
        res.statusCode = result.status;
        res.setHeader('content-type', 'application/json; charset=utf-8');
        res.setHeader('content-length', Buffer.byteLength(result.body));
        const callback = args.find((a) => typeof a === 'function');
        (originalEnd as (...a: Args) => unknown).call(res, result.body, callback);
      } else {
        res.destroy(result.error);
      }
    });
    return this;
  } as ServerResponse['end'];

  const fail = async (reason: DiscardReason) => {
    if (committed) return;
    committed = true;
    restore();
    releaseHead();
    await messaging.commit(scope, 0, reason);
  };
  res.once('close', () => {
    if (!committed) void fail('aborted');
  });
  return fail;
}
