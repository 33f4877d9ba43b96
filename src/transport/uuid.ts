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
  const b = pool.subarray(poolOffset, poolOffset + 16);
  poolOffset += 16;
  const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');
  const rand = (i: number) => hex(b[i]!, 2);
  return (
    hex(Math.floor(ms / 0x10000), 8) +
    '-' +
    hex(ms & 0xffff, 4) +
    '-' +
    hex(0x7000 | sequence, 4) +
    '-' +
    hex(0x80 | (b[0]! & 0x3f), 2) +
    rand(1) +
    '-' +
    rand(2) +
    rand(3) +
    rand(4) +
    rand(5) +
    rand(6) +
    rand(7)
  );
}
