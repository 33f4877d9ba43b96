/**
 * Every failure busbar reports is a BusError with a stable code from this one table.
 * docs/errors.md documents each code; test/errors.test.ts fails when the two drift.
 */

export const ERROR_CODES = {
  BUSBAR_ERR_INVALID_ARGUMENT: { retryable: false, usage: true },
  BUSBAR_ERR_INVALID_TYPE_NAME: { retryable: false, usage: true },
  BUSBAR_ERR_INVALID_GROUP_NAME: { retryable: false, usage: true },
  BUSBAR_ERR_INVALID_CONFIG: { retryable: false, usage: true },
  BUSBAR_ERR_CONFIG_FILE: { retryable: false, usage: true },
  BUSBAR_ERR_INVALID_URL: { retryable: false, usage: true },
  BUSBAR_ERR_UNKNOWN_SCHEME: { retryable: false, usage: true },
  BUSBAR_ERR_USAGE: { retryable: false, usage: true },
  BUSBAR_ERR_TRANSPORT_LOAD: { retryable: false, usage: false },
  BUSBAR_ERR_UNSUPPORTED: { retryable: false, usage: false },
  BUSBAR_ERR_UNKNOWN_TYPE: { retryable: false, usage: false },
  BUSBAR_ERR_PARTITIONS: { retryable: false, usage: false },
  BUSBAR_ERR_ENCODE: { retryable: false, usage: false },
  BUSBAR_ERR_DECODE: { retryable: false, usage: false },
  BUSBAR_ERR_MESSAGE_TOO_LARGE: { retryable: false, usage: false },
  BUSBAR_ERR_CLOSED: { retryable: false, usage: false },
  BUSBAR_ERR_AUTH: { retryable: false, usage: false },
  BUSBAR_ERR_CONNECTION: { retryable: true, usage: false },
  BUSBAR_ERR_PUBLISH: { retryable: true, usage: false },
  BUSBAR_ERR_TIMEOUT: { retryable: true, usage: false },
  BUSBAR_ERR_ACK: { retryable: true, usage: false },
  BUSBAR_ERR_BROKER: { retryable: true, usage: false },
  BUSBAR_ERR_UNAUTHORIZED: { retryable: false, usage: false },
  BUSBAR_ERR_FORBIDDEN: { retryable: false, usage: false },
  BUSBAR_ERR_NOT_FOUND: { retryable: false, usage: false },
  BUSBAR_ERR_METHOD_NOT_ALLOWED: { retryable: false, usage: false },
  BUSBAR_ERR_PAYLOAD_TOO_LARGE: { retryable: false, usage: false },
  BUSBAR_ERR_INVALID_RECEIPT: { retryable: false, usage: false },
  BUSBAR_ERR_LIMIT: { retryable: true, usage: false },
  BUSBAR_ERR_UNSUPPORTED_MEDIA_TYPE: { retryable: false, usage: false },
  BUSBAR_ERR_IDEMPOTENCY_KEY: { retryable: false, usage: false },
  BUSBAR_ERR_INTERNAL: { retryable: false, usage: false },
  BUSBAR_ERR_SPOOL_FULL: { retryable: true, usage: false },
  BUSBAR_ERR_SPOOL: { retryable: false, usage: false },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface BusErrorOptions {
  cause?: unknown;
  /** Overrides the code's default when a particular failure is (or is not) worth retrying. */
  retryable?: boolean;
  details?: Record<string, unknown>;
}

export class BusError extends Error {
  override readonly name = 'BusError';
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: BusErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? ERROR_CODES[code].retryable;
    this.details = options.details;
  }

  /** True for errors caused by how busbar was called or configured (the CLI exits 2 for them). */
  get isUsageError(): boolean {
    return ERROR_CODES[this.code].usage;
  }
}

export function isBusError(error: unknown, code?: ErrorCode): error is BusError {
  return error instanceof BusError && (code === undefined || error.code === code);
}

/** Wraps an unknown failure from a client library, keeping it as the cause. */
export function toBusError(error: unknown, code: ErrorCode, context: string): BusError {
  if (error instanceof BusError) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new BusError(code, `${context}: ${reason}`, { cause: error });
}

const TYPE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/**
 * Message type and consumer group names must map onto every broker's naming rules (topics, queues, subjects, keys).
 * Each kind of name fails with its own code, so a bad `--group` is not reported as a bad type.
 */
export function checkTypeName(type: unknown, what: 'message type' | 'consumer group' = 'message type'): string {
  if (typeof type !== 'string' || !TYPE_NAME.test(type) || type.includes('..')) {
    throw new BusError(
      what === 'consumer group' ? 'BUSBAR_ERR_INVALID_GROUP_NAME' : 'BUSBAR_ERR_INVALID_TYPE_NAME',
      `invalid ${what} ${JSON.stringify(type)}: use 1-200 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit, with no '..'`,
    );
  }
  return type;
}
