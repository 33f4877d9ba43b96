/**
 * Building outgoing envelopes and completing incoming ones. The CloudEvents attribute names used on the wire are
 * fixed here once; each transport's wire mapping (docs/wire/) maps these onto its native headers.
 */
import { hostname } from 'node:os';
import type { Envelope, TransportMessage } from '../transport/contract.ts';
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

export const DEFAULT_SOURCE = `busbar://${hostname()}/${process.pid}`;

export interface OutgoingOptions {
  key?: string | undefined;
  headers?: Record<string, string> | undefined;
  contentType?: string | undefined;
  id?: string | undefined;
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
    source,
    time: new Date().toISOString(),
    contentType,
    key: options.key,
    headers: options.headers ?? {},
    body: bytes,
  };
}

/**
 * A message from a plain client may lack attributes: fill them so every received message is complete.
 * `brokerId` is the broker's own id for the message when it has one (a stream id, an offset).
 */
export function completeEnvelope(
  partial: Partial<Envelope> & { body: Uint8Array },
  type: string,
  brokerId?: string,
): TransportMessage {
  return {
    id: partial.id || brokerId || uuidv7(),
    type: partial.type || type,
    source: partial.source || 'unknown',
    time: partial.time || new Date().toISOString(),
    contentType: partial.contentType || 'application/octet-stream',
    key: partial.key || undefined,
    headers: partial.headers ?? {},
    body: partial.body,
  };
}
