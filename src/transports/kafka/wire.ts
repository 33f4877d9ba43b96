/**
 * Envelope <-> Kafka record, after the CloudEvents Kafka protocol binding (binary content mode): the record value is
 * the payload untouched, the record key is the partition key, every attribute is a `ce_<name>` header with a UTF-8
 * value, and `datacontenttype` travels as `content-type`. Headers whose names are valid extension names travel as
 * extensions (`ce_traceparent`); the others keep their own names as plain Kafka headers, which the binding does not
 * read as attributes, except those that would (`ce_*`, `content-type`): they ride in the `ce_busbarheaders`
 * extension. Retry bookkeeping (`busbar-retry-*`) only ever appears on busbar's retry topics. See docs/wire/kafka.md.
 */
import type { Message, MessageToProduce } from '@platformatic/kafka';
import { BusError, checkTypeName } from '../../errors.ts';
import { ByteNames } from '../../transport/byte-names.ts';
import { HEADERS_EXTENSION, isExtensionName, packHeaders, unpackHeaders } from '../../transport/cloudevents.ts';
import type { Envelope, TransportMessage } from '../../transport/contract.ts';
import { CE, completeEnvelope, SPEC_VERSION } from '../../transport/envelope.ts';

export const CE_PREFIX = 'ce_';
export const CONTENT_TYPE = 'content-type';

/** Topic that holds a type's delayed redeliveries (nacks with a delay), shared by its groups. */
export const RETRY_SUFFIX = '.busbar-retry';
export const RETRY_HEADERS = {
  /** The group that nacked the message: other groups skip it. */
  group: 'busbar-retry-group',
  /** Epoch milliseconds before which the message must not be redelivered. */
  notBefore: 'busbar-retry-not-before',
  /** The attempt number the redelivery carries. */
  attempt: 'busbar-retry-attempt',
} as const;

/** A message type name that also fits busbar's Kafka layout: `*.busbar-retry` is the transport's own. */
export function checkKafkaType(type: unknown): string {
  const name = checkTypeName(type);
  if (isRetryTopic(name)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_TYPE_NAME',
      `message type '${name}' ends in '${RETRY_SUFFIX}', which the kafka transport keeps for its retry topics: choose another name`,
    );
  }
  return name;
}

export function retryTopicOf(type: string): string {
  return type + RETRY_SUFFIX;
}

export function isRetryTopic(topic: string): boolean {
  return topic.endsWith(RETRY_SUFFIX);
}

/** The type a topic carries messages of: the retry topic's base type, or the topic itself. */
export function typeOfTopic(topic: string): string {
  return isRetryTopic(topic) ? topic.slice(0, -RETRY_SUFFIX.length) : topic;
}

const RETRY_NAMES = new Set<string>(Object.values(RETRY_HEADERS));

/** A header that is no extension can keep its name unless a reader would take it for an attribute or bookkeeping. */
function travelsPlain(name: string): boolean {
  const lower = name.toLowerCase();
  return !lower.startsWith(CE_PREFIX) && lower !== CONTENT_TYPE && !RETRY_NAMES.has(name);
}

export type KafkaRecord = MessageToProduce<Buffer, Buffer, Buffer, Buffer>;

function bytes(value: string): Buffer {
  return Buffer.from(value, 'utf8');
}

/** Header names as bytes, made once: every record carries them. */
const NAME = {
  id: bytes(`${CE_PREFIX}${CE.id}`),
  source: bytes(`${CE_PREFIX}${CE.source}`),
  type: bytes(`${CE_PREFIX}${CE.type}`),
  specversion: bytes(`${CE_PREFIX}${CE.specversion}`),
  time: bytes(`${CE_PREFIX}${CE.time}`),
  contentType: bytes(CONTENT_TYPE),
  key: bytes(`${CE_PREFIX}${CE.key}`),
  packed: bytes(`${CE_PREFIX}${HEADERS_EXTENSION}`),
};
const SPEC_VERSION_BYTES = bytes(SPEC_VERSION);

/**
 * The record for one message; `extra` adds busbar's own headers (retry bookkeeping). Names cannot collide: a user
 * header that would read as an attribute or as bookkeeping travels inside `ce_busbarheaders` instead.
 */
export function toRecord(topic: string, message: TransportMessage, extra?: Record<string, string>): KafkaRecord {
  const key = message.key === undefined ? undefined : bytes(message.key);
  const headers = new Map<Buffer, Buffer>([
    [NAME.id, bytes(message.id)],
    [NAME.source, bytes(message.source)],
    [NAME.type, bytes(message.type)],
    [NAME.specversion, SPEC_VERSION_BYTES],
    [NAME.time, bytes(message.time)],
    [NAME.contentType, bytes(message.contentType)],
  ]);
  if (key) headers.set(NAME.key, key);
  let packed: Record<string, string> | undefined;
  for (const name in message.headers) {
    const value = message.headers[name]!;
    if (isExtensionName(name)) headers.set(bytes(CE_PREFIX + name), bytes(value));
    else if (travelsPlain(name)) headers.set(bytes(name), bytes(value));
    else {
      packed ??= {};
      packed[name] = value;
    }
  }
  if (packed) headers.set(NAME.packed, bytes(packHeaders(packed)));
  if (extra) for (const name in extra) headers.set(bytes(name), bytes(extra[name]!));
  const body = message.body;
  return { topic, key, value: Buffer.from(body.buffer, body.byteOffset, body.byteLength), headers };
}

export interface DecodedRecord {
  message: TransportMessage;
  /** busbar-retry-* headers, present only on retry topics. */
  retry: { group?: string; notBefore?: number; attempt?: number };
}

/** busbar's own attribute headers, recognised by their bytes: the common case decodes no header name. */
const ATTRIBUTE_HEADERS = new ByteNames<keyof Envelope | 'specversion'>([
  [NAME.id.toString(), 'id'],
  [NAME.source.toString(), 'source'],
  [NAME.type.toString(), 'type'],
  [NAME.time.toString(), 'time'],
  [NAME.contentType.toString(), 'contentType'],
  [NAME.key.toString(), 'key'],
  [NAME.specversion.toString(), 'specversion'],
]);

const NO_RETRY: DecodedRecord['retry'] = Object.freeze({});

/**
 * The message a record carries; attributes a plain client left out are filled (id from topic-partition-offset).
 * Any other `ce_<name>` header is the header `<name>` (an extension; also how busbar 0.1 escaped user headers
 * named `ce_*` or `content-type`), and a plain header keeps its name.
 */
export function fromRecord(record: Message<Buffer, Buffer, Buffer, Buffer>): DecodedRecord {
  // Plain locals rather than a partial object written by field name: this runs for every record.
  let id: string | undefined;
  let source: string | undefined;
  let type: string | undefined;
  let time: string | undefined;
  let contentType: string | undefined;
  let key: string | undefined;
  let specversion: string | undefined;
  let ceContentType: string | undefined;
  const headers: Record<string, string> = {};
  let retry = NO_RETRY;
  for (const [rawName, rawValue] of record.headers) {
    const value = rawValue ? rawValue.toString('utf8') : '';
    let field: keyof Envelope | 'specversion' | undefined = ATTRIBUTE_HEADERS.match(rawName);
    if (field === undefined) {
      const name = rawName.toString('utf8');
      if (name === RETRY_HEADERS.group) retry = { ...retry, group: value };
      else if (name === RETRY_HEADERS.notBefore) retry = { ...retry, notBefore: Number(value) };
      else if (name === RETRY_HEADERS.attempt) retry = { ...retry, attempt: Number(value) };
      else if (name.toLowerCase() === CONTENT_TYPE) field = 'contentType';
      else if (name.startsWith(CE_PREFIX)) {
        // Every attribute busbar writes was matched above by its bytes: this is another attribute or an extension.
        const attribute = name.slice(CE_PREFIX.length);
        // The binding names the content type `content-type`; the SDKs also write `ce_datacontenttype`.
        if (attribute === CE.contentType) ceContentType = value;
        else if (attribute === HEADERS_EXTENSION) unpackHeaders(value, headers);
        else headers[attribute] = value;
      } else headers[name] = value;
    }
    switch (field) {
      case 'id':
        id = value;
        break;
      case 'source':
        source = value;
        break;
      case 'type':
        type = value;
        break;
      case 'time':
        time = value;
        break;
      case 'contentType':
        contentType = value;
        break;
      case 'key':
        key = value;
        break;
      case 'specversion':
        specversion = value;
        break;
    }
  }
  const value = record.value ?? Buffer.alloc(0);
  const message = completeEnvelope(
    {
      id,
      source,
      type,
      time: time || (record.timestamp > 0n ? new Date(Number(record.timestamp)).toISOString() : undefined),
      contentType: contentType ?? ceContentType,
      key: key ?? (record.key && record.key.length > 0 ? record.key.toString('utf8') : undefined),
      headers,
      specversion,
      body: new Uint8Array(value.buffer, value.byteOffset, value.byteLength),
    },
    typeOfTopic(record.topic),
    id ? undefined : `${record.topic}-${record.partition}-${record.offset}`,
  );
  return { message, retry };
}
