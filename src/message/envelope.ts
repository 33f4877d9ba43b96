/**
 * Building outgoing envelopes and completing incoming ones. The CloudEvents attribute names used on the wire are
 * fixed here once; each transport's wire mapping (docs/wire/) maps these onto its native headers.
 */
import { hostname } from 'node:os';
import { BusError } from '../errors.ts';
import type { Envelope, TransportMessage } from '../transport/contract.ts';
import { normaliseTime } from './cloudevents.ts';
import { type Body, encodeBody } from './codec.ts';
import { uuidv7 } from './uuid.ts';

export const SPEC_VERSION = '1.0';

/** CloudEvents attribute names as they appear in native headers (prefixed per binding, e.g. `ce_id`). */
export const CE = {
  id: 'id',
  source: 'source',
  type: 'type',
  specversion: 'specversion',
  time: 'time',
  contentType: 'datacontenttype',
  key: 'partitionkey',
} as const;

/** Headers the bus sets when it dead-letters a message. */
export const DEAD_LETTER_HEADERS = {
  reason: 'busbar-dlq-reason',
  originalType: 'busbar-dlq-type',
  attempts: 'busbar-dlq-attempts',
  group: 'busbar-dlq-group',
  time: 'busbar-dlq-time',
} as const;

/**
 * Headers a decoder adds when a plain client's attribute could not be kept as sent (docs/wire/): the message is
 * delivered all the same, never lost or stuck in its group.
 */
export const RECEIVED_HEADERS = {
  /** A `time` that is not RFC 3339 (`time` became the receipt time). */
  invalidTime: 'busbar-invalid-time',
  /** A `specversion` other than 1.0 (busbar reads the attributes by their 1.0 names and sends the message on as 1.0). */
  originalSpecversion: 'busbar-original-specversion',
} as const;

export const DEFAULT_SOURCE = `busbar://${hostname()}/${process.pid}`;

export interface OutgoingOptions {
  key?: string | undefined;
  headers?: Record<string, string> | undefined;
  contentType?: string | undefined;
  id?: string | undefined;
  /** RFC 3339 (written in UTC `Z` form); now when absent. */
  time?: string | undefined;
  /** The CloudEvents source of this message; the producer's (or the bus's) when absent. */
  source?: string | undefined;
}

function checkedTime(time: string): string {
  const normal = normaliseTime(time);
  if (normal === undefined) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `time ${JSON.stringify(time)} is not an RFC 3339 timestamp: write it like 2026-01-02T03:04:05Z`,
    );
  }
  return normal;
}

let isoMs = -1;
let iso = '';

/** `new Date().toISOString()`, made once per millisecond: a batch's messages mostly share it. */
function nowIso(): string {
  const ms = Date.now();
  if (ms !== isoMs) {
    iso = new Date(ms).toISOString();
    isoMs = ms;
  }
  return iso;
}

export function buildMessage(
  type: string,
  source: string,
  body: Body,
  options: OutgoingOptions = {},
): TransportMessage {
  const { bytes, contentType } = encodeBody(body, options.contentType);
  return {
    id: options.id ?? uuidv7(),
    type,
    source: options.source ?? source,
    time: options.time === undefined ? nowIso() : checkedTime(options.time),
    contentType,
    key: options.key,
    headers: options.headers ?? {},
    body: bytes,
  };
}

/** What a decoder read off the wire; `specversion` is the one it carried, if any. */
export type ReceivedEnvelope = Partial<Envelope> & { body: Uint8Array; specversion?: string | undefined };

/**
 * A message from a plain client may lack attributes: fill them so every received message is complete.
 * `brokerId` is the broker's own id for the message when it has one (a stream id, an offset). Every transport's
 * decoder ends here, so the checks on `time` and `specversion` are made once for all of them: a time with an offset
 * is written in UTC (`Z`), one that is not RFC 3339 becomes the receipt time and is kept in a header, and so is a
 * specversion other than 1.0 (RECEIVED_HEADERS).
 */
export function completeEnvelope(partial: ReceivedEnvelope, type: string, brokerId?: string): TransportMessage {
  let headers = partial.headers ?? {};
  let time = partial.time ? normaliseTime(partial.time) : undefined;
  if (time === undefined) {
    if (partial.time) headers = { ...headers, [RECEIVED_HEADERS.invalidTime]: partial.time };
    time = new Date().toISOString();
  }
  if (partial.specversion && partial.specversion !== SPEC_VERSION) {
    headers = { ...headers, [RECEIVED_HEADERS.originalSpecversion]: partial.specversion };
  }
  return {
    id: partial.id || brokerId || uuidv7(),
    type: partial.type || type,
    source: partial.source || 'unknown',
    time,
    contentType: partial.contentType || 'application/octet-stream',
    key: partial.key || undefined,
    headers,
    body: partial.body,
  };
}
