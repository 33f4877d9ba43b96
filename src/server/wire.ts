/**
 * Message bodies on the gateway's wire. Out: JSON content as a JSON value, text as a string, anything else (or
 * content that does not match its type) as base64 with `"encoding": "base64"`. In: the same rules backwards.
 */
import type { Message } from '../bus/message.ts';
import { BusError } from '../errors.ts';
import { isJsonType, isTextType } from '../message/codec.ts';
import type { OutgoingOptions } from '../message/envelope.ts';

export interface WireMessage {
  id: string;
  type: string;
  source: string;
  time: string;
  contentType: string;
  key?: string;
  headers: Record<string, string>;
  attempt: number;
  body: unknown;
  encoding?: 'base64';
  receipt?: string;
  leaseExpiresAt?: string;
}

/** A batch item as a client sends it (validated by the PublishItem schema before it gets here). */
export interface WireOutgoing {
  body: unknown;
  contentType?: string;
  encoding?: 'base64';
  key?: string;
  headers?: Record<string, string>;
  id?: string;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The body as it goes out, and whether it had to be base64. */
export function wireBody(raw: Uint8Array, contentType: string): { body: unknown; encoding?: 'base64' } {
  if (isJsonType(contentType) || isTextType(contentType)) {
    let text: string | undefined;
    try {
      text = strictUtf8.decode(raw);
    } catch {
      text = undefined;
    }
    if (text !== undefined) {
      if (!isJsonType(contentType)) return { body: text };
      try {
        return { body: JSON.parse(text) };
      } catch {
        // Not JSON despite its content type: fall through to base64 so the bytes still arrive intact.
      }
    }
  }
  return { body: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64'), encoding: 'base64' };
}

export function toWire(message: Message, lease?: { receipt: string; expiresAt: number }): WireMessage {
  const out: WireMessage = {
    id: message.id,
    type: message.type,
    source: message.source,
    time: message.time,
    contentType: message.contentType,
    headers: { ...message.headers },
    attempt: message.attempt,
    ...wireBody(message.raw, message.contentType),
  };
  if (message.key !== undefined) out.key = message.key;
  if (lease) {
    out.receipt = lease.receipt;
    out.leaseExpiresAt = new Date(lease.expiresAt).toISOString();
  }
  return out;
}

/** The body and options to build one outgoing message from a batch item. */
export function fromWire(item: WireOutgoing, index: number): { body: unknown; options: OutgoingOptions } {
  const options: OutgoingOptions = {
    key: item.key,
    headers: item.headers ? { ...item.headers } : undefined,
    contentType: item.contentType,
    id: item.id,
  };
  if (item.encoding === 'base64') {
    if (typeof item.body !== 'string' || !BASE64.test(item.body)) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `messages[${index}].body must be a base64 string (standard alphabet, padded) when encoding is "base64"`,
      );
    }
    return {
      body: new Uint8Array(Buffer.from(item.body, 'base64')),
      options: { ...options, contentType: item.contentType ?? 'application/octet-stream' },
    };
  }
  if (typeof item.body !== 'string' && item.contentType !== undefined && !isJsonType(item.contentType)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `messages[${index}].body is a JSON value but contentType is '${item.contentType}': send a string, ` +
        'base64 with "encoding": "base64", or a JSON content type',
    );
  }
  if (typeof item.body === 'string' && item.contentType !== undefined && isJsonType(item.contentType)) {
    try {
      JSON.parse(item.body);
    } catch {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `messages[${index}].body is a string that is not JSON text although contentType is '${item.contentType}': ` +
          'send the JSON value itself, or drop contentType to send text',
      );
    }
  }
  return { body: item.body, options };
}
