/**
 * The wire mapping (docs/wire/redis.md): key names, and a message <-> stream entry fields.
 * Attributes travel as `ce_*` fields (CloudEvents Kafka-binding names), the content type as `content-type`,
 * user headers as fields of their own name, and the body, untouched, as the `data` field.
 */
import { BusError } from '../../errors.ts';
import { ByteNames } from '../../transport/byte-names.ts';
import type { TransportMessage } from '../../transport/contract.ts';
import { CE, completeEnvelope, SPEC_VERSION } from '../../transport/envelope.ts';

export const DATA_FIELD = 'data';
export const CONTENT_TYPE_FIELD = 'content-type';
const ATTRIBUTE_PREFIX = 'ce_';

/** Key names under one prefix. `{type}` is a Redis Cluster hash tag: every key of one type lives in one slot. */
export class Keys {
  readonly prefix: string;
  readonly types: string;

  constructor(prefix: string) {
    this.prefix = prefix;
    this.types = `${prefix}:types`;
  }

  stream(type: string): string {
    return `${this.prefix}:{${type}}`;
  }

  meta(type: string): string {
    return `${this.prefix}:{${type}}:meta`;
  }

  /** Per group: ids of nacked (or released) pending entries, scored by when they may be redelivered. */
  delayed(type: string, group: string): string {
    return `${this.prefix}:{${type}}:delayed:${group}`;
  }
}

/** XADD arguments after the key and id: field, value, field, value, ... with `data` last. */
export function encodeFields(message: TransportMessage): (string | Buffer)[] {
  const fields: (string | Buffer)[] = [
    `${ATTRIBUTE_PREFIX}${CE.id}`,
    message.id,
    `${ATTRIBUTE_PREFIX}${CE.source}`,
    message.source,
    `${ATTRIBUTE_PREFIX}${CE.type}`,
    message.type,
    `${ATTRIBUTE_PREFIX}${CE.specversion}`,
    SPEC_VERSION,
    `${ATTRIBUTE_PREFIX}${CE.time}`,
    message.time,
    CONTENT_TYPE_FIELD,
    message.contentType,
  ];
  if (message.key !== undefined) fields.push(`${ATTRIBUTE_PREFIX}${CE.key}`, message.key);
  for (const name in message.headers) {
    if (isReservedHeader(name)) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `header '${name}' collides with the Redis wire mapping (the fields '${DATA_FIELD}', '${CONTENT_TYPE_FIELD}' and 'ce_*' are reserved): rename the header`,
      );
    }
    fields.push(name, message.headers[name]!);
  }
  const body = message.body;
  fields.push(DATA_FIELD, Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  return fields;
}

function isReservedHeader(name: string): boolean {
  return name === DATA_FIELD || name === CONTENT_TYPE_FIELD || name.startsWith(ATTRIBUTE_PREFIX);
}

const EMPTY = new Uint8Array(0);

const ID = `${ATTRIBUTE_PREFIX}${CE.id}`;
const SOURCE = `${ATTRIBUTE_PREFIX}${CE.source}`;
const TYPE = `${ATTRIBUTE_PREFIX}${CE.type}`;
const TIME = `${ATTRIBUTE_PREFIX}${CE.time}`;
const KEY = `${ATTRIBUTE_PREFIX}${CE.key}`;
const SPECVERSION_FIELD = `${ATTRIBUTE_PREFIX}${CE.specversion}`;
const DATA_CONTENT_TYPE = `${ATTRIBUTE_PREFIX}${CE.contentType}`;

/** The fields busbar writes, recognised by their bytes so the common case decodes no field name to a string. */
const FIELDS = new ByteNames(
  [DATA_FIELD, CONTENT_TYPE_FIELD, ID, SOURCE, TYPE, TIME, KEY, SPECVERSION_FIELD, DATA_CONTENT_TYPE].map(
    (name) => [name, name] as const,
  ),
);

/**
 * The last value decoded for one field, as bytes (a copy: holding `raw` itself would keep its whole socket read
 * alive) and as a string. Messages often repeat a value (source, type, content type, the time of one publish batch):
 * comparing bytes is cheaper than decoding them again, and the same bytes always decode to the same string.
 */
class Recent {
  #bytes: Uint8Array = EMPTY;
  #text = '';

  /** `raw.toString()`. */
  decode(raw: Buffer): string {
    const bytes = this.#bytes;
    const n = raw.length;
    if (n === bytes.length) {
      let i = 0;
      while (i < n && raw[i] === bytes[i]) i++;
      if (i === n) return this.#text;
    }
    this.#bytes = Uint8Array.prototype.slice.call(raw);
    this.#text = raw.toString();
    return this.#text;
  }
}

/** Decoding is synchronous, so one set serves every subscription. */
const recent = { source: new Recent(), type: new Recent(), time: new Recent(), contentType: new Recent() };

/**
 * A stream entry's flat field list back into a message. Fields a plain client left out are filled in (the id from
 * the entry id, the time from the entry id's timestamp); an unknown `ce_<name>` field becomes the header `<name>`
 * (a CloudEvents extension).
 */
export function decodeEntry(type: string, entryId: string, fields: readonly Buffer[]): TransportMessage {
  let body: Uint8Array = EMPTY;
  let id: string | undefined;
  let source: string | undefined;
  let ceType: string | undefined;
  let time: string | undefined;
  let contentType: string | undefined;
  let key: string | undefined;
  let specversion: string | undefined;
  const headers: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const field = fields[i]!;
    const value = fields[i + 1]!;
    switch (FIELDS.match(field)) {
      case DATA_FIELD:
        body = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
        break;
      case ID:
        id = value.toString();
        break;
      case SOURCE:
        source = recent.source.decode(value);
        break;
      case TYPE:
        ceType = recent.type.decode(value);
        break;
      case TIME:
        time = recent.time.decode(value);
        break;
      case KEY:
        key = value.toString();
        break;
      case CONTENT_TYPE_FIELD:
        contentType = recent.contentType.decode(value);
        break;
      case DATA_CONTENT_TYPE:
        contentType ??= value.toString();
        break;
      case SPECVERSION_FIELD:
        specversion = value.toString();
        break;
      default: {
        const name = field.toString();
        if (name.startsWith(ATTRIBUTE_PREFIX)) headers[name.slice(ATTRIBUTE_PREFIX.length)] = value.toString();
        else headers[name] = value.toString();
      }
    }
  }
  time ??= new Date(entryTime(entryId)).toISOString();
  return completeEnvelope(
    { id, source, type: ceType, time, contentType, key, headers, specversion, body },
    type,
    entryId,
  );
}

/** The millisecond timestamp in a stream entry id (`<ms>-<seq>`). */
export function entryTime(entryId: string): number {
  return Number(entryId.slice(0, entryId.indexOf('-')));
}
