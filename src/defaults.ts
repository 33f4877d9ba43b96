/**
 * Defaults every layer shares (the bus, the config loader, the REST gateway, the CLI), kept below all of them so
 * none imports another layer for a number. Exported from the package so users can see and reuse them.
 */
export const DEFAULT_ACK_TIMEOUT_MS = 30_000;
export const DEFAULT_PREFETCH = 16;
export const DEFAULT_MAX_ATTEMPTS = 5;
export const DEFAULT_RETRY = { initialDelayMs: 100, maxDelayMs: 30_000, factor: 2 } as const;
export const DEFAULT_ASYNC_BATCH = 500;
export const DEFAULT_ASYNC_MAX_PENDING = 100_000;
export const DEFAULT_ASYNC_RETRIES = 5;
