/**
 * Message type and group names -> JetStream stream, subject and durable consumer names (docs/wire/nats.md).
 * Type names allow `A-Z a-z 0-9 . _ -`; stream and consumer names may not hold `.`, so those use an escaped token in
 * which `_` starts a two-digit hex escape: `.` -> `_2E`, `_` -> `_5F`. Escaping only `_` and `.` keeps the map
 * injective and readable (`orders.created` -> `BUSBAR_orders_2Ecreated`).
 */
import { BusError, checkTypeName } from '../../errors.ts';

export const STREAM_PREFIX = 'BUSBAR_';
export const SUBJECT_PREFIX = 'busbar.';
/** Where the tail parts of messages larger than the server's max_payload live (see large.ts). */
export const PARTS_PREFIX = 'busbar_parts.';
/** JetStream stores a stream in a directory named after it; keep well inside common 255-byte name limits. */
const MAX_NAME = 240;

export function escapeName(name: string): string {
  return name.replace(/[._]/g, (c) => (c === '.' ? '_2E' : '_5F'));
}

export function unescapeName(token: string): string | undefined {
  if (/_(?!2E|5F)/.test(token)) return undefined;
  return token.replace(/_(2E|5F)/g, (_, hex: string) => (hex === '2E' ? '.' : '_'));
}

export function streamName(type: string): string {
  const name = STREAM_PREFIX + escapeName(checkTypeName(type));
  if (name.length > MAX_NAME) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_TYPE_NAME',
      `message type ${JSON.stringify(type)} is too long for NATS once escaped (${name.length} > ${MAX_NAME} characters): use a shorter name or fewer '.' and '_'`,
    );
  }
  return name;
}

/** The type a stream name stands for, or undefined for streams that are not busbar's. */
export function typeOfStream(stream: string): string | undefined {
  if (!stream.startsWith(STREAM_PREFIX)) return undefined;
  const type = unescapeName(stream.slice(STREAM_PREFIX.length));
  return type !== undefined && type.length > 0 && escapeName(type) === stream.slice(STREAM_PREFIX.length)
    ? type
    : undefined;
}

/**
 * `busbar.<type>`, dots kept so NATS wildcards work (`busbar.orders.>`). NATS subjects cannot end in `.`, so a type
 * that does gets a final `~` token; no type contains `~`, so no other type maps there.
 */
export function subjectOf(type: string): string {
  checkTypeName(type);
  return SUBJECT_PREFIX + (type.endsWith('.') ? `${type}~` : type);
}

/** Subject of the tail parts of large messages of a type, in the same stream. */
export function partsSubjectOf(type: string): string {
  return PARTS_PREFIX + subjectOf(type).slice(SUBJECT_PREFIX.length);
}

/** Durable consumer name of a consumer group. */
export function durableName(group: string): string {
  const name = escapeName(checkTypeName(group, 'consumer group'));
  if (name.length > MAX_NAME) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `consumer group ${JSON.stringify(group)} is too long for NATS once escaped: use a shorter name`,
    );
  }
  return name;
}

export function groupOfDurable(durable: string): string {
  return unescapeName(durable) ?? durable;
}
