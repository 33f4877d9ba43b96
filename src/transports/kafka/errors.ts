/** @platformatic/kafka failures -> BusError, keeping the client's error as the cause. */
import { BusError, type ErrorCode } from '../../errors.ts';

interface ClientError extends Error {
  code?: string;
  canRetry?: boolean;
  findBy?: (property: string, value: unknown) => ClientError | null;
}

/** True when the error (or one it aggregates) is the Kafka protocol error `apiId`, e.g. TOPIC_ALREADY_EXISTS. */
export function hasKafkaError(error: unknown, apiId: string): boolean {
  const e = error as ClientError | undefined;
  return Boolean(e && typeof e.findBy === 'function' && e.findBy('apiId', apiId));
}

/** Messages after which the whole cause chain reads as one line. */
function reasonOf(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  while (current instanceof Error && parts.length < 4) {
    // The client's messages end in '.', which reads badly once joined with ': '.
    parts.push(current.message.replace(/\.$/, ''));
    const nested = (current as AggregateError).errors?.[0];
    current = current.cause ?? nested;
  }
  return parts.length > 0 ? [...new Set(parts)].join(': ') : String(error);
}

export function kafkaError(error: unknown, code: ErrorCode, context: string): BusError {
  if (error instanceof BusError) return error;
  const e = error as ClientError | undefined;
  if (e?.code === 'PLT_KFK_AUTHENTICATION') {
    return new BusError(
      'BUSBAR_ERR_AUTH',
      `${context}: ${reasonOf(error)}: check the username, password and sasl mechanism`,
      {
        cause: error,
      },
    );
  }
  if (hasKafkaError(error, 'MESSAGE_TOO_LARGE') || hasKafkaError(error, 'RECORD_LIST_TOO_LARGE')) {
    return new BusError(
      'BUSBAR_ERR_MESSAGE_TOO_LARGE',
      `${context}: the broker refused the batch as too large: send smaller messages or raise the topic's max.message.bytes`,
      { cause: error },
    );
  }
  const network =
    e?.code === 'PLT_KFK_NETWORK' || e?.code === 'PLT_KFK_TIMEOUT' || Boolean(e?.findBy?.('code', 'PLT_KFK_NETWORK'));
  const finalCode = network && code !== 'BUSBAR_ERR_PUBLISH' ? 'BUSBAR_ERR_CONNECTION' : code;
  return new BusError(finalCode, `${context}: ${reasonOf(error)}`, {
    cause: error,
    retryable: network || e?.canRetry === true || undefined,
  });
}
