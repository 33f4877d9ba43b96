/**
 * The MQTT wire mapping (docs/wire/mqtt.md): topic names, and the CloudEvents MQTT 5 binding — the body is the
 * payload untouched, `datacontenttype` travels in the Content Type property and every other attribute and extension
 * as a user property named after it. The binding reads every user property as an attribute, so headers whose names
 * are not valid attribute names ride together in the `busbarheaders` extension, and busbar's own redelivery state
 * uses valid names too: every message stays a valid CloudEvent.
 */
import type { IPublishPacket } from 'mqtt';
import { HEADERS_EXTENSION, isExtensionName, packHeaders, unpackHeaders } from '../../transport/cloudevents.ts';
import type { TransportMessage } from '../../transport/contract.ts';
import { CE, completeEnvelope, SPEC_VERSION } from '../../transport/envelope.ts';

/** Delivery count carried by redelivered copies (1 when absent). */
export const ATTEMPT_PROPERTY = 'busbarattempt';
/** Epoch milliseconds before which a delayed redelivery must not be handed to the application. */
export const NOT_BEFORE_PROPERTY = 'busbarnotbefore';
/** The names busbar 0.1 gave the two (not valid attribute names); still read from copies it queued. */
const LEGACY_ATTEMPT_PROPERTY = 'busbar-attempt';
const LEGACY_NOT_BEFORE_PROPERTY = 'busbar-not-before';

type UserProperties = NonNullable<NonNullable<IPublishPacket['properties']>['userProperties']>;

/** Topic names under the configured prefix (default `busbar`). Type and group names are valid topic levels as they are. */
export class Topics {
  readonly prefix: string;
  constructor(prefix: string) {
    this.prefix = prefix;
  }
  /** Where producers publish messages of a type; every group subscribes to it. */
  messages(type: string): string {
    return `${this.prefix}/${type}`;
  }
  /** One group's redeliveries (nack, ack timeout, adopted sessions): only that group subscribes. */
  redeliveries(group: string, type: string): string {
    return `${this.prefix}/_group/${group}/${type}`;
  }
  /** Shared subscription filter: members of `group` split the messages between them. */
  shared(group: string, topic: string): string {
    return `$share/${group}/${topic}`;
  }
  /** Retained JSON record of a registered type (admin registry). */
  typeRecord(type: string): string {
    return `${this.prefix}/_types/${type}`;
  }
  typeRecords(): string {
    return `${this.prefix}/_types/+`;
  }
  /** Retained JSON record of one member session of a group (online / offline). */
  member(group: string, session: string): string {
    return `${this.prefix}/_members/${group}/${session}`;
  }
  members(group = '+'): string {
    return `${this.prefix}/_members/${group}/+`;
  }
  /** A private topic for one session: a marker published here arrives after everything already queued for it. */
  marker(session: string): string {
    return `${this.prefix}/_marker/${session}`;
  }
  /** The type a message topic (or a group redelivery topic) carries; undefined for anything else. */
  typeOf(topic: string): string | undefined {
    const rest = topic.startsWith(`${this.prefix}/`) ? topic.slice(this.prefix.length + 1) : undefined;
    if (rest === undefined) return undefined;
    const levels = rest.split('/');
    if (levels.length === 1 && !levels[0]!.startsWith('_')) return levels[0];
    if (levels.length === 3 && levels[0] === '_group') return levels[2];
    return undefined;
  }
}

export interface WireOptions {
  attempt?: number | undefined;
  notBefore?: number | undefined;
  expirySec?: number | undefined;
}

export function publishProperties(message: TransportMessage, options: WireOptions = {}): IPublishPacket['properties'] {
  const user: UserProperties = {
    [CE.specversion]: SPEC_VERSION,
    [CE.id]: message.id,
    [CE.source]: message.source,
    [CE.type]: message.type,
    [CE.time]: message.time,
    // Also in the Content Type property, where the binding puts it; the binding's own example repeats it here, and
    // the SDKs read it only from here.
    [CE.contentType]: message.contentType,
  };
  if (message.key !== undefined) user[CE.key] = message.key;
  let packed: Record<string, string> | undefined;
  for (const name in message.headers) {
    const value = message.headers[name]!;
    if (isExtensionName(name)) user[name] = value;
    else {
      packed ??= {};
      packed[name] = value;
    }
  }
  if (packed) user[HEADERS_EXTENSION] = packHeaders(packed);
  if (options.attempt !== undefined && options.attempt > 1) user[ATTEMPT_PROPERTY] = String(options.attempt);
  if (options.notBefore !== undefined) user[NOT_BEFORE_PROPERTY] = String(options.notBefore);
  return {
    contentType: message.contentType,
    userProperties: user,
    ...(options.expirySec !== undefined ? { messageExpiryInterval: options.expirySec } : {}),
  };
}

export interface Received {
  readonly message: TransportMessage;
  /** Delivery count: the attempt property, plus one when the broker resends an unacknowledged message (DUP). */
  readonly attempt: number;
  readonly notBefore: number;
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** User properties that are not headers: the envelope's attributes and busbar's redelivery state. */
const NOT_HEADERS = new Set<string>([
  ...Object.values(CE),
  ATTEMPT_PROPERTY,
  NOT_BEFORE_PROPERTY,
  LEGACY_ATTEMPT_PROPERTY,
  LEGACY_NOT_BEFORE_PROPERTY,
]);

/**
 * Decodes a PUBLISH from a busbar producer or a plain MQTT client (missing attributes are filled). Any user property
 * that is not an attribute busbar knows is a header of that name, whatever its name.
 */
export function fromPacket(packet: IPublishPacket, type: string): Received {
  const user = packet.properties?.userProperties ?? {};
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(user)) {
    if (NOT_HEADERS.has(name)) continue;
    // A property sent more than once: the first occurrence wins, as for the attributes (docs/wire/mqtt.md).
    const text = single(value)!;
    if (name === HEADERS_EXTENSION) unpackHeaders(text, headers);
    else headers[name] = text;
  }
  const payload = packet.payload;
  const body =
    typeof payload === 'string'
      ? new TextEncoder().encode(payload)
      : new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  const message = completeEnvelope(
    {
      id: single(user[CE.id]),
      type: single(user[CE.type]),
      source: single(user[CE.source]),
      time: single(user[CE.time]),
      contentType: packet.properties?.contentType ?? single(user[CE.contentType]),
      key: single(user[CE.key]),
      headers,
      specversion: single(user[CE.specversion]),
      body,
    },
    type,
  );
  const attempt = Number(single(user[ATTEMPT_PROPERTY] ?? user[LEGACY_ATTEMPT_PROPERTY]) ?? 1);
  const notBefore = Number(single(user[NOT_BEFORE_PROPERTY] ?? user[LEGACY_NOT_BEFORE_PROPERTY]) ?? 0);
  return {
    message,
    attempt: (Number.isInteger(attempt) && attempt > 0 ? attempt : 1) + (packet.dup ? 1 : 0),
    notBefore: Number.isFinite(notBefore) ? notBefore : 0,
  };
}
