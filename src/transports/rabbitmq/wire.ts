/**
 * The wire mapping (docs/wire/rabbitmq.md): names of exchanges and queues, and how a message's CloudEvents
 * attributes travel. Attributes follow the CloudEvents AMQP binding (application properties `cloudEvents:<name>`,
 * datacontenttype in the `content_type` property); the native properties message_id, app_id, type and timestamp
 * mirror id, source, type and time so RabbitMQ tools and plain clients see them too. The body is the payload, untouched.
 * A user header whose name is a valid extension name travels as the extension `cloudEvents:<name>`; any other keeps
 * its own name (the binding reads only prefixed properties as attributes), unless that name would be read as an
 * attribute or as the broker's or busbar's bookkeeping: those travel together in `cloudEvents:busbarheaders`.
 */
import type { Message, Options } from 'amqplib';
import { HEADERS_EXTENSION, isExtensionName, packHeaders, unpackHeaders } from '../../transport/cloudevents.ts';
import type { TransportMessage } from '../../transport/contract.ts';
import { CE, completeEnvelope, SPEC_VERSION } from '../../transport/envelope.ts';

/** The topic exchange every message is published to, with the message type as routing key. */
export const EXCHANGE = 'busbar';
/** The durable queue holding the type registry document (see registry.ts). */
export const REGISTRY_QUEUE = 'busbar.registry';

/** A type's replay log: a stream queue bound to the exchange, read only to seed new `earliest` groups. */
export const logQueue = (type: string): string => `busbar:${type}`;
/** A consumer group's quorum queue. Type and group names never contain ':' so names cannot collide. */
export const groupQueue = (type: string, group: string): string => `busbar:${type}:${group}`;
/** Exists while a new group is being created and seeded; its exclusive consumer is the creation lock. */
export const initQueue = (type: string, group: string): string => `busbar.init:${type}:${group}`;
/** Delay buckets: a fanout exchange and a TTL queue that dead-letters back through the default exchange. */
export const delayName = (ms: number): string => `busbar.delay.${ms}`;

/**
 * The binding allows `cloudEvents:` and `cloudEvents_` (one per message); busbar writes `:`, as it always has, so
 * that readers of busbar 0.1's messages keep working, and reads both.
 */
const CE_PREFIX = 'cloudEvents:';
const CE_PREFIX_ALT = 'cloudEvents_';
/** An AMQP 0-9-1 field name is a short string: at most 255 bytes (amqplib throws on a longer one). */
const MAX_NAME_BYTES = 255;
/** Attempts already made before this copy was re-published by a delayed nack. */
export const ATTEMPTS_HEADER = 'busbar-attempts';
/** Marks the end of a replay-log read when seeding a new group. */
export const SEED_MARKER_HEADER = 'busbar-seed-marker';

/** Headers the broker adds or busbar uses internally: never shown to users as their own headers. */
const BROKER_HEADERS = new Set(['x-delivery-count', 'x-death', 'x-stream-offset', ATTEMPTS_HEADER, SEED_MARKER_HEADER]);

function isBookkeeping(name: string): boolean {
  return BROKER_HEADERS.has(name) || name.startsWith('x-first-death-') || name.startsWith('x-last-death-');
}

/**
 * The attribute a prefixed property name carries (`cloudEvents:id` -> `id`), or undefined for any other name. Both
 * prefixes have the same length.
 */
function attributeName(name: string): string | undefined {
  return name.startsWith(CE_PREFIX) || name.startsWith(CE_PREFIX_ALT) ? name.slice(CE_PREFIX.length) : undefined;
}

/** True when a user header can travel under its own name: one no reader takes for an attribute or bookkeeping. */
function travelsPlain(name: string): boolean {
  const prefix = name.slice(0, CE_PREFIX.length).toLowerCase();
  if (prefix === 'cloudevents:' || prefix === 'cloudevents_' || isBookkeeping(name)) return false;
  return name.length * 3 <= MAX_NAME_BYTES || Buffer.byteLength(name) <= MAX_NAME_BYTES;
}

export function publishOptions(message: TransportMessage): Options.Publish {
  const headers: Record<string, string> = {
    [`${CE_PREFIX}${CE.specversion}`]: SPEC_VERSION,
    [`${CE_PREFIX}${CE.id}`]: message.id,
    [`${CE_PREFIX}${CE.source}`]: message.source,
    [`${CE_PREFIX}${CE.type}`]: message.type,
    [`${CE_PREFIX}${CE.time}`]: message.time,
  };
  if (message.key !== undefined) headers[`${CE_PREFIX}${CE.key}`] = message.key;
  let packed: Record<string, string> | undefined;
  for (const name in message.headers) {
    const value = message.headers[name]!;
    if (isExtensionName(name) && name.length <= MAX_NAME_BYTES - CE_PREFIX.length) headers[CE_PREFIX + name] = value;
    else if (travelsPlain(name)) headers[name] = value;
    else {
      packed ??= {};
      packed[name] = value;
    }
  }
  if (packed) headers[CE_PREFIX + HEADERS_EXTENSION] = packHeaders(packed);
  const millis = Date.parse(message.time);
  return {
    persistent: true,
    mandatory: true,
    contentType: message.contentType,
    messageId: message.id,
    appId: message.source,
    type: message.type,
    timestamp: Number.isNaN(millis) ? undefined : Math.floor(millis / 1000),
    headers,
  };
}

export function toBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

/** amqplib's reading of the AMQP field types that have no JavaScript counterpart. */
interface TypedField {
  '!': string;
  value: unknown;
}

/**
 * A header value as its CloudEvents canonical string: the binding lets a sender use AMQP's own types (a `timestamp`
 * for `time`, a number, a boolean) instead of strings, and a reader must accept both.
 */
function text(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'object' && '!' in value && 'value' in value) {
    const field = value as TypedField;
    if (field['!'] === 'timestamp') return new Date(Number(field.value) * 1000).toISOString();
    if (field['!'] === 'decimal') {
      const { places, digits } = field.value as { places: number; digits: number };
      return String(digits / 10 ** places);
    }
    return String(field.value);
  }
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/** The attributes busbar reads from prefixed properties; any other prefixed property is an extension (a header). */
const ATTRIBUTES = new Set<string>([CE.id, CE.source, CE.type, CE.time, CE.contentType, CE.key, CE.specversion]);

/**
 * A delivered AMQP message as a TransportMessage, filling what a plain client left out: id from message_id (or a
 * new one), source from app_id, time from the timestamp property (or receipt time). The type is always `type`, the
 * one whose queue delivered the message (its routing key): neither the `type` property nor a `cloudEvents:type`
 * header can re-type a message, so a client that uses the property for its own purposes cannot misroute the
 * group's nacks and dead letters.
 */
export function fromAmqp(message: Message, type: string): TransportMessage {
  const { properties } = message;
  const raw = (properties.headers ?? {}) as Record<string, unknown>;
  const attributes: Record<string, string | undefined> = {};
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (isBookkeeping(name)) continue;
    const v = text(value);
    if (v === undefined) continue;
    const attribute = attributeName(name);
    if (attribute === undefined) headers[name] = v;
    else if (ATTRIBUTES.has(attribute)) attributes[attribute] = v;
    else if (attribute === HEADERS_EXTENSION) unpackHeaders(v, headers);
    else headers[attribute] = v;
  }
  const timestamp =
    typeof properties.timestamp === 'number' ? new Date(properties.timestamp * 1000).toISOString() : undefined;
  return completeEnvelope(
    {
      id: attributes[CE.id] ?? text(properties.messageId),
      source: attributes[CE.source] ?? text(properties.appId),
      time: attributes[CE.time] ?? timestamp,
      contentType: attributes[CE.contentType] ?? text(properties.contentType),
      key: attributes[CE.key],
      specversion: attributes[CE.specversion],
      headers,
      body: message.content,
    },
    type,
  );
}

/** 1 on first delivery; counts broker redeliveries (quorum queue x-delivery-count) and delayed re-publishes. */
export function attemptOf(message: Message): number {
  const headers = message.properties.headers ?? {};
  const earlier = Number(headers[ATTEMPTS_HEADER] ?? 0) || 0;
  const redeliveries = Number(headers['x-delivery-count'] ?? 0) || 0;
  return earlier + redeliveries + 1;
}

/** Round a delay up to two significant digits, so arbitrary delays share a bounded set of delay queues. */
export function delayBucket(delayMs: number): number {
  const ms = Math.max(1, Math.ceil(delayMs));
  if (ms < 100) return ms;
  const scale = 10 ** (Math.floor(Math.log10(ms)) - 1);
  return Math.ceil(ms / scale) * scale;
}
