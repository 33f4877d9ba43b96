/** A confirm channel kept open on the current connection and re-opened after a reconnect or a channel error. */
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import type { ReconnectingConnection } from './connection.ts';

const noop = () => {};

export class ChannelSlot {
  readonly #connection: ReconnectingConnection;
  readonly #setup: (channel: ConfirmChannel) => void;
  #current: { model: ChannelModel; channel: Promise<ConfirmChannel> } | undefined;

  constructor(connection: ReconnectingConnection, setup: (channel: ConfirmChannel) => void = noop) {
    this.#connection = connection;
    this.#setup = setup;
  }

  /** The open channel, waiting through an outage until `deadline` (epoch ms). */
  async get(deadline: number): Promise<ConfirmChannel> {
    const model = await this.#connection.model(deadline);
    if (this.#current?.model === model) return this.#current.channel;
    const entry = {
      model,
      channel: model.createConfirmChannel().then((channel) => {
        // Every concurrent batch listens for 'close' (and 'drain'): many listeners are normal here.
        channel.setMaxListeners(0);
        channel.on('error', noop);
        channel.on('close', () => {
          if (this.#current === entry) this.#current = undefined;
        });
        this.#setup(channel);
        return channel;
      }),
    };
    this.#current = entry;
    entry.channel.catch(() => {
      if (this.#current === entry) this.#current = undefined;
    });
    return entry.channel;
  }

  async close(): Promise<void> {
    const entry = this.#current;
    this.#current = undefined;
    await entry?.channel.then((channel) => channel.close()).catch(noop);
  }
}
