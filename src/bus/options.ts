/** Defaults of the bus layer, exported so users can see and reuse them. */
export const DEFAULT_ACK_TIMEOUT_MS = 30_000;
export const DEFAULT_PREFETCH = 16;
export const DEFAULT_MAX_ATTEMPTS = 5;
export const DEFAULT_RETRY = { initialDelayMs: 100, maxDelayMs: 30_000, factor: 2 } as const;
export const DEFAULT_ASYNC_BATCH = 500;
export const DEFAULT_ASYNC_MAX_PENDING = 100_000;
export const DEFAULT_ASYNC_RETRIES = 5;

export function deadLetterTypeOf(type: string): string {
  return `${type}.dlq`;
}

export function backoffMs(
  attempt: number,
  retry: { initialDelayMs: number; maxDelayMs: number; factor: number },
): number {
  const base = Math.min(retry.maxDelayMs, retry.initialDelayMs * retry.factor ** Math.max(0, attempt - 1));
  // Full jitter on the upper half keeps retries of a burst from arriving together.
  return Math.round(base / 2 + Math.random() * (base / 2));
}
