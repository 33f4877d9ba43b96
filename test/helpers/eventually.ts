/**
 * Waiting for a figure a broker reports a moment after the event that changes it (stats read by a management API,
 * a commit or an ack confirmed asynchronously, a retention sweep on the broker's own timer). A test reads until the
 * figure holds, within a patience only a real failure exhausts, and asserts on the last value it read.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/** Generous enough for a loaded machine, short enough that a real failure still ends the test. */
export const SETTLE_MS = 30_000;

/** Reads `read()` until `done` holds or `patienceMs` pass; returns the last value (the caller asserts on it). */
export async function eventually<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  patienceMs = SETTLE_MS,
): Promise<T> {
  const deadline = Date.now() + patienceMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await sleep(200);
  }
}
