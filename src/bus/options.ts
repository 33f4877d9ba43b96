/** The bus layer's retry arithmetic; the defaults live in src/defaults.ts (re-exported here). */
export {
  DEFAULT_ACK_TIMEOUT_MS,
  DEFAULT_ASYNC_BATCH,
  DEFAULT_ASYNC_MAX_PENDING,
  DEFAULT_ASYNC_RETRIES,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_PREFETCH,
  DEFAULT_RETRY,
} from '../defaults.ts';

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
