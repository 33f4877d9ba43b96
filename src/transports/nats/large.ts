/**
 * Messages larger than the server's max_payload (1 MiB by default, headers included). The head message on the
 * type's subject carries the envelope and the first bytes of the body, plus a `ce-busbarparts` header listing the
 * stream sequences of the remaining bytes, published first (and confirmed) as parts on `busbar_parts.<type>` in the
 * same stream. Consumers filter on the type's subject, so only heads are delivered, acked and counted; a delivery
 * reads its parts back by sequence. Parts age out with the stream's retention like any message.
 */
import type { MsgHdrs } from '@nats-io/transport-node';

export const PARTS_HEADER = 'ce-busbarparts';
/**
 * Parts are read back through the JetStream API, which answers in JSON with the data in base64: keep a part small
 * enough that the answer still fits in max_payload.
 */
export function partSize(maxPayload: number): number {
  return Math.floor(((maxPayload - 2048) * 3) / 4);
}

/** Bytes the headers take on the wire (`NATS/1.0\r\n`, `name: value\r\n` each, closing `\r\n`). */
export function headerBytes(h: MsgHdrs): number {
  let size = 12;
  for (const [name, values] of h) {
    for (const value of values) size += name.length + Buffer.byteLength(value) + 4;
  }
  return size;
}

/** The body split into what fits in the head (after its headers) and the parts that follow. */
export function splitBody(
  body: Uint8Array,
  headSize: number,
  maxPayload: number,
): { head: Uint8Array; parts: Uint8Array[] } {
  // The parts header: up to 16 digits and a comma per part.
  const reserve = 32 + PARTS_HEADER.length + Math.ceil(body.length / partSize(maxPayload)) * 17;
  const headRoom = Math.max(0, maxPayload - headSize - reserve);
  const size = partSize(maxPayload);
  const parts: Uint8Array[] = [];
  for (let at = headRoom; at < body.length; at += size) parts.push(body.subarray(at, at + size));
  return { head: body.subarray(0, headRoom), parts };
}

export function parseParts(value: string): number[] | undefined {
  const seqs = value.split(',').map(Number);
  return seqs.length > 0 && seqs.every((n) => Number.isSafeInteger(n) && n > 0) ? seqs : undefined;
}

export function joinBody(head: Uint8Array, parts: readonly Uint8Array[]): Uint8Array {
  const body = new Uint8Array(head.length + parts.reduce((n, p) => n + p.length, 0));
  body.set(head, 0);
  let at = head.length;
  for (const part of parts) {
    body.set(part, at);
    at += part.length;
  }
  return body;
}
