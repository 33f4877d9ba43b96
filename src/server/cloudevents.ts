/**
 * The CloudEvents HTTP binding on the gateway (docs/rest.md, "CloudEvents"). In: a POST in binary mode (attributes in
 * `ce-*` headers, the body as the data), structured mode (`application/cloudevents+json`) or batch mode
 * (`application/cloudevents-batch+json`) publishes the events with their own id, source, time and extensions. Out:
 * pull and stream render messages as structured events on request. Data travels byte-exact both ways: JSON data is
 * cut out of the request text and embedded into the answer as it is, never parsed and written again.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Message } from '../bus/message.ts';
import type { BusError } from '../errors.ts';
import {
  HEADERS_EXTENSION,
  isExtensionName,
  normaliseTime,
  packHeaders,
  unpackHeaders,
} from '../message/cloudevents.ts';
import { isJsonType, isTextType } from '../message/codec.ts';
import { type OutgoingOptions, SPEC_VERSION } from '../message/envelope.ts';
import { httpError } from './errors.ts';

export const STRUCTURED = 'application/cloudevents+json';
export const BATCH = 'application/cloudevents-batch+json';

/** One event to publish; its own source, when it has one, wins over the gateway's (routes/publish.ts). */
export interface IncomingEvent {
  source: string | undefined;
  body: Uint8Array;
  options: OutgoingOptions;
}

/** Which CloudEvents mode a POST uses, from its Content-Type and headers; undefined for a plain busbar POST. */
export function eventMode(
  contentType: string,
  headers: IncomingHttpHeaders,
): 'binary' | 'structured' | 'batch' | undefined {
  const base = (contentType.split(';', 1)[0] ?? '').trim().toLowerCase();
  if (base === STRUCTURED) return 'structured';
  if (base === BATCH) return 'batch';
  if (headers['ce-specversion'] !== undefined) return 'binary';
  const stray = Object.keys(headers).find((name) => name.startsWith('ce-'));
  if (stray !== undefined) {
    // Half a binary-mode event would otherwise be a plain message whose ce- headers are silently dropped.
    throw invalid(`header ${stray} without ce-specversion: add 'ce-specversion: 1.0' to send a CloudEvent`);
  }
  return undefined;
}

function invalid(message: string): BusError {
  return httpError('BUSBAR_ERR_INVALID_ARGUMENT', message);
}

function checkSpecversion(value: unknown, where: string): void {
  if (value !== SPEC_VERSION) {
    throw invalid(`${where}specversion ${JSON.stringify(value)} is not supported: busbar speaks CloudEvents 1.0 only`);
  }
}

function checkType(value: unknown, type: string, where: string): void {
  if (value !== undefined && value !== type) {
    throw invalid(
      `${where}type ${JSON.stringify(value)} differs from the message type '${type}' in the URL: ` +
        `post it to /v1/types/${String(value)}/messages`,
    );
  }
}

function time(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined;
  const normal = typeof value === 'string' ? normaliseTime(value) : undefined;
  if (normal === undefined) throw invalid(`${where}time ${JSON.stringify(value)} is not an RFC 3339 timestamp`);
  return normal;
}

/** HTTP binding 3.1.3.2: header values percent-encode what is not printable ASCII (and space, '"', '%'). */
function headerValue(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/**
 * A binary-mode POST: `ce-<attribute>` headers, Content-Type as datacontenttype, the body as data. `extraHeaders`
 * are the request's Busbar-Header-* headers, `key` its Busbar-Key; `ce-` attributes win over both.
 */
export function fromBinary(
  headers: IncomingHttpHeaders,
  body: Uint8Array,
  contentType: string,
  type: string,
  extra: { key?: string | undefined; headers?: Record<string, string> | undefined },
): IncomingEvent {
  const event: IncomingEvent = { source: undefined, body, options: { contentType, key: extra.key } };
  const user: Record<string, string> = { ...extra.headers };
  for (const [name, raw] of Object.entries(headers)) {
    if (!name.startsWith('ce-') || typeof raw !== 'string') continue;
    const value = headerValue(raw);
    const attribute = name.slice(3);
    if (attribute === 'specversion') checkSpecversion(value, 'ce-');
    else if (attribute === 'type') checkType(value, type, 'ce-');
    else if (attribute === 'id') event.options.id = value;
    else if (attribute === 'source') event.source = value;
    else if (attribute === 'time') event.options.time = time(value, 'ce-');
    else if (attribute === 'partitionkey') event.options.key = value;
    else if (attribute === HEADERS_EXTENSION) unpackHeaders(value, user);
    else if (attribute !== 'datacontenttype' && !DELIVERY.has(attribute)) user[attribute] = value;
  }
  for (const _ in user) {
    event.options.headers = user;
    break;
  }
  return event;
}

/** Structured or batch mode: the request body is one JSON event, or a JSON array of them. */
export function fromStructured(raw: Uint8Array, type: string, batch: boolean): IncomingEvent[] {
  const text = new TextDecoder().decode(raw);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw invalid(`the body is not valid JSON: ${(error as Error).message}`);
  }
  if (!batch) return [fromEventJson(parsed, members(text, 0), type, '')];
  if (!Array.isArray(parsed) || parsed.length === 0) throw invalid(`a ${BATCH} body is a JSON array of events`);
  return elements(text).map((start, i) => fromEventJson(parsed[i], members(text, start), type, `events[${i}]: `));
}

function fromEventJson(event: unknown, rawMembers: Map<string, string>, type: string, where: string): IncomingEvent {
  if (event === null || typeof event !== 'object' || Array.isArray(event)) {
    throw invalid(`${where}an event is a JSON object with specversion, id, source and type`);
  }
  const e = event as Record<string, unknown>;
  checkSpecversion(e.specversion, where);
  checkType(e.type, type, where);
  for (const name of ['id', 'source', 'datacontenttype', 'partitionkey'] as const) {
    if (e[name] !== undefined && typeof e[name] !== 'string') throw invalid(`${where}${name} must be a string`);
  }
  const declared = e.datacontenttype as string | undefined;
  let body: Uint8Array;
  let contentType = declared;
  if (e.data_base64 !== undefined) {
    if (typeof e.data_base64 !== 'string') throw invalid(`${where}data_base64 must be a base64 string`);
    body = Buffer.from(e.data_base64, 'base64');
    contentType ??= 'application/octet-stream';
  } else if (e.data === undefined) {
    body = new Uint8Array(0);
  } else if (typeof e.data === 'string' && declared !== undefined && !isJsonType(declared)) {
    body = Buffer.from(e.data, 'utf8');
  } else {
    // JSON data (the JSON format's default): the member's own text, byte for byte.
    body = Buffer.from(rawMembers.get('data')!, 'utf8');
    contentType ??= 'application/json';
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(e)) {
    if (CORE.has(name) || DELIVERY.has(name)) continue;
    if (name === HEADERS_EXTENSION && typeof value === 'string') unpackHeaders(value, headers);
    else if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
      headers[name] = String(value);
    } else throw invalid(`${where}extension ${name} must be a string, number or boolean`);
  }
  return {
    source: e.source as string | undefined,
    body,
    options: {
      id: e.id as string | undefined,
      time: time(e.time, where),
      contentType,
      key: e.partitionkey as string | undefined,
      headers,
    },
  };
}

const CORE = new Set([
  'specversion',
  'id',
  'source',
  'type',
  'time',
  'datacontenttype',
  'partitionkey',
  'data',
  'data_base64',
]);

/**
 * The extensions toStructured() adds for one delivery. An event posted with them (a pulled event sent again) is a new
 * message: its earlier delivery's state is dropped, not kept as headers.
 */
const DELIVERY = new Set(['busbarattempt', 'busbarreceipt', 'busbarleaseexpiresat']);

/** Lease details a pulled or streamed message carries, as extension attributes of its event. */
export interface LeaseInfo {
  receipt?: string | undefined;
  leaseExpiresAt?: string | undefined;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A received message as one structured-mode event (JSON text). Headers that are extension names become extensions;
 * the others ride in `busbarheaders`; busbar's delivery state is `busbarattempt`, `busbarreceipt` and
 * `busbarleaseexpiresat`. JSON data is embedded as the exact bytes sent, text as a string, the rest as data_base64.
 */
export function toStructured(message: Message, lease: LeaseInfo = {}): string {
  const event: Record<string, string> = {
    specversion: SPEC_VERSION,
    id: message.id,
    source: message.source,
    type: message.type,
    time: message.time,
    datacontenttype: message.contentType,
  };
  if (message.key !== undefined) event.partitionkey = message.key;
  let packed: Record<string, string> | undefined;
  for (const [name, value] of Object.entries(message.headers)) {
    if (isExtensionName(name)) event[name] = value;
    else {
      packed ??= {};
      packed[name] = value;
    }
  }
  if (packed) event[HEADERS_EXTENSION] = packHeaders(packed);
  event.busbarattempt = String(message.attempt);
  if (lease.receipt !== undefined) event.busbarreceipt = lease.receipt;
  if (lease.leaseExpiresAt !== undefined) event.busbarleaseexpiresat = lease.leaseExpiresAt;
  let text: string | undefined;
  try {
    text = strictUtf8.decode(message.raw);
  } catch {
    text = undefined;
  }
  const head = JSON.stringify(event).slice(0, -1);
  if (text !== undefined && isJsonType(message.contentType) && isJson(text)) return `${head},"data":${text}}`;
  if (text !== undefined && isTextType(message.contentType)) return `${head},"data":${JSON.stringify(text)}}`;
  const base64 = Buffer.from(message.raw.buffer, message.raw.byteOffset, message.raw.byteLength).toString('base64');
  return `${head},"data_base64":"${base64}"}`;
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

// A minimal scanner over JSON text already checked by JSON.parse: it finds where values start and end, so that
// data can be kept as the bytes that were sent.

function skipSpace(text: string, i: number): number {
  while (text[i] === ' ' || text[i] === '\n' || text[i] === '\r' || text[i] === '\t') i++;
  return i;
}

function skipString(text: string, i: number): number {
  i++;
  while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
  return i + 1;
}

function skipValue(text: string, i: number): number {
  const c = text[i];
  if (c === '"') return skipString(text, i);
  if (c === '{' || c === '[') {
    let depth = 0;
    while (i < text.length) {
      const ch = text[i];
      if (ch === '"') {
        i = skipString(text, i);
        continue;
      }
      if (ch === '{' || ch === '[') depth++;
      else if (ch === '}' || ch === ']') {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return i;
  }
  while (i < text.length && !',}] \t\r\n'.includes(text[i]!)) i++;
  return i;
}

/** The raw text of each member of the object value at `start` (the last of duplicate names wins, as in JSON.parse). */
function members(text: string, start: number): Map<string, string> {
  const out = new Map<string, string>();
  let i = skipSpace(text, start);
  if (text[i] !== '{') return out;
  i++;
  for (;;) {
    i = skipSpace(text, i);
    if (text[i] !== '"') return out;
    const nameEnd = skipString(text, i);
    const name = JSON.parse(text.slice(i, nameEnd)) as string;
    i = skipSpace(text, skipSpace(text, nameEnd) + 1);
    const end = skipValue(text, i);
    out.set(name, text.slice(i, end));
    i = skipSpace(text, end);
    if (text[i] === ',') i++;
  }
}

/** Where each element of the top-level array starts. */
function elements(text: string): number[] {
  const starts: number[] = [];
  let i = skipSpace(text, 0) + 1;
  for (;;) {
    i = skipSpace(text, i);
    if (text[i] === ']' || i >= text.length) return starts;
    starts.push(i);
    i = skipSpace(text, skipValue(text, i));
    if (text[i] === ',') i++;
  }
}
