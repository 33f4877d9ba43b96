/**
 * Envelope <-> NATS message headers, after the CloudEvents NATS binding (binary content mode): every attribute is a
 * `ce-<name>` header whose value is percent-encoded (space, `"`, `%` and anything outside printable ASCII), the body
 * is the payload untouched. User headers travel under their own names with the same value encoding; names that would
 * clash with the binding or with JetStream (`ce-*`, `Nats-*`) are sent as `ce-<name>`, which reads back as `<name>`.
 */

import type { MsgHdrs } from '@nats-io/transport-node';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { BusError } from '../../errors.ts';
import { CE, completeEnvelope, SPEC_VERSION } from '../../message/envelope.ts';
import type { Envelope, TransportMessage } from '../../transport/contract.ts';
import { PARTS_HEADER, parseParts } from './large.ts';

export const CE_PREFIX = 'ce-';
/** JetStream drops a second message with the same id inside the stream's duplicate window. */
export const MSG_ID_HEADER = 'Nats-Msg-Id';

const ATTRIBUTE_OF: Record<string, keyof Envelope> = {
  [CE.id]: 'id',
  [CE.source]: 'source',
  [CE.type]: 'type',
  [CE.time]: 'time',
  [CE.contentType]: 'contentType',
  [CE.key]: 'key',
};

const HEADER_NAME = /^[\x21-\x39\x3b-\x7e]+$/;
const NEEDS_ENCODING = /[^\x21\x23\x24\x26-\x7e]+/g;

export function encodeValue(value: string): string {
  try {
    return value.replace(NEEDS_ENCODING, (run) => encodeURIComponent(run));
  } catch (error) {
    throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', `header value ${JSON.stringify(value)} is not valid Unicode`, {
      cause: error,
    });
  }
}

export function decodeValue(raw: string): string {
  let value = raw;
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
    value = value.slice(1, -1).replace(/\\(.)/g, '$1');
  }
  if (!value.includes('%')) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    // Not percent-encoding after all (a plain client's literal '%'): keep what was sent.
    return value;
  }
}

function wireName(name: string): string {
  if (!HEADER_NAME.test(name)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `header name ${JSON.stringify(name)} cannot travel over NATS: use printable ASCII without ':' or spaces`,
    );
  }
  const lower = name.toLowerCase();
  return lower.startsWith(CE_PREFIX) || lower.startsWith('nats-') ? CE_PREFIX + name : name;
}

export function toNatsHeaders(message: TransportMessage): MsgHdrs {
  const h = natsHeaders();
  h.set(`${CE_PREFIX}${CE.specversion}`, SPEC_VERSION);
  h.set(`${CE_PREFIX}${CE.id}`, encodeValue(message.id));
  h.set(`${CE_PREFIX}${CE.source}`, encodeValue(message.source));
  h.set(`${CE_PREFIX}${CE.type}`, encodeValue(message.type));
  h.set(`${CE_PREFIX}${CE.time}`, encodeValue(message.time));
  h.set(`${CE_PREFIX}${CE.contentType}`, encodeValue(message.contentType));
  if (message.key !== undefined) h.set(`${CE_PREFIX}${CE.key}`, encodeValue(message.key));
  for (const [name, value] of Object.entries(message.headers)) h.set(wireName(name), encodeValue(value));
  h.set(MSG_ID_HEADER, encodeValue(message.id));
  return h;
}

/** Where the broker stored a message: fills attributes a plain client left out. */
export interface StoredAt {
  stream: string;
  seq: number;
  /** Broker receipt time. */
  timestampNanos: bigint;
}

/** The message, and for a large one the stream sequences of the rest of its body (large.ts). */
export function fromNatsMessage(
  hdrs: MsgHdrs | undefined,
  body: Uint8Array,
  type: string,
  stored: StoredAt,
): { message: TransportMessage; parts: number[] | undefined } {
  let parts: number[] | undefined;
  const attributes: Record<string, string> = {};
  const userHeaders: Record<string, string> = {};
  let msgId: string | undefined;
  let specversion: string | undefined;
  if (hdrs) {
    for (const [name, values] of hdrs) {
      const raw = values[values.length - 1] ?? '';
      const lower = name.toLowerCase();
      if (lower.startsWith(CE_PREFIX)) {
        const rest = name.slice(CE_PREFIX.length);
        const attribute = ATTRIBUTE_OF[rest.toLowerCase()];
        if (attribute) attributes[attribute] = decodeValue(raw);
        else if (lower === PARTS_HEADER) parts = parseParts(raw);
        else if (rest.toLowerCase() === CE.specversion) specversion = decodeValue(raw);
        else userHeaders[rest] = decodeValue(raw);
      } else if (lower === MSG_ID_HEADER.toLowerCase()) {
        msgId = raw;
      } else if (lower.startsWith('nats-')) {
        // JetStream's own control headers are not user data.
      } else {
        userHeaders[name] = decodeValue(raw);
      }
    }
  }
  if (attributes.contentType === undefined) {
    // A plain NATS client states its media type the HTTP way.
    const name = Object.keys(userHeaders).find((n) => n.toLowerCase() === 'content-type');
    if (name !== undefined) {
      attributes.contentType = userHeaders[name]!;
      delete userHeaders[name];
    }
  }
  const message = completeEnvelope(
    {
      ...attributes,
      time: attributes.time || new Date(Number(stored.timestampNanos / 1_000_000n)).toISOString(),
      headers: userHeaders,
      specversion,
      body,
    },
    type,
    attributes.id || (msgId === undefined ? undefined : decodeValue(msgId)) || `${stored.stream}:${stored.seq}`,
  );
  return { message, parts };
}
