/**
 * fedmsg's wire (docs/wire/zeromq.md): a two-frame message `[topic, JSON]`, the JSON being fedmsg's message dict
 * (fedmsg/core.py, FedMsgContext.publish). busbar's CloudEvents attributes travel in one extra key of the dict,
 * `cloudevents`, an object of strings; the body is the dict's `msg`. Every field a fedmsg producer set (`i`,
 * `username`, `crypto`, `signature`, `certificate`, `seq_id`, ...) is kept in the `fedmsg` header and written back
 * when the message is published to a ZeroMQ bus again.
 */
import { isUtf8 } from 'node:buffer';
import { HEADERS_EXTENSION, isExtensionName, packHeaders, unpackHeaders } from '../../message/cloudevents.ts';
import { CE, completeEnvelope, SPEC_VERSION } from '../../message/envelope.ts';
import type { TransportMessage } from '../../transport/contract.ts';

/** The dict key that holds busbar's CloudEvents attributes. */
export const CLOUDEVENTS_KEY = 'cloudevents';
/** The header that keeps a received dict's fedmsg fields (as one JSON object) for publishing it on unchanged. */
export const FEDMSG_HEADER = 'fedmsg';
/** Attribute set to `base64` when `msg` is the body in base64 (bytes that are neither JSON nor UTF-8 text). */
export const BODY_ENCODING_ATTRIBUTE = 'busbarbody';
/** Fields busbar writes itself; any other field of a dict travels in the `fedmsg` header. */
const STANDARD_FIELDS = new Set(['topic', 'msg', CLOUDEVENTS_KEY]);
/** Fields a busbar publisher sets on every dict: not kept in the `fedmsg` header of a message that has attributes. */
const PUBLISHER_FIELDS = new Set(['timestamp', 'msg_id', 'i', 'username']);

/** Topics `<prefix>.<environment>.<type>`: fedmsg's `<topic_prefix>.<environment>.<modname>.<topic>`. */
export class Topics {
  readonly base: string;
  constructor(prefix: string, environment: string) {
    this.base = `${prefix}.${environment}.`;
  }
  topic(type: string): string {
    return this.base + type;
  }
  /** The type a topic carries, or undefined when it is not under this bus's prefix. */
  typeOf(topic: string): string | undefined {
    return topic.startsWith(this.base) ? topic.slice(this.base.length) : undefined;
  }
  /** Readiness probes (see subscriber.ts): `_` starts no type name, so a probe topic is never a type's. */
  probe(id: string): string {
    return `${this.base}_busbar.probe.${id}`;
  }
}

const JSON_CONTENT = /^application\/([\w.+-]+\+)?json\s*(;|$)/i;
const TEXT_CONTENT = /^text\//i;

type BodyKind = 'json' | 'text' | 'bytes';
const kinds = new Map<string, BodyKind>();

/** How a content type's bodies travel in `msg`; remembered, as a bus uses few content types. */
function kindOf(contentType: string): BodyKind {
  let kind = kinds.get(contentType);
  if (kind === undefined) {
    kind = JSON_CONTENT.test(contentType) ? 'json' : TEXT_CONTENT.test(contentType) ? 'text' : 'bytes';
    if (kinds.size < 1000) kinds.set(contentType, kind);
  }
  return kind;
}

/** The body as a JSON value for `msg`, or undefined when it must travel in base64. */
function bodyJson(message: TransportMessage): string | undefined {
  const { body, contentType } = message;
  const kind = kindOf(contentType);
  if (kind === 'bytes' || !isUtf8(body)) return undefined;
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
  if (kind === 'text') return JSON.stringify(text);
  try {
    // Spliced into the dict as it is: it must be one JSON value, or every reader would lose the whole message.
    JSON.parse(text);
    return text;
  } catch {
    return undefined;
  }
}

function parseFields(value: string | undefined): Record<string, unknown> | undefined {
  if (value === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(value);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed))
      return parsed as Record<string, unknown>;
  } catch {}
  return undefined;
}

let lastTime = '';
let lastFedmsgTime = { seconds: 0, year: 0 };

/**
 * fedmsg's `timestamp` (whole seconds) and the year of `msg_id` for a CloudEvents time (busbar writes it in UTC).
 * The messages of a batch mostly share their time, so the last one is remembered.
 */
function fedmsgTime(time: string): { seconds: number; year: number } {
  if (time !== lastTime) {
    const ms = Date.parse(time);
    lastFedmsgTime = { seconds: Math.floor(ms / 1000), year: new Date(ms).getUTCFullYear() };
    lastTime = time;
  }
  return lastFedmsgTime;
}

export interface Publisher {
  /** fedmsg's per-context counter `i`: 1 for the first message this process publishes. */
  nextI(): number;
  readonly username: string;
}

/** The dict's JSON text for one message, written directly (this runs for every message published). */
export function encodeDict(message: TransportMessage, topic: string, publisher: Publisher): string {
  const fields = parseFields(message.headers[FEDMSG_HEADER]);
  let msg = bodyJson(message);
  let attributes =
    `{"specversion":"${SPEC_VERSION}","id":${JSON.stringify(message.id)},"source":${JSON.stringify(message.source)}` +
    `,"type":${JSON.stringify(message.type)},"time":${JSON.stringify(message.time)}` +
    `,"datacontenttype":${JSON.stringify(message.contentType)}`;
  if (msg === undefined) {
    msg = JSON.stringify(
      Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength).toString('base64'),
    );
    attributes += `,"${BODY_ENCODING_ATTRIBUTE}":"base64"`;
  }
  if (message.key !== undefined) attributes += `,"${CE.key}":${JSON.stringify(message.key)}`;
  let other: Record<string, string> | undefined;
  for (const name in message.headers) {
    if (name === FEDMSG_HEADER) continue;
    const value = message.headers[name]!;
    if (isExtensionName(name)) attributes += `,"${name}":${JSON.stringify(value)}`;
    else {
      other ??= {};
      other[name] = value;
    }
  }
  if (other) attributes += `,"${HEADERS_EXTENSION}":${JSON.stringify(packHeaders(other))}`;
  const { seconds, year } = fedmsgTime(message.time);
  let json = `{"topic":${JSON.stringify(topic)},"msg":${msg}`;
  if (fields === undefined) {
    json += `,"timestamp":${seconds},"msg_id":${JSON.stringify(`${year}-${message.id}`)},"i":${publisher.nextI()}`;
    json += `,"username":${JSON.stringify(publisher.username)}`;
  } else {
    // A signed message published again on its own topic goes out with exactly the fields it was signed with, or its
    // signature would not verify. On another topic (a dead-letter type, a rename) it cannot verify anyway.
    const asSigned = 'signature' in fields && fields.topic === topic;
    // Otherwise a received fedmsg message's own fields win over busbar's.
    const out: Record<string, unknown> = asSigned
      ? fields
      : { timestamp: seconds, msg_id: `${year}-${message.id}`, username: publisher.username, ...fields };
    if (!asSigned && out.i === undefined) out.i = publisher.nextI();
    for (const name in out) {
      if (!STANDARD_FIELDS.has(name)) json += `,${JSON.stringify(name)}:${JSON.stringify(out[name])}`;
    }
    if (asSigned) return `${json}}`;
  }
  return `${json},"${CLOUDEVENTS_KEY}":${attributes}}}`;
}

function stringAttribute(attributes: Record<string, unknown> | undefined, name: string): string | undefined {
  const value = attributes?.[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * The message a `[topic, JSON]` pair carries, for `type` (the subscriber matched the topic to it). A second frame
 * that is not a JSON object is still delivered: its bytes as the body (application/octet-stream), with the reason
 * in the `busbar-fedmsg-invalid` header.
 */
export function decodeDict(type: string, frame: Uint8Array): TransportMessage {
  let dict: Record<string, unknown> | undefined;
  try {
    const text = Buffer.isBuffer(frame)
      ? frame.toString('utf8')
      : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength).toString('utf8');
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed))
      dict = parsed as Record<string, unknown>;
  } catch {}
  if (!dict) {
    return completeEnvelope(
      {
        body: frame,
        contentType: 'application/octet-stream',
        headers: { 'busbar-fedmsg-invalid': 'the second frame is not a JSON object (a fedmsg message dict)' },
      },
      type,
    );
  }
  const raw = dict[CLOUDEVENTS_KEY];
  const attributes =
    raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : undefined;
  const headers: Record<string, string> = {};
  if (attributes) {
    for (const name in attributes) {
      const value = attributes[name];
      if (typeof value !== 'string') continue;
      if (name === HEADERS_EXTENSION) unpackHeaders(value, headers);
      else if (isExtensionName(name)) headers[name] = value;
    }
  }
  let fields: Record<string, unknown> | undefined;
  for (const name in dict) {
    if (STANDARD_FIELDS.has(name) || (attributes && PUBLISHER_FIELDS.has(name))) continue;
    fields ??= {};
    fields[name] = dict[name];
  }
  // A signed dict's topic is kept too: only a message published again on that same topic can still verify.
  if (fields && 'signature' in fields) fields.topic = dict.topic;
  if (fields) headers[FEDMSG_HEADER] = JSON.stringify(fields);
  const msg = dict.msg;
  let contentType = stringAttribute(attributes, CE.contentType);
  const isJson = contentType !== undefined && kindOf(contentType) === 'json';
  let body: Uint8Array;
  if (stringAttribute(attributes, BODY_ENCODING_ATTRIBUTE) === 'base64' && typeof msg === 'string') {
    body = Buffer.from(msg, 'base64');
  } else if (typeof msg === 'string' && contentType !== undefined && !isJson) {
    body = Buffer.from(msg, 'utf8');
  } else {
    // Buffer.from, not TextEncoder: several times faster on short strings, which most bodies are.
    body = msg === undefined ? new Uint8Array(0) : Buffer.from(JSON.stringify(msg), 'utf8');
    if (msg !== undefined && !isJson) contentType = 'application/json';
  }
  const timestamp = dict.timestamp;
  const msgId = dict.msg_id;
  return completeEnvelope(
    {
      id: stringAttribute(attributes, CE.id) ?? (typeof msgId === 'string' ? msgId : undefined),
      source: stringAttribute(attributes, CE.source) ?? type.split('.', 1)[0],
      type,
      time:
        stringAttribute(attributes, CE.time) ??
        (typeof timestamp === 'number' && Number.isFinite(timestamp)
          ? new Date(timestamp * 1000).toISOString()
          : undefined),
      contentType,
      key: stringAttribute(attributes, CE.key),
      specversion: stringAttribute(attributes, CE.specversion),
      headers,
      body,
    },
    type,
  );
}
