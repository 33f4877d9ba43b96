/**
 * Everything the transport does on the broker besides consuming: confirmed publishing that survives reconnects,
 * declaring types and groups (with the replay seeding of new `earliest` groups), and delayed re-publishing.
 */
import { randomUUID } from 'node:crypto';
import type { Channel, ChannelModel, ConfirmChannel, Message, Options } from 'amqplib';
import { BusError } from '../../errors.ts';
import type { Offset, TransportMessage } from '../../transport/contract.ts';
import { ChannelSlot } from './channels.ts';
import type { ReconnectingConnection } from './connection.ts';
import type { RabbitOptions } from './options.ts';
import { type Outgoing, Publisher } from './publisher.ts';
import { Registry } from './registry.ts';
import {
  ATTEMPTS_HEADER,
  delayBucket,
  delayName,
  EXCHANGE,
  groupQueue,
  initQueue,
  logQueue,
  publishOptions,
  SEED_MARKER_HEADER,
  toBuffer,
} from './wire.ts';

export const GROUP_QUEUE_ARGS = { 'x-queue-type': 'quorum' } as const;
/** Delay queues are redeclared (resetting x-expires) at least this often while in use. */
const DELAY_REDECLARE_MS = 10_000;
const SEED_PREFETCH = 500;
/** AMQP short strings: queue names are at most 255 bytes. */
const MAX_QUEUE_NAME_BYTES = 255;
const LOCK_RETRY_MS = 100;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const noop = () => {};

/** Properties of a received message, ready to publish again (broker-added headers removed). */
export function republishOptions(message: Message, extraHeaders: Record<string, unknown> = {}): Options.Publish {
  const p = message.properties;
  const headers: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(p.headers ?? {})) {
    if (name === 'x-stream-offset' || name === 'x-delivery-count' || name === 'x-death') continue;
    if (name.startsWith('x-first-death-') || name.startsWith('x-last-death-')) continue;
    headers[name] = value;
  }
  const options: Options.Publish = { persistent: true, headers: { ...headers, ...extraHeaders } };
  if (p.contentType !== undefined) options.contentType = p.contentType;
  if (p.contentEncoding !== undefined) options.contentEncoding = p.contentEncoding;
  if (p.messageId !== undefined) options.messageId = p.messageId;
  if (p.timestamp !== undefined) options.timestamp = p.timestamp;
  if (p.type !== undefined) options.type = p.type;
  if (p.appId !== undefined) options.appId = p.appId;
  if (p.correlationId !== undefined) options.correlationId = p.correlationId;
  if (p.replyTo !== undefined) options.replyTo = p.replyTo;
  if (p.priority !== undefined) options.priority = p.priority;
  return options;
}

function amqpCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'number' ? code : undefined;
}

export class Broker {
  readonly connection: ReconnectingConnection;
  readonly options: RabbitOptions;
  readonly registry: Registry;
  readonly #publisher: Publisher;
  /** Declarations and registry updates; a broker error closes it and the next use opens another. */
  readonly #admin: ChannelSlot;
  readonly #types = new Map<string, Promise<void>>();
  readonly #groups = new Set<string>();
  readonly #delays = new Map<number, number>();
  #exchangeDeclared: ChannelModel | undefined;

  constructor(connection: ReconnectingConnection, options: RabbitOptions) {
    this.connection = connection;
    this.options = options;
    this.#publisher = new Publisher(connection);
    this.#admin = new ChannelSlot(connection);
    this.registry = new Registry(() => this.adminChannel());
  }

  #deadline(): number {
    return Date.now() + this.options.publishTimeoutMs;
  }

  adminChannel(): Promise<ConfirmChannel> {
    return this.#admin.get(this.#deadline());
  }

  /** Runs `work` on a fresh channel that a broker error may close without disturbing anyone else. */
  async withScratchChannel<T>(work: (channel: Channel) => Promise<T>): Promise<T> {
    const model = await this.connection.model(this.#deadline());
    const channel = await model.createChannel();
    channel.on('error', noop);
    try {
      return await work(channel);
    } finally {
      channel.close().catch(noop);
    }
  }

  /** Passive declare: whether the queue exists (a 404 closes only the scratch channel). */
  async queueExists(queue: string): Promise<boolean> {
    try {
      return await this.withScratchChannel(async (channel) => {
        await channel.checkQueue(queue);
        return true;
      });
    } catch (error) {
      if (amqpCode(error) === 404) return false;
      throw error;
    }
  }

  /** Declares the exchange, the type's replay log and its binding, and registers the type. Cached per type. */
  ensureType(type: string): Promise<void> {
    let ready = this.#types.get(type);
    if (!ready) {
      ready = this.#declareType(type);
      this.#types.set(type, ready);
      ready.catch(() => this.#types.delete(type));
    }
    return ready;
  }

  /** Drops what this process believes about the type, so the next use declares it again. */
  forgetType(type: string): void {
    this.#types.delete(type);
    for (const key of this.#groups) if (key.startsWith(`${type}\0`)) this.#groups.delete(key);
  }

  /** Drops what this process believes about the group (its queue may be gone), so the next attach declares it. */
  forgetGroup(type: string, group: string): void {
    this.#groups.delete(`${type}\0${group}`);
  }

  async #declareType(type: string): Promise<void> {
    const channel = await this.adminChannel();
    await this.#declareExchange(channel);
    try {
      await channel.assertQueue(logQueue(type), {
        durable: true,
        arguments: { 'x-queue-type': 'stream', 'x-max-age': this.options.replayMaxAge },
      });
    } catch (error) {
      if (amqpCode(error) !== 406) throw error;
      throw new BusError(
        'BUSBAR_ERR_BROKER',
        `the replay log ${logQueue(type)} exists with other settings (${(error as Error).message}): use the replayMaxAge it was created with, or delete the type`,
        { cause: error, retryable: false },
      );
    }
    await channel.bindQueue(logQueue(type), EXCHANGE, type);
    await this.registry.update((document) => {
      const entry = document.types[type];
      if (entry && !entry.deleted) return false;
      document.types[type] = { at: Date.now(), groups: {} };
      return true;
    });
  }

  async #declareExchange(channel: ConfirmChannel): Promise<void> {
    const model = await this.connection.model(this.#deadline());
    if (this.#exchangeDeclared === model) return;
    await channel.assertExchange(EXCHANGE, 'topic', { durable: true });
    this.#exchangeDeclared = model;
  }

  /**
   * Makes sure the group's queue exists and is bound. A new `earliest` group is first filled from the type's
   * replay log, under a lock (an exclusive consumer on the group's init queue) so concurrent members seed once.
   */
  async prepareGroup(type: string, group: string, offset: Offset): Promise<void> {
    await this.ensureType(type);
    const key = `${type}\0${group}`;
    if (this.#groups.has(key)) return;
    const queue = groupQueue(type, group);
    if (Buffer.byteLength(initQueue(type, group)) > MAX_QUEUE_NAME_BYTES) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `type ${type} with group ${group} makes a RabbitMQ queue name over ${MAX_QUEUE_NAME_BYTES} bytes: keep type and group together under ${MAX_QUEUE_NAME_BYTES - 13} characters`,
      );
    }
    if (offset === 'latest') {
      await this.#declareGroupQueue(type, queue);
    } else {
      await this.#createSeeded(type, queue, initQueue(type, group));
    }
    await this.registry.update((document) => {
      const entry = document.types[type];
      if (entry && !entry.deleted && entry.groups[group] !== undefined) return false;
      const now = Date.now();
      document.types[type] = {
        at: entry?.deleted ? now : (entry?.at ?? now),
        groups: { ...(entry?.deleted ? {} : entry?.groups), [group]: now },
      };
      return true;
    });
    this.#groups.add(key);
  }

  async #declareGroupQueue(type: string, queue: string): Promise<void> {
    const channel = await this.adminChannel();
    await channel.assertQueue(queue, { durable: true, arguments: GROUP_QUEUE_ARGS });
    await channel.bindQueue(queue, EXCHANGE, type);
  }

  async #createSeeded(type: string, queue: string, init: string): Promise<void> {
    for (;;) {
      const [hasQueue, hasInit] = await Promise.all([this.queueExists(queue), this.queueExists(init)]);
      if (hasQueue && !hasInit) return;
      if (!hasInit) await (await this.adminChannel()).assertQueue(init, { durable: true });
      const lock = await this.#lock(init);
      if (lock === 'busy') {
        await sleep(LOCK_RETRY_MS);
        continue;
      }
      if (lock === 'gone') continue;
      try {
        // Holding the lock with the queue already there means an earlier seeding stopped half-way: seed again
        // (duplicates, never gaps).
        await this.#declareGroupQueue(type, queue);
        await this.#seed(type, queue);
        await (await this.adminChannel()).deleteQueue(init);
      } finally {
        lock.close().catch(noop);
      }
      return;
    }
  }

  async #lock(init: string): Promise<Channel | 'busy' | 'gone'> {
    const model = await this.connection.model(this.#deadline());
    const channel = await model.createChannel();
    channel.on('error', noop);
    try {
      await channel.consume(init, noop, { exclusive: true });
      return channel;
    } catch (error) {
      channel.close().catch(noop);
      const code = amqpCode(error);
      if (code === 403 || code === 405) return 'busy';
      if (code === 404) return 'gone';
      throw error;
    }
  }

  /** Copies the replay log, up to a marker appended now, into the group queue (already bound, so nothing falls between). */
  async #seed(type: string, queue: string): Promise<void> {
    const model = await this.connection.model(this.#deadline());
    const writer = await model.createConfirmChannel();
    const reader = await model.createChannel();
    writer.on('error', noop);
    reader.on('error', noop);
    try {
      const marker = randomUUID();
      await new Promise<void>((resolve, reject) =>
        writer.sendToQueue(
          logQueue(type),
          Buffer.alloc(0),
          { persistent: true, headers: { [SEED_MARKER_HEADER]: marker } },
          (error) => (error ? reject(error) : resolve()),
        ),
      );
      await reader.prefetch(SEED_PREFETCH);
      // While the writer's buffer is full, hold the stream acks: the broker then stops sending (flow control).
      const held: Message[] = [];
      let blocked = false;
      writer.on('drain', () => {
        blocked = false;
        for (const message of held.splice(0)) reader.ack(message);
      });
      await new Promise<void>((resolve, reject) => {
        reader.once('close', () =>
          reject(new BusError('BUSBAR_ERR_CONNECTION', `the connection closed while seeding ${queue}; retry`)),
        );
        const onMessage = (message: Message | null) => {
          if (!message) {
            reject(
              new BusError('BUSBAR_ERR_BROKER', `the replay log of ${type} went away while seeding ${queue}; retry`),
            );
            return;
          }
          const seen = message.properties.headers?.[SEED_MARKER_HEADER];
          if (seen === undefined && !writer.sendToQueue(queue, message.content, republishOptions(message)))
            blocked = true;
          if (blocked) held.push(message);
          else reader.ack(message);
          if (seen === marker) resolve();
        };
        reader.consume(logQueue(type), onMessage, { arguments: { 'x-stream-offset': 'first' } }).catch(reject);
      });
      await writer.waitForConfirms();
    } finally {
      reader.close().catch(noop);
      writer.close().catch(noop);
    }
  }

  /** Publishes a batch to the exchange; resolves when RabbitMQ confirmed every message as routed and stored. */
  async publish(type: string, batch: readonly TransportMessage[]): Promise<void> {
    const deadline = this.#deadline();
    const outgoing = batch.map((message): Outgoing => {
      if (message.type !== type) {
        throw new BusError(
          'BUSBAR_ERR_INVALID_ARGUMENT',
          `a message of type ${message.type} was in a batch for ${type}: send each type in its own batch`,
        );
      }
      return {
        exchange: EXCHANGE,
        routingKey: type,
        content: toBuffer(message.body),
        options: publishOptions(message),
      };
    });
    await this.ensureType(type);
    let unroutable = await this.#publisher.send(outgoing, deadline, this.options.publishTimeoutMs);
    if (unroutable.length > 0) {
      // The type was deleted meanwhile (by another client): declare it again and send those once more.
      this.forgetType(type);
      await this.ensureType(type);
      unroutable = await this.#publisher.send(unroutable, deadline, this.options.publishTimeoutMs);
      if (unroutable.length > 0) {
        throw new BusError(
          'BUSBAR_ERR_PUBLISH',
          `RabbitMQ could not route ${unroutable.length} message(s) of type ${type}; retry`,
        );
      }
    }
  }

  /** Re-publishes a delivery through the delay bucket for `delayMs`; it dead-letters back into `queue`. */
  async publishDelayed(queue: string, message: Message, attemptsSoFar: number, delayMs: number): Promise<void> {
    const bucket = delayBucket(delayMs);
    const name = delayName(bucket);
    const declaredAt = this.#delays.get(bucket) ?? 0;
    if (Date.now() - declaredAt > DELAY_REDECLARE_MS) {
      const channel = await this.adminChannel();
      await channel.assertExchange(name, 'fanout', { durable: true, autoDelete: true });
      await channel.assertQueue(name, {
        durable: true,
        arguments: {
          'x-queue-type': 'quorum',
          'x-message-ttl': bucket,
          'x-dead-letter-exchange': '',
          'x-dead-letter-strategy': 'at-least-once',
          'x-overflow': 'reject-publish',
          'x-expires': 2 * bucket + 60_000,
        },
      });
      await channel.bindQueue(name, name, '');
      this.#delays.set(bucket, Date.now());
    }
    const options = { ...republishOptions(message, { [ATTEMPTS_HEADER]: attemptsSoFar }), mandatory: false };
    await this.#publisher.send(
      [{ exchange: name, routingKey: queue, content: message.content, options }],
      this.#deadline(),
      this.options.publishTimeoutMs,
    );
  }

  async close(): Promise<void> {
    await Promise.all([this.#publisher.close(), this.#admin.close()]);
  }
}
