/**
 * Confirmed publishing (publisher confirms, persistent messages, mandatory routing) that rides out outages:
 * messages not confirmed when a channel or connection dies are sent again on the next one until the deadline,
 * so a publish either resolves with everything stored or fails with a retryable BusError (duplicates possible,
 * losses not).
 */
import type { ConfirmChannel, Message, Options } from 'amqplib';
import { BusError } from '../../errors.ts';
import { ChannelSlot } from './channels.ts';
import type { ReconnectingConnection } from './connection.ts';

export interface Outgoing {
  readonly exchange: string;
  readonly routingKey: string;
  readonly content: Buffer;
  readonly options: Options.Publish;
}

type Outcome = 'ok' | 'returned' | Error;

const RETRY_PAUSE_MS = 50;

export class Publisher {
  readonly #connection: ReconnectingConnection;
  readonly #slot: ChannelSlot;
  /** Message ids RabbitMQ returned as unroutable; the return always arrives before the message's confirm. */
  readonly #returned = new Set<string>();

  constructor(connection: ReconnectingConnection) {
    this.#connection = connection;
    this.#slot = new ChannelSlot(connection, (channel) =>
      channel.on('return', (message: Message) => {
        if (message.properties.messageId) this.#returned.add(String(message.properties.messageId));
      }),
    );
  }

  /** Sends until every message is confirmed or `deadline` passes; returns those RabbitMQ could not route. */
  async send(batch: readonly Outgoing[], deadline: number, timeoutMs: number): Promise<Outgoing[]> {
    let pending = batch;
    let lastError: unknown;
    const returned: Outgoing[] = [];
    while (pending.length > 0) {
      if (Date.now() > deadline) {
        const blocked = this.#connection.blocked;
        const reason = blocked
          ? `RabbitMQ blocks publishing: ${blocked}`
          : lastError instanceof Error
            ? lastError.message
            : 'no answer';
        throw new BusError(
          'BUSBAR_ERR_PUBLISH',
          `RabbitMQ did not confirm ${pending.length} of ${batch.length} message(s) within ${timeoutMs} ms (${reason}); retry the send`,
          { cause: lastError },
        );
      }
      let channel: ConfirmChannel;
      try {
        channel = await this.#slot.get(deadline);
      } catch (error) {
        if (error instanceof BusError) throw error;
        lastError = error;
        continue;
      }
      const outcomes = await this.#sendAll(channel, pending, deadline);
      const failed: Outgoing[] = [];
      outcomes.forEach((outcome, i) => {
        if (outcome === 'returned') returned.push(pending[i]!);
        else if (outcome !== 'ok') {
          lastError = outcome;
          failed.push(pending[i]!);
        }
      });
      pending = failed;
      if (pending.length > 0) await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS));
    }
    return returned;
  }

  /** Publishes the batch and resolves with each message's outcome once all are confirmed, nacked or lost. */
  async #sendAll(channel: ConfirmChannel, batch: readonly Outgoing[], deadline: number): Promise<Outcome[]> {
    if (batch.length === 0) return [];
    const outcomes = new Array<Outcome>(batch.length);
    let remaining = batch.length;
    let finish!: () => void;
    const settled = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const record = (i: number, outcome: Outcome) => {
      if (outcomes[i] !== undefined) return;
      outcomes[i] = outcome;
      if (--remaining === 0) finish();
    };
    let sent = 0;
    for (; sent < batch.length; sent++) {
      const item = batch[sent]!;
      const i = sent;
      let writable: boolean;
      try {
        writable = channel.publish(item.exchange, item.routingKey, item.content, item.options, (error) => {
          if (error) record(i, error instanceof Error ? error : new Error(String(error)));
          else record(i, this.#wasReturned(item) ? 'returned' : 'ok');
        });
      } catch (error) {
        if (error instanceof RangeError) {
          throw new BusError(
            'BUSBAR_ERR_INVALID_ARGUMENT',
            `message headers are too large for AMQP (${error.message}): keep headers under 64 KiB`,
          );
        }
        break; // the channel is closed: this one and the rest go again on the next channel
      }
      if (!writable && !(await drained(channel, deadline))) {
        sent++;
        break;
      }
    }
    for (let i = sent; i < batch.length; i++) record(i, new Error('not sent: the channel closed or stayed blocked'));
    // A blocked connection (a RabbitMQ resource alarm) never confirms: stop waiting at the deadline.
    const timer = setTimeout(
      () => {
        for (let i = 0; i < batch.length; i++) record(i, new Error('not confirmed before the publish timeout'));
      },
      Math.max(0, deadline - Date.now()),
    );
    await settled;
    clearTimeout(timer);
    return outcomes;
  }

  #wasReturned(item: Outgoing): boolean {
    const id = item.options.messageId;
    return id !== undefined && this.#returned.delete(String(id));
  }

  close(): Promise<void> {
    return this.#slot.close();
  }
}

/** Resolves true when the channel's write buffer drained, false when it closed or `deadline` passed first. */
function drained(channel: ConfirmChannel, deadline: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (result: boolean) => () => {
      clearTimeout(timer);
      channel.off('drain', onDrain);
      channel.off('close', onClose);
      resolve(result);
    };
    const onDrain = done(true);
    const onClose = done(false);
    const timer = setTimeout(onClose, Math.max(0, deadline - Date.now()));
    channel.on('drain', onDrain);
    channel.on('close', onClose);
  });
}
