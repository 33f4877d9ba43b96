/** NATS client failures -> BusError, with retryable set where trying again can succeed. */
import { JetStreamApiError } from '@nats-io/jetstream';
import { BusError, type ErrorCode, toBusError } from '../../errors.ts';

export const JS_STREAM_NOT_FOUND = 10059;
export const JS_CONSUMER_NOT_FOUND = 10014;
export const JS_STREAM_NAME_IN_USE = 10058;
export const JS_CONSUMER_EXISTS = 10148;
export const JS_CONSUMER_NAME_EXISTS = 10013;
export const JS_NO_MESSAGE_FOUND = 10037;

export function apiCode(error: unknown): number | undefined {
  return error instanceof JetStreamApiError ? error.code : undefined;
}

function causes(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = error; e instanceof Error && chain.length < 8; e = e.cause) chain.push(e);
  return chain;
}

/** No server subscribes to the subject: the stream (or consumer) is missing, or JetStream is still starting. */
export function isNoResponders(error: unknown): boolean {
  return causes(error).some((e) => (e as Error).name === 'NoResponders' || (e as Error).name === 'JetStreamNotEnabled');
}

export function toNatsError(error: unknown, code: ErrorCode, context: string): BusError {
  if (error instanceof BusError) return error;
  const names = causes(error).map((e) => (e as Error).name);
  if (names.includes('AuthorizationError') || names.includes('UserAuthenticationExpiredError')) {
    return toBusError(error, 'BUSBAR_ERR_AUTH', `${context} (check the NATS username, password or token)`);
  }
  if (names.includes('PermissionViolationError')) {
    return new BusError(
      'BUSBAR_ERR_AUTH',
      `${context}: ${(error as Error).message} (grant the NATS user this subject)`,
      {
        cause: error,
        retryable: false,
      },
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  if (/max_?payload|maximum payload/i.test(message)) {
    return new BusError(
      'BUSBAR_ERR_MESSAGE_TOO_LARGE',
      `${context}: ${message} (raise max_payload in the nats-server config, or send smaller messages)`,
      { cause: error },
    );
  }
  if (names.includes('ClosedConnectionError')) {
    return new BusError('BUSBAR_ERR_CLOSED', `${context}: the NATS connection is closed`, { cause: error });
  }
  if (error instanceof JetStreamApiError) {
    return new BusError(code, `${context}: ${message} (JetStream error ${error.code})`, {
      cause: error,
      retryable: error.status >= 500,
    });
  }
  // Timeouts, no responders while JetStream restarts, disconnections: all worth another try.
  return new BusError(code, `${context}: ${message}`, { cause: error, retryable: true });
}
