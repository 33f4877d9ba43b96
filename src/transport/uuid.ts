import { randomFillSync } from 'node:crypto';

const pool = new Uint8Array(16 * 256);
let poolOffset = pool.length;
let lastMs = 0;
let sequence = 0;

/**
 * RFC 9562 UUIDv7: 48-bit Unix milliseconds, then a 12-bit counter that keeps ids made in the same millisecond
 * in order, then random bits. Sorting ids sorts messages by creation time.
 */
export function uuidv7(): string {
  let ms = Date.now();
  if (ms <= lastMs) {
    sequence = (sequence + 1) & 0xfff;
    if (sequence === 0) lastMs += 1;
    ms = lastMs;
  } else {
    lastMs = ms;
    sequence = 0;
  }
  if (poolOffset + 16 > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const o = poolOffset;
  poolOffset += 16;
  const b = pool;
  // A table of byte -> two hex digits, and no closures or subarray: this runs for every message published.
  return (
    hex(Math.floor(ms / 0x10000), 8) +
    '-' +
    hex(ms & 0xffff, 4) +
    '-' +
    hex(0x7000 | sequence, 4) +
    '-' +
    HEX[0x80 | (b[o]! & 0x3f)]! +
    HEX[b[o + 1]!]! +
    '-' +
    HEX[b[o + 2]!]! +
    HEX[b[o + 3]!]! +
    HEX[b[o + 4]!]! +
    HEX[b[o + 5]!]! +
    HEX[b[o + 6]!]! +
    HEX[b[o + 7]!]!
  );
}

const HEX = Array.from({ length: 256 }, (_, n) => n.toString(16).padStart(2, '0'));

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}
