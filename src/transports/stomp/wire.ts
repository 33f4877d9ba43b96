/**
 * The wire mapping (docs/wire/stomp.md): Artemis names for types and groups, and how a message travels as a STOMP 1.2
 * frame. CloudEvents attributes are `ce-<name>` headers as in the CloudEvents HTTP binary mode, except
 * datacontenttype, which is STOMP's own `content-type`; user headers travel under their own names unless STOMP or
 * Artemis claims the name, in which case they travel as `busbar-header-<name>`. The body is the payload, untouched,
 * always with `content-length` (without it Artemis would store a text message and stop at the first NUL byte).
 *
 * Header names and values are escaped here per STOMP 1.2 (\\ \n \r \c), not by stompjs: stompjs escapes values but
 * not names, and un-escapes `\\n` as a newline (its replacements run in the wrong order). The connection turns its
 * escaping off (link.ts).
 */

import type { TransportMessage } from '../../transport/contract.ts';
import { CE, completeEnvelope, SPEC_VERSION } from '../../transport/envelope.ts';

/** Artemis address of a message type: multicast, one copy per group queue. */
export const addressOf = (type: string): string => type;
/**
 * A group's durable queue. Artemis queue names are unique across the broker, so the name carries the type; ':' never
 * occurs in type or group names, so `a.b` + `c` and `a` + `b.c` cannot collide as they would with a '.'.
 */
export const queueOf = (type: string, group: string): string => `${type}:${group}`;
/** Fully qualified queue name: SUBSCRIBE and SEND on it reach that one queue (and SUBSCRIBE creates it). */
export const fqqnOf = (type: string, group: string): string => `${addressOf(type)}::${queueOf(type, group)}`;

/** The attempt number of a copy re-sent by a nack or an ack timeout (absent on a first send). */
export const ATTEMPT_HEADER = 'busbar-attempt';
/** Prefix of a user header whose own name STOMP or Artemis claims. */
export const HEADER_PREFIX = 'busbar-header-';
const CE_PREFIX = 'ce-';

/**
 * Names STOMP frames, Artemis, or this mapping give a meaning: a user header so named travels under HEADER_PREFIX.
 * Artemis returns every header of a SEND as a header of the MESSAGE, and adds these on delivery.
 */
const CLAIMED = new Set([
  'destination',
  'destination-type',
  'subscription',
  'subscription-type',
  'message-id',
  'ack',
  'receipt',
  'receipt-id',
  'content-length',
  'content-type',
  'persistent',
  'redelivered',
  'expires',
  'priority',
  'timestamp',
  'reply-to',
  'correlation-id',
  'type',
  'transaction',
  ATTEMPT_HEADER,
]);

/** Headers Artemis adds on delivery or keeps for itself: never shown as user headers. */
const BROKER_HEADERS = new Set([
  'subscription',
  'message-id',
  'ack',
  'destination',
  'destination-type',
  'content-length',
  'persistent',
  'redelivered',
  'expires',
  'priority',
  'timestamp',
  'correlation-id',
  'reply-to',
  'type',
  'receipt',
  'amqMessageId',
  ATTEMPT_HEADER,
]);

function claimed(name: string): boolean {
  return (
    CLAIMED.has(name) ||
    name.startsWith(CE_PREFIX) ||
    name.startsWith(HEADER_PREFIX) ||
    name.startsWith('_AMQ') ||
    name.startsWith('__AMQ') ||
    name.startsWith('AMQ_') ||
    name.startsWith('JMS')
  );
}

/** STOMP 1.2 escaping of a header name or value. */
export function escapeHeader(text: string): string {
  let simple = true;
  for (let i = 0; i < text.length && simple; i++) {
    const c = text.charCodeAt(i);
    simple = c !== 92 && c !== 10 && c !== 13 && c !== 58;
  }
  if (simple) return text;
  return text.replace(/[\\\n\r:]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\c'));
}

/** The reverse of escapeHeader(), in one left-to-right pass; an undefined escape is kept as written. */
export function unescapeHeader(text: string): string {
  if (!text.includes('\\')) return text;
  return text.replace(/\\(.?)/g, (all, c: string) =>
    c === '\\' ? '\\' : c === 'n' ? '\n' : c === 'r' ? '\r' : c === 'c' ? ':' : all,
  );
}

export type Headers = Record<string, string>;

/** The escaped SEND headers of a message (without destination and receipt). */
export function sendHeaders(message: TransportMessage, attempt?: number): Headers {
  const headers: Headers = {
    persistent: 'true',
    'content-type': escapeHeader(message.contentType),
    'ce-specversion': SPEC_VERSION,
    'ce-id': escapeHeader(message.id),
    'ce-source': escapeHeader(message.source),
    'ce-type': escapeHeader(message.type),
    'ce-time': escapeHeader(message.time),
  };
  if (message.key !== undefined) headers[`${CE_PREFIX}${CE.key}`] = escapeHeader(message.key);
  for (const [name, value] of Object.entries(message.headers)) {
    headers[escapeHeader(claimed(name) ? `${HEADER_PREFIX}${name}` : name)] = escapeHeader(value);
  }
  if (attempt !== undefined && attempt > 1) headers[ATTEMPT_HEADER] = String(attempt);
  return headers;
}

/**
 * A MESSAGE frame's (escaped) headers and body as a TransportMessage, filling what a plain client left out. The type
 * is always `type`, the one whose queue delivered the message, so no header can re-type it.
 */
export function fromFrame(raw: Readonly<Headers>, body: Uint8Array, type: string): TransportMessage {
  const attributes: Record<string, string> = {};
  const headers: Headers = {};
  let contentType: string | undefined;
  for (const [rawName, rawValue] of Object.entries(raw)) {
    const name = unescapeHeader(rawName);
    const value = unescapeHeader(rawValue);
    if (name.startsWith(CE_PREFIX)) attributes[name.slice(CE_PREFIX.length)] = value;
    else if (name === 'content-type') contentType = value;
    else if (name.startsWith(HEADER_PREFIX)) headers[name.slice(HEADER_PREFIX.length)] = value;
    else if (!BROKER_HEADERS.has(name) && !claimed(name)) headers[name] = value;
  }
  return completeEnvelope(
    {
      id: attributes[CE.id],
      source: attributes[CE.source],
      time: attributes[CE.time],
      contentType: attributes[CE.contentType] ?? contentType,
      key: attributes[CE.key],
      specversion: attributes[CE.specversion],
      headers,
      body,
    },
    type,
  );
}

/**
 * 1 on a first delivery. A nacked or timed-out message comes back as a copy carrying its attempt number; Artemis
 * marks a message it delivers again after a lost connection or a closed consumer with `redelivered:true` (it gives
 * no count over STOMP), which adds one.
 */
export function attemptOf(raw: Readonly<Headers>): number {
  const copied = Number(raw[ATTEMPT_HEADER] ?? 1);
  const base = Number.isInteger(copied) && copied >= 1 ? copied : 1;
  return raw.redelivered === 'true' ? base + 1 : base;
}
