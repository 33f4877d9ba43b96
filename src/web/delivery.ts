/**
 * Delivery modes: where a successful request's messages go, and what "delivered" means before the response is sent.
 * - broker(bus): the broker confirmed every message (the default when a MessageBus is passed).
 * - producers(producerFor): handed to a producer per type, e.g. an async producer with a spool: durable at the
 *   broker or in the spool once its send() resolves.
 * - outbox(outbox): written into the transactional outbox (its own transaction at the response, or the app's own
 *   with req.bus.writeTo(tx)); the relay sends them on.
 */
import { resend, runsByType } from '../reliability/resend.ts';
import type { TransportMessage } from '../transport/contract.ts';

export interface Delivery {
  /** For error messages, e.g. `broker`, `outbox`. */
  readonly name: string;
  /** Resolves once every message is durable where this mode puts it; rejects otherwise (nothing is dropped silently). */
  deliver(messages: readonly TransportMessage[]): Promise<void>;
  /** Writes the messages inside the caller's open transaction; only modes backed by an outbox have it. */
  writeInTransaction?(transaction: unknown, messages: readonly TransportMessage[]): Promise<void>;
}

/** What broker() needs of a MessageBus. */
export interface BatchSender {
  sendBatch(type: string, messages: readonly unknown[]): Promise<string[]>;
}

/** What producers() needs of a Producer: `send()` resolving means it holds the messages durably (or was told to). */
export interface MessageSender {
  send(messages: readonly unknown[]): Promise<void>;
}

/** What outbox() needs of an outbox (PgOutbox, SqliteOutbox). */
export interface OutboxWriter {
  write(transaction: unknown, messages: readonly TransportMessage[]): Promise<void>;
  writeOwn(messages: readonly TransportMessage[]): Promise<void>;
}

export function broker(bus: BatchSender): Delivery {
  return {
    name: 'broker',
    async deliver(messages) {
      for (const [type, run] of runsByType(messages)) await bus.sendBatch(type, run.map(resend));
    },
  };
}

export function producers(producerFor: (type: string) => MessageSender): Delivery {
  return {
    name: 'producer',
    async deliver(messages) {
      for (const [type, run] of runsByType(messages)) await producerFor(type).send(run.map(resend));
    },
  };
}

export function outbox(store: OutboxWriter): Delivery {
  return {
    name: 'outbox',
    deliver: (messages) => store.writeOwn(messages),
    writeInTransaction: (transaction, messages) => store.write(transaction, messages),
  };
}

/** A MessageBus or a delivery mode, as the adapters accept them. */
export function toDelivery(target: BatchSender | Delivery): Delivery {
  return typeof (target as Delivery).deliver === 'function' ? (target as Delivery) : broker(target as BatchSender);
}
