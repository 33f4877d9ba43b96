/**
 * Codecs chosen by content type. Bodies travel as bytes, untouched: what a producer encodes is byte-for-byte what a
 * consumer's `raw` holds.
 */
import { BusError } from '../errors.ts';

export const JSON_TYPE = 'application/json';
export const TEXT_TYPE = 'text/plain; charset=utf-8';
export const BYTES_TYPE = 'application/octet-stream';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

export type Body = string | Uint8Array | unknown;

export interface Encoded {
  bytes: Uint8Array;
  contentType: string;
}

type Kind = 'json' | 'text' | 'bytes';

/** A consumer meets a handful of content types, once per message: each is parsed once. */
const kinds = new Map<string, Kind>();
const MAX_KINDS = 256;

function kindOf(contentType: string): Kind {
  let kind = kinds.get(contentType);
  if (kind === undefined) {
    const base = (contentType.split(';', 1)[0] ?? '').trim().toLowerCase();
    if (base === 'application/json' || base.endsWith('+json')) kind = 'json';
    else if (base.startsWith('text/') || base === 'application/xml' || base.endsWith('+xml')) kind = 'text';
    else kind = 'bytes';
    if (kinds.size >= MAX_KINDS) kinds.clear();
    kinds.set(contentType, kind);
  }
  return kind;
}

export function isJsonType(contentType: string): boolean {
  return kindOf(contentType) === 'json';
}

export function isTextType(contentType: string): boolean {
  return kindOf(contentType) === 'text';
}

/** Strings are text, byte arrays are bytes, anything else is JSON, unless a content type says otherwise. */
export function encodeBody(body: Body, contentType?: string): Encoded {
  if (body instanceof Uint8Array) return { bytes: body, contentType: contentType ?? BYTES_TYPE };
  // A string is always sent as its UTF-8 bytes: with a JSON content type it is taken to be JSON text already.
  if (typeof body === 'string') {
    return { bytes: encoder.encode(body), contentType: contentType ?? TEXT_TYPE };
  }
  if (contentType !== undefined && !isJsonType(contentType)) {
    throw new BusError(
      'BUSBAR_ERR_ENCODE',
      `cannot encode a ${typeof body} as '${contentType}': pass a string or Uint8Array for non-JSON content types`,
    );
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(body);
  } catch (error) {
    throw new BusError('BUSBAR_ERR_ENCODE', `message body is not JSON-serialisable: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (text === undefined) {
    throw new BusError(
      'BUSBAR_ERR_ENCODE',
      `message body of type ${typeof body} has no JSON form: send a string, Uint8Array or JSON value`,
    );
  }
  return { bytes: encoder.encode(text), contentType: contentType ?? JSON_TYPE };
}

/** JSON content is parsed, text is a string, anything else stays bytes. */
export function decodeBody(bytes: Uint8Array, contentType: string): unknown {
  if (isJsonType(contentType)) {
    const text = decoder.decode(bytes);
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new BusError(
        'BUSBAR_ERR_DECODE',
        `message body is not valid JSON although its content type is '${contentType}': read msg.raw instead`,
        { cause: error },
      );
    }
  }
  if (isTextType(contentType)) return decoder.decode(bytes);
  return bytes;
}
