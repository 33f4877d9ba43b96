/**
 * Envelope <-> NATS message headers, in the CloudEvents NATS binding's binary content mode: every attribute is a
 * `ce-<name>` header (the content type `ce-datacontenttype`), the body is the payload untouched. A user header whose
 * name is a valid extension name travels as the extension `ce-<name>`; any other keeps its own name, unless that name
 * would be read as an attribute, a JetStream control header or busbar's marker (`ce-*`, `Content-Type`, `Nats-*`,
 * `busbar-encoded`) or cannot be a NATS header name: those travel together in the `ce-busbarheaders` extension.
 *
 * Values travel exactly as they are, so a plain client reads what was sent and busbar reads what a plain client
 * sent. Only a value NATS cannot carry as it is (line breaks and other control characters, leading or trailing
 * white space, which NATS trims) is percent-encoded, and its header's name is listed in `busbar-encoded`: a reader
 * decodes exactly the values listed there and no other. The content type is never encoded.
 */

import type { MsgHdrs } from '@nats-io/transport-node';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { BusError } from '../../errors.ts';
import { HEADERS_EXTENSION, isExtensionName, packHeaders, unpackHeaders } from '../../transport/cloudevents.ts';
import type { Envelope, TransportMessage } from '../../transport/contract.ts';
import { CE, completeEnvelope, SPEC_VERSION } from '../../transport/envelope.ts';
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

/** Lists the (wire) names of the headers whose values busbar percent-encoded, separated by spaces. */
export const ENCODED_HEADER = 'busbar-encoded';

const HEADER_NAME = /^[\x21-\x39\x3b-\x7e]+$/;
/** Encoded values escape these (as the CloudEvents HTTP binding does), so that what is left is printable ASCII. */
const ESCAPED = /[^\x21\x23\x24\x26-\x7e]+/g;
/** Control characters (CR and LF would end the header line). */
const CONTROL = /\p{Cc}/u;
/** With the u flag only an unpaired surrogate matches: a string that is not valid Unicode, so not UTF-8 either. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** NATS header values cannot hold CR or LF, lose leading and trailing white space, and are UTF-8. */
function travelsAsIs(value: string): boolean {
  return !CONTROL.test(value) && value.trim() === value && !LONE_SURROGATE.test(value);
}

function encodeValue(value: string): string {
  try {
    return value.replace(ESCAPED, (run) => encodeURIComponent(run));
  } catch (error) {
    throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', `header value ${JSON.stringify(value)} is not valid Unicode`, {
      cause: error,
    });
  }
}

function decodeValue(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    // Listed but not valid percent-encoding (a hand-made marker): keep what was sent.
    return raw;
  }
}

/** Sets headers on a NATS message, encoding only the values that need it and listing those in ENCODED_HEADER. */
class HeaderWriter {
  readonly headers = natsHeaders();
  readonly #encoded: string[] = [];

  set(name: string, value: string): void {
    if (travelsAsIs(value)) {
      this.headers.set(name, value);
    } else {
      this.headers.set(name, encodeValue(value));
      this.#encoded.push(name);
    }
  }

  done(): MsgHdrs {
    if (this.#encoded.length > 0) this.headers.set(ENCODED_HEADER, this.#encoded.join(' '));
    return this.headers;
  }
}

/** True when a header can travel under its own name: a NATS header name that no reader takes for anything else. */
function travelsPlain(name: string): boolean {
  if (!HEADER_NAME.test(name)) return false;
  const lower = name.toLowerCase();
  // The binding's readers (the Go SDK among them) take `content-type` for datacontenttype.
  return (
    !lower.startsWith(CE_PREFIX) && !lower.startsWith('nats-') && lower !== ENCODED_HEADER && lower !== 'content-type'
  );
}

export function toNatsHeaders(message: TransportMessage): MsgHdrs {
  if (CONTROL.test(message.contentType)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `content type ${JSON.stringify(message.contentType)} cannot travel over NATS: remove its control characters`,
    );
  }
  const h = new HeaderWriter();
  h.set(`${CE_PREFIX}${CE.specversion}`, SPEC_VERSION);
  h.set(`${CE_PREFIX}${CE.id}`, message.id);
  h.set(`${CE_PREFIX}${CE.source}`, message.source);
  h.set(`${CE_PREFIX}${CE.type}`, message.type);
  h.set(`${CE_PREFIX}${CE.time}`, message.time);
  // Never encoded: a media type is ASCII, and white space around it means nothing (NATS trims it).
  h.headers.set(`${CE_PREFIX}${CE.contentType}`, message.contentType);
  if (message.key !== undefined) h.set(`${CE_PREFIX}${CE.key}`, message.key);
  let packed: Record<string, string> | undefined;
  for (const name in message.headers) {
    const value = message.headers[name]!;
    if (isExtensionName(name)) h.set(CE_PREFIX + name, value);
    else if (travelsPlain(name)) h.set(name, value);
    else {
      packed ??= {};
      packed[name] = value;
    }
  }
  if (packed) h.set(CE_PREFIX + HEADERS_EXTENSION, packHeaders(packed));
  h.set(MSG_ID_HEADER, message.id);
  return h.done();
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
    const encoded = new Set<string>();
    for (const [name, values] of hdrs) {
      if (name.toLowerCase() !== ENCODED_HEADER) continue;
      for (const listed of values.join(' ').split(' ')) if (listed) encoded.add(listed.toLowerCase());
    }
    for (const [name, values] of hdrs) {
      const lower = name.toLowerCase();
      const last = values[values.length - 1] ?? '';
      const raw = encoded.has(lower) ? decodeValue(last) : last;
      if (lower === ENCODED_HEADER) continue;
      if (lower.startsWith(CE_PREFIX)) {
        const rest = name.slice(CE_PREFIX.length);
        const attribute = ATTRIBUTE_OF[rest.toLowerCase()];
        if (attribute) attributes[attribute] = raw;
        else if (lower === PARTS_HEADER) parts = parseParts(raw);
        else if (rest.toLowerCase() === CE.specversion) specversion = raw;
        else if (rest.toLowerCase() === HEADERS_EXTENSION) unpackHeaders(raw, userHeaders);
        // An extension; also how earlier versions escaped user headers named `ce-*`, `Nats-*` or `busbar-encoded`.
        else userHeaders[rest] = raw;
      } else if (lower === MSG_ID_HEADER.toLowerCase()) {
        msgId = raw;
      } else if (lower.startsWith('nats-')) {
        // JetStream's own control headers are not user data.
      } else {
        userHeaders[name] = raw;
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
    attributes.id || msgId || `${stored.stream}:${stored.seq}`,
  );
  return { message, parts };
}
