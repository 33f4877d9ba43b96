/**
 * Building outgoing envelopes. The wire side (attribute names, completing a received envelope) lives with the
 * transports in src/transport/envelope.ts and is re-exported here for the layers above.
 */
import { hostname } from 'node:os';
import { BusError } from '../errors.ts';
import { normaliseTime } from '../transport/cloudevents.ts';
import type { TransportMessage } from '../transport/contract.ts';
import { uuidv7 } from '../transport/uuid.ts';
import { type Body, encodeBody } from './codec.ts';

export {
  CE,
  completeEnvelope,
  RECEIVED_HEADERS,
  type ReceivedEnvelope,
  SPEC_VERSION,
} from '../transport/envelope.ts';

/** Headers the bus sets when it dead-letters a message. */
export const DEAD_LETTER_HEADERS = {
  reason: 'busbar-dlq-reason',
  originalType: 'busbar-dlq-type',
  attempts: 'busbar-dlq-attempts',
  group: 'busbar-dlq-group',
  time: 'busbar-dlq-time',
  /** The message's partition key: a dead letter travels without one, so no key holds up the others in a browse. */
  key: 'busbar-dlq-key',
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
