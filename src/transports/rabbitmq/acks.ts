/**
 * Coalesces acks on one channel. Acks asked for in the same turn of the event loop go out together at the next
 * turn: one `multiple` ack for the run of acked deliveries at the front of the channel's unacked window, single
 * acks for the rest. A consumer acking every message then sends a frame per batch, not per message. Nacks go out
 * at once.
 */
import type { Channel, Message } from 'amqplib';

const tagged = (deliveryTag: number) => ({ fields: { deliveryTag } }) as Message;

export class ChannelAcker {
  readonly #channel: Channel;
  /** The broker's unacked deliveries on this channel, in delivery-tag order; true once an ack is waiting to go. */
  readonly #open = new Map<number, boolean>();
  #flush: Promise<void> | undefined;
  #settle: { resolve: () => void; reject: (error: unknown) => void } | undefined;

  constructor(channel: Channel) {
    this.#channel = channel;
  }

  delivered(deliveryTag: number): void {
    this.#open.set(deliveryTag, false);
  }

  /** Resolves once the ack is written to the connection; rejects if the channel closed first. */
  ack(deliveryTag: number): Promise<void> {
    this.#open.set(deliveryTag, true);
    if (!this.#flush) {
      let settle!: { resolve: () => void; reject: (error: unknown) => void };
      this.#flush = new Promise<void>((resolve, reject) => {
        settle = { resolve, reject };
      });
      this.#settle = settle;
      setImmediate(() => this.flush());
    }
    return this.#flush;
  }

  /** Sends the waiting acks now (before the channel closes, so acks already asked for still land). */
  flush(): void {
    const settle = this.#settle;
    this.#flush = undefined;
    this.#settle = undefined;
    if (!settle) return;
    try {
      this.#send();
      settle.resolve();
    } catch (error) {
      settle.reject(error);
    }
  }

  /** Returns the delivery to its queue now (requeue) — or drops it from the window after a delayed re-publish. */
  nack(deliveryTag: number): void {
    this.#open.delete(deliveryTag);
    this.#channel.nack(tagged(deliveryTag), false, true);
  }

  #send(): void {
    let front: number | undefined;
    for (const [tag, acked] of this.#open) {
      if (!acked) break;
      front = tag;
      this.#open.delete(tag);
    }
    if (front !== undefined) this.#channel.ack(tagged(front), true);
    for (const [tag, acked] of this.#open) {
      if (!acked) continue;
      this.#open.delete(tag);
      this.#channel.ack(tagged(tag));
    }
  }
}
