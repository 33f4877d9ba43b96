/**
 * The wire side of the envelope, shared by every transport's decoder: the CloudEvents attribute names used on the
 * wire (each transport's wire mapping in docs/wire/ maps these onto its native headers), and completing the
 * envelope of a message read off the wire.
 */

import { normaliseTime } from './cloudevents.ts';
import type { Envelope, TransportMessage } from './contract.ts';
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
