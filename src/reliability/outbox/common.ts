/** What the PostgreSQL and SQLite outboxes share: the row shape, identifier checks, lanes, and building messages. */
import { BusError, checkTypeName } from '../../errors.ts';
import type { Body } from '../../message/codec.ts';
import { buildMessage, DEFAULT_SOURCE, type OutgoingOptions } from '../../message/envelope.ts';
import type { TransportMessage } from '../../transport/contract.ts';

export const DEFAULT_TABLE = 'busbar_outbox';
/**
 * Rows are spread over lanes by key; a relay holds a lane while it sends, so a key's messages leave in order. Fixed:
 * every writer and relay of a table must agree on it.
 */
export const LANES = 16;
export const DEFAULT_BATCH = 2000;
export const DEFAULT_PUBLISH = 500;
/** A relay looks for rows this often even without a wake-up (a NOTIFY lost with its connection, SQLite). */
export const DEFAULT_POLL_MS = 1000;

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Table and schema names are put into SQL text, so only plain identifiers are accepted. */
export function checkIdentifier(value: unknown, what: string): string {
  if (typeof value !== 'string' || !IDENTIFIER.test(value)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `outbox ${what} ${JSON.stringify(value)} is not a plain SQL identifier: use 1-63 letters, digits and _, not starting with a digit`,
    );
  }
  return value;
}

/** FNV-1a: the same key always lands in the same lane, in every process. A message without a key lands by id. */
export function laneOf(message: TransportMessage): number {
  const text = message.key ?? message.id;
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % LANES;
}

/** One outbox row as both databases return it (headers as JSON text, body as bytes). */
export interface OutboxRow {
  seq: number | string | bigint;
  id: string;
  type: string;
  key: string | null;
  source: string;
  time: string;
  content_type: string;
  headers: string | Record<string, string>;
  body: Uint8Array;
}

export function rowToMessage(row: OutboxRow): TransportMessage {
  return {
    id: row.id,
    type: row.type,
    key: row.key ?? undefined,
    source: row.source,
    time: row.time,
    contentType: row.content_type,
    headers: typeof row.headers === 'string' ? (JSON.parse(row.headers) as Record<string, string>) : row.headers,
    body: row.body instanceof Uint8Array ? row.body : new Uint8Array(row.body as ArrayBuffer),
  };
}

/** Builds the message outbox.send() writes, checked as bus.send() checks it. */
export function outgoing(
  type: string,
  body: Body,
  options: OutgoingOptions,
  source: string | undefined,
): TransportMessage {
  checkTypeName(type);
  return buildMessage(type, options.source ?? source ?? DEFAULT_SOURCE, body, options);
}

/** What the relay publishes through: a MessageBus. */
export interface RelayTarget {
  sendBatch(type: string, messages: readonly unknown[]): Promise<string[]>;
}
