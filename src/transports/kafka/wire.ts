/**
 * Envelope <-> Kafka record, after the CloudEvents Kafka protocol binding (binary content mode): the record value is
 * the payload untouched, the record key is the partition key, every attribute is a `ce_<name>` header with a UTF-8
 * value, and `datacontenttype` travels as `content-type`. User headers keep their own names; a user header whose
 * name would read back as an attribute (`ce_*`, `content-type`) is sent as `ce_<name>`, which reads back as `<name>`.
 * Retry bookkeeping (`busbar-retry-*`) only ever appears on busbar's retry topics. See docs/wire/kafka.md.
 */
import type { Message, MessageToProduce } from '@platformatic/kafka';
import { BusError, checkTypeName } from '../../errors.ts';
import { CE, completeEnvelope, SPEC_VERSION } from '../../message/envelope.ts';
import { ByteNames } from '../../transport/byte-names.ts';
import type { Envelope, TransportMessage } from '../../transport/contract.ts';

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

const ATTRIBUTE_OF: Record<string, keyof Envelope> = {
  [CE.id]: 'id',
  [CE.source]: 'source',
  [CE.type]: 'type',
  [CE.time]: 'time',
  [CE.key]: 'key',
};

const RESERVED = new Set<string>(Object.values(RETRY_HEADERS));

function userHeaderName(name: string): string {
  const lower = name.toLowerCase();
  return lower.startsWith(CE_PREFIX) || lower === CONTENT_TYPE ? CE_PREFIX + name : name;
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
};
const SPEC_VERSION_BYTES = bytes(SPEC_VERSION);

/**
 * The record for one message; `extra` adds busbar's own headers (retry bookkeeping). Names cannot collide: user
 * names that look like attributes get the `ce_` prefix, and user headers named like busbar's own are dropped.
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
  for (const name in message.headers) {
    if (!RESERVED.has(name)) headers.set(bytes(userHeaderName(name)), bytes(message.headers[name]!));
  }
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

/** The message a record carries; attributes a plain client left out are filled (id from topic-partition-offset). */
export function fromRecord(record: Message<Buffer, Buffer, Buffer, Buffer>): DecodedRecord {
  // Plain locals rather than a partial object written by field name: this runs for every record.
  let id: string | undefined;
  let source: string | undefined;
  let type: string | undefined;
  let time: string | undefined;
  let contentType: string | undefined;
  let key: string | undefined;
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
        const attribute = name.slice(CE_PREFIX.length);
        field = ATTRIBUTE_OF[attribute];
        if (!field && attribute !== CE.specversion) headers[attribute] = value;
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
    }
  }
  const value = record.value ?? Buffer.alloc(0);
  const message = completeEnvelope(
    {
      id,
      source,
      type,
      time: time || (record.timestamp > 0n ? new Date(Number(record.timestamp)).toISOString() : undefined),
      contentType,
      key: key ?? (record.key && record.key.length > 0 ? record.key.toString('utf8') : undefined),
      headers,
      body: new Uint8Array(value.buffer, value.byteOffset, value.byteLength),
    },
    typeOfTopic(record.topic),
    id ? undefined : `${record.topic}-${record.partition}-${record.offset}`,
  );
  return { message, retry };
}
