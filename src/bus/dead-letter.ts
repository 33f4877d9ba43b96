import { randomUUID } from 'node:crypto';
import { DEAD_LETTER_HEADERS } from '../message/envelope.ts';
import type { Delivery, Transport } from '../transport/contract.ts';

/** The consumer group the dead-letter operations (list, redrive, purge) read a dead-letter type with. */
export const DEAD_LETTER_GROUP = 'busbar-dlq';

/** The consumer id this process attaches the dead-letter group with (one MQTT session per process, not per type). */
const ATTACH_ID = `busbar-dlq-attach-${randomUUID().slice(0, 8)}`;

/** Per transport, the dead-letter types whose DEAD_LETTER_GROUP is attached (or being attached) by this process. */
const prepared = new WeakMap<Transport, Map<string, Promise<void>>>();

/**
 * On a transport without replay a group sees only what is published after it exists: the dead-letter group is
 * attached once per dead-letter type (per process) before the first dead letter goes there, so the dead-letter
 * operations see every dead letter. Transports with replay need nothing: a new group starts at the earliest.
 * Concurrent callers share one attach; a failed attach is tried again by the next dead letter.
 */
export function ensureDeadLetterGroup(transport: Transport, deadLetterType: string): Promise<void> {
  if (transport.capabilities.replay) return Promise.resolve();
  const types = prepared.get(transport) ?? new Map<string, Promise<void>>();
  prepared.set(transport, types);
  let attach = types.get(deadLetterType);
  if (!attach) {
    // One attach at a time per transport: they share one consumer id.
    const previous = [...types.values()].at(-1)?.catch(() => {});
    attach = (async () => {
      await previous;
      const subscription = transport.consume({
        types: [deadLetterType],
        group: DEAD_LETTER_GROUP,
        consumerId: ATTACH_ID,
        offset: 'earliest',
        prefetch: 1,
        ackTimeoutMs: 60_000,
      });
      try {
        await subscription.ready;
      } finally {
        await subscription.close();
      }
    })();
    types.set(deadLetterType, attach);
    attach.catch(() => types.delete(deadLetterType));
  }
  return attach;
}

/**
 * Moves a delivery to its dead-letter type: publish a copy (same id, body and attributes, plus the reason in headers),
 * then ack the original. Publishing first means a crash in between yields a duplicate, never a loss. The copy carries
 * the partition key in a header rather than as its key, so that per-key ordering never holds one dead letter up
 * behind another while an operator browses or redrives them; redrive restores it.
 */
export async function deadLetter(
  transport: Transport,
  delivery: Delivery,
  deadLetterType: string,
  group: string,
  reason: string,
): Promise<void> {
  const original = delivery.message;
  await ensureDeadLetterGroup(transport, deadLetterType);
  const { key, ...rest } = original;
  await transport.publish(deadLetterType, [
    {
      ...rest,
      type: deadLetterType,
      headers: {
        ...original.headers,
        [DEAD_LETTER_HEADERS.reason]: reason.slice(0, 1024),
        [DEAD_LETTER_HEADERS.originalType]: original.type,
        [DEAD_LETTER_HEADERS.attempts]: String(delivery.attempt),
        [DEAD_LETTER_HEADERS.group]: group,
        [DEAD_LETTER_HEADERS.time]: new Date().toISOString(),
        ...(key === undefined ? {} : { [DEAD_LETTER_HEADERS.key]: key }),
      },
    },
  ]);
  await delivery.ack();
}

export function describeFailure(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
