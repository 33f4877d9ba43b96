import { DEAD_LETTER_HEADERS } from '../message/envelope.ts';
import type { Delivery, Transport } from '../transport/contract.ts';

/**
 * Moves a delivery to its dead-letter type: publish a copy (same id, body and attributes, plus the reason in headers),
 * then ack the original. Publishing first means a crash in between yields a duplicate, never a loss.
 */
export async function deadLetter(
  transport: Transport,
  delivery: Delivery,
  deadLetterType: string,
  group: string,
  reason: string,
): Promise<void> {
  const original = delivery.message;
  await transport.publish(deadLetterType, [
    {
      ...original,
      type: deadLetterType,
      headers: {
        ...original.headers,
        [DEAD_LETTER_HEADERS.reason]: reason.slice(0, 1024),
        [DEAD_LETTER_HEADERS.originalType]: original.type,
        [DEAD_LETTER_HEADERS.attempts]: String(delivery.attempt),
        [DEAD_LETTER_HEADERS.group]: group,
        [DEAD_LETTER_HEADERS.time]: new Date().toISOString(),
      },
    },
  ]);
  await delivery.ack();
}

export function describeFailure(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
