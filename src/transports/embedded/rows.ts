/**
 * Between messages and `messages` rows. Reading is lenient: rows written by other programs (docs/wire/embedded.md)
 * may lack attributes or carry odd values, and must still be delivered rather than block their group.
 */

import type { TransportMessage } from '../../transport/contract.ts';
import { completeEnvelope } from '../../transport/envelope.ts';

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** NULL for no headers, so the common case stores no JSON. */
export function headersText(headers: Readonly<Record<string, string>>): string | null {
  for (const _ in headers) return JSON.stringify(headers);
  return null;
}

/** Row columns from `at`: id, source, time, content_type, key, headers, body. Missing attributes are filled in. */
export function toMessage(type: string, seq: number, row: unknown[], at: number): TransportMessage {
  const headers = row[at + 5] as string | null;
  return completeEnvelope(
    {
      id: text(row[at]),
      source: text(row[at + 1]),
      time: text(row[at + 2]),
      contentType: text(row[at + 3]),
      key: text(row[at + 4]),
      headers: headers === null ? NO_HEADERS : parseHeaders(headers),
      body: bytes(row[at + 6]),
    },
    type,
    `embedded-${seq}`,
  );
}

/** Rows from other writers may carry numbers where text belongs. */
function text(value: unknown): string | undefined {
  return value === null || value === undefined ? undefined : String(value);
}

/** A body written as TEXT (say, a Python str) is delivered as its UTF-8 bytes. */
function bytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  return new TextEncoder().encode(value === null || value === undefined ? '' : String(value));
}

/** Headers from another writer that are not a JSON object of strings must not block the group: keep them raw. */
function parseHeaders(json: string): Record<string, string> {
  try {
    const parsed: unknown = JSON.parse(json);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(parsed)) {
        headers[name] = typeof value === 'string' ? value : JSON.stringify(value);
      }
      return headers;
    }
  } catch {
    // fall through: delivered with the raw text below
  }
  return { 'busbar-invalid-headers': json };
}
