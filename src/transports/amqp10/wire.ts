/**
 * The wire mapping (docs/wire/amqp10.md): Artemis names, and the CloudEvents AMQP binding. A message type is a
 * multicast address; a consumer group is a durable queue `<type>:<group>` on it (Artemis queue names are unique across
 * the broker, so the queue carries its type), reached by its fully qualified name `<type>::<type>:<group>`.
 * Attributes travel as application properties `cloudEvents:<name>` (extension-named headers too, see
 * src/transport/cloudevents.ts), other headers as application properties of their own names, datacontenttype in the
 * `content-type` property, the body as one Data section, untouched.
 */
import rhea, { type Message } from 'rhea';
import { isExtensionName } from '../../transport/cloudevents.ts';
import type { TransportMessage } from '../../transport/contract.ts';
import { CE, completeEnvelope, SPEC_VERSION } from '../../transport/envelope.ts';

/**
 * A group's durable queue: Artemis queue names are unique across the broker, so the name carries the type. ':' never
 * occurs in type or group names, so `a.b` + `c` and `a` + `b.c` cannot collide; the STOMP transport names its
 * queues the same way, so both protocols share a group on one Artemis.
 */
export const GROUP_SEPARATOR = ':';
export const groupQueue = (type: string, group: string): string => `${type}${GROUP_SEPARATOR}${group}`;
export const fqqn = (type: string, group: string): string => `${type}::${groupQueue(type, group)}`;
export const MANAGEMENT_ADDRESS = 'activemq.management';

const CE_PREFIX = 'cloudEvents:';
/** Accepted on input: the JMS-friendly spelling the CloudEvents AMQP binding also allows. */
const CE_PREFIX_ALT = 'cloudEvents_';
/** Attempts already made before this copy was sent again by a delayed nack. */
export const ATTEMPTS_HEADER = 'busbar-attempts';
/** Artemis's scheduled delivery: the message stays invisible for this many milliseconds. */
export const DELIVERY_DELAY = 'x-opt-delivery-delay';

const ATTRIBUTES = new Set<string>([CE.id, CE.source, CE.type, CE.specversion, CE.time, CE.contentType, CE.key]);

export function toBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

export function toAmqp(message: TransportMessage): Message {
  const properties: Record<string, string> = {
    [`${CE_PREFIX}${CE.specversion}`]: SPEC_VERSION,
    [`${CE_PREFIX}${CE.id}`]: message.id,
    [`${CE_PREFIX}${CE.source}`]: message.source,
    [`${CE_PREFIX}${CE.type}`]: message.type,
    [`${CE_PREFIX}${CE.time}`]: message.time,
  };
  if (message.key !== undefined) properties[`${CE_PREFIX}${CE.key}`] = message.key;
  for (const [name, value] of Object.entries(message.headers)) {
    properties[isExtensionName(name) ? `${CE_PREFIX}${name}` : name] = value;
  }
  return {
    durable: true,
    message_id: message.id,
    content_type: message.contentType,
    application_properties: properties,
    body: rhea.message.data_section(toBuffer(message.body)),
  };
}

function text(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (value instanceof Date) return value.toISOString();
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/** The payload bytes: a Data section as is; a plain client's AmqpValue string as UTF-8, other values as JSON. */
function bodyOf(body: unknown): Uint8Array {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (Buffer.isBuffer(body)) return body;
  const section = body as { typecode?: number; content?: unknown; multiple?: boolean };
  if (section.typecode === 0x75) {
    if (section.multiple && Array.isArray(section.content)) {
      return Buffer.concat((section.content as { content: Buffer }[]).map((s) => s.content));
    }
    return Buffer.isBuffer(section.content) ? section.content : new Uint8Array(0);
  }
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  return Buffer.from(JSON.stringify(body), 'utf8');
}

/**
 * A delivered message as a TransportMessage. The type is always `type`, the one whose queue delivered it, whatever
 * `cloudEvents:type` says (so a plain client cannot misroute the group's nacks and dead letters).
 */
export function fromAmqp(message: Message, type: string): TransportMessage {
  const raw = (message.application_properties ?? {}) as Record<string, unknown>;
  const attributes: Record<string, string | undefined> = {};
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    const prefix = name.startsWith(CE_PREFIX) ? CE_PREFIX : name.startsWith(CE_PREFIX_ALT) ? CE_PREFIX_ALT : undefined;
    const v = text(value);
    if (v === undefined) continue;
    if (prefix) {
      const attribute = name.slice(prefix.length);
      if (ATTRIBUTES.has(attribute)) attributes[attribute] = v;
      else headers[attribute] = v;
    } else if (name !== ATTEMPTS_HEADER) headers[name] = v;
  }
  return completeEnvelope(
    {
      id: attributes[CE.id] ?? text(message.message_id),
      source: attributes[CE.source],
      time: attributes[CE.time] ?? (message.creation_time ? text(message.creation_time) : undefined),
      contentType: attributes[CE.contentType] ?? text(message.content_type),
      key: attributes[CE.key],
      specversion: attributes[CE.specversion],
      headers,
      body: bodyOf(message.body),
    },
    type,
  );
}

/** 1 on first delivery: the broker's delivery-count (failed deliveries so far) plus attempts before a delayed copy. */
export function attemptOf(message: Message): number {
  const earlier = Number(message.application_properties?.[ATTEMPTS_HEADER] ?? 0) || 0;
  return earlier + (message.delivery_count ?? 0) + 1;
}

/** A copy of a delivered message for a delayed retry: same properties and body, scheduled, attempts carried. */
export function delayedCopy(message: Message, attempt: number, delayMs: number): Message {
  return {
    durable: true,
    message_id: message.message_id,
    content_type: message.content_type,
    creation_time: message.creation_time,
    application_properties: { ...(message.application_properties ?? {}), [ATTEMPTS_HEADER]: attempt },
    message_annotations: { [DELIVERY_DELAY]: Math.max(1, Math.ceil(delayMs)) },
    body: message.body,
  };
}
