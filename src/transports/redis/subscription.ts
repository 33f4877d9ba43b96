/**
 * One consumer of a group on one or more streams. A loop on its own connection claims what is due (nacked,
 * released or timed-out entries, via the CLAIM script) and otherwise blocks in XREADGROUP for new entries, never
 * holding more than `prefetch` unsettled deliveries. Local events (a nack, a close, a freed slot) cut a block short
 * with CLIENT UNBLOCK from the shared connection.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConsumeOptions, Delivery, NackOptions, Subscription } from '../../transport/contract.ts';
import { isAuthError, isNoGroup, type RedisConnection, redisError } from './connection.ts';
import { type Deferred, deferred, RedisDelivery } from './delivery.ts';
import { Inbox } from './inbox.ts';
import { CLAIM, FORGET_CONSUMER, PRUNE_CONSUMERS, RELEASE } from './scripts.ts';
import { decodeEntry, type Keys } from './wire.ts';

/** Longest a read blocks before the loop looks for due redeliveries again. */
const MAX_BLOCK_MS = 1000;
const MIN_CLAIM_INTERVAL_MS = 50;
const MAX_BACKOFF_MS = 1000;
/** How often a subscription removes its group's abandoned consumer names, and how idle those must be. */
const PRUNE_INTERVAL_MS = 60_000;
const ABANDONED_AFTER_MS = 3_600_000;

/** What a subscription needs from its transport. */
export interface SubscriptionHost {
  readonly connection: RedisConnection;
  readonly keys: Keys;
  ensureType(type: string): Promise<void>;
  /** Wakes the transport's other subscriptions of this group on this type (something became due). */
  wakeGroup(type: string, group: string, except: RedisSubscription): void;
  forget(subscription: RedisSubscription): void;
}

type ClaimedEntry = [Buffer, Buffer[], number];
type ReadReply = [Buffer, [Buffer, Buffer[] | null][]][] | null;

export class RedisSubscription implements Subscription {
  readonly ready: Promise<void>;
  readonly options: ConsumeOptions;
  readonly #host: SubscriptionHost;
  readonly #queue = new Inbox(() => this.#notify?.());
  readonly #consumer: string;
  readonly #streams: string[];
  readonly #typeOfStream = new Map<string, string>();
  readonly #unsettled = new Set<RedisDelivery>();
  readonly #claimIntervalMs: number;
  /** Free slots that make a refill worth a read while deliveries are still queued. */
  readonly #refillAt: number;
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Acks waiting for the end of this event-loop turn, per stream. */
  readonly #acks = new Map<string, { ids: string[]; done: Deferred }>();
  /** Releases of entries that arrived after close() began; close() waits for them. */
  readonly #lateReleases: Promise<unknown>[] = [];
  #reader: RedisConnection | undefined;
  #readerId: string | undefined;
  #unblockSupported = true;
  #blocking = false;
  #wakeRequested = false;
  #nextClaimAt = 0;
  #nextPruneAt = Date.now() + PRUNE_INTERVAL_MS * Math.random();
  #notify: (() => void) | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #loop: Promise<void> | undefined;

  constructor(host: SubscriptionHost, options: ConsumeOptions) {
    this.#host = host;
    this.options = options;
    this.#consumer = `${options.consumerId}~${randomUUID().slice(0, 8)}`;
    this.#streams = options.types.map((type) => host.keys.stream(type));
    for (const [i, type] of options.types.entries()) this.#typeOfStream.set(this.#streams[i]!, type);
    this.#refillAt = Math.max(1, Math.floor(options.prefetch / 2));
    this.#claimIntervalMs = Math.max(MIN_CLAIM_INTERVAL_MS, Math.min(MAX_BLOCK_MS, options.ackTimeoutMs / 4));
    this.ready = this.#start();
    this.ready.catch((error) => this.#queue.end(error));
    options.signal?.addEventListener('abort', () => void this.close(), { once: true });
  }

  get group(): string {
    return this.options.group;
  }

  get types(): readonly string[] {
    return this.options.types;
  }

  async #start(): Promise<void> {
    try {
      this.#reader = await this.#host.connection.duplicate();
      await this.#attach();
    } catch (error) {
      this.#reader?.destroy();
      throw redisError(
        error,
        'BUSBAR_ERR_CONNECTION',
        `attaching consumer '${this.options.consumerId}' to group '${this.group}'`,
      );
    }
    if (this.#closed) return;
    this.#loop = this.#run();
  }

  /** Registers the types and creates the group on each stream, at its start offset, unless it exists. */
  async #attach(): Promise<void> {
    const { connection } = this.#host;
    const start = this.options.offset === 'earliest' ? '0' : '$';
    await Promise.all(
      this.types.map(async (type, i) => {
        await this.#host.ensureType(type);
        try {
          await connection.send(['XGROUP', 'CREATE', this.#streams[i]!, this.group, start, 'MKSTREAM']);
        } catch (error) {
          if (!(error instanceof Error && error.message.startsWith('BUSYGROUP'))) throw error;
        }
      }),
    );
  }

  async #run(): Promise<void> {
    let backoff = 0;
    while (!this.#closed) {
      try {
        const free = this.options.prefetch - this.#liveCount();
        // Refill in batches while the application still has deliveries queued; at once when it is waiting.
        if (free <= 0 || (this.#queue.length > 0 && free < this.#refillAt)) {
          await this.#waitForCapacity();
          continue;
        }
        let got = 0;
        if (this.#wakeRequested || Date.now() >= this.#nextClaimAt) {
          this.#wakeRequested = false;
          this.#nextClaimAt = Date.now() + this.#claimIntervalMs;
          got = await this.#claim(free);
          if (Date.now() >= this.#nextPruneAt) await this.#prune();
        }
        if (got < free && !this.#closed) await this.#read(free - got);
        backoff = 0;
      } catch (error) {
        if (this.#closed) break;
        this.#readerId = undefined;
        if (isNoGroup(error)) {
          // The stream or group vanished (type deleted, or a restart of a Redis that keeps nothing): re-create.
          await this.#attach().catch(() => undefined);
          continue;
        }
        const failure = redisError(error, 'BUSBAR_ERR_CONNECTION', `consumer '${this.options.consumerId}' reading`);
        if (!failure.retryable) {
          this.#queue.end(failure);
          break;
        }
        backoff = Math.min(MAX_BACKOFF_MS, backoff ? backoff * 2 : 50);
        await sleep(backoff);
      }
    }
  }

  /** Deliveries handed out (or queued) and neither settled nor past their ack timeout. */
  #liveCount(): number {
    const now = Date.now();
    let live = 0;
    for (const delivery of this.#unsettled) {
      if (delivery.deadline > now) live++;
      else this.#unsettled.delete(delivery);
    }
    return live;
  }

  #waitForCapacity(): Promise<void> {
    let earliest = Number.POSITIVE_INFINITY;
    for (const delivery of this.#unsettled) earliest = Math.min(earliest, delivery.deadline);
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, Math.max(1, Math.min(earliest - Date.now(), MAX_BLOCK_MS)));
      this.#notify = () => {
        clearTimeout(timer);
        resolve();
      };
    }).finally(() => {
      this.#notify = undefined;
    });
  }

  async #claim(free: number): Promise<number> {
    let got = 0;
    for (let i = 0; i < this.#streams.length && got < free; i++) {
      const stream = this.#streams[i]!;
      const type = this.types[i]!;
      const claimed = await this.#reader!.run<ClaimedEntry[]>(
        CLAIM,
        [stream, this.#host.keys.delayed(type, this.group)],
        [this.group, this.#consumer, String(this.options.ackTimeoutMs), String(free - got)],
        true,
      );
      for (const [id, fields, count] of claimed) this.#accept(type, id.toString(), fields, count);
      got += claimed.length;
    }
    return got;
  }

  async #prune(): Promise<void> {
    this.#nextPruneAt = Date.now() + PRUNE_INTERVAL_MS;
    for (const stream of this.#streams) {
      await this.#reader!.run(PRUNE_CONSUMERS, [stream], [this.group, String(ABANDONED_AFTER_MS)]);
    }
  }

  async #read(count: number): Promise<void> {
    const reader = this.#reader!;
    const perStream = Math.max(1, Math.floor(count / this.#streams.length));
    const args = ['XREADGROUP', 'GROUP', this.group, this.#consumer, 'COUNT', String(perStream)];
    const blockMs = Math.max(1, Math.min(MAX_BLOCK_MS, this.#nextClaimAt - Date.now()));
    const block = !this.#wakeRequested;
    if (block) {
      if (this.#unblockSupported && this.#readerId === undefined) {
        try {
          this.#readerId = String(await reader.send<number>(['CLIENT', 'ID']));
        } catch (error) {
          // An ACL user without CLIENT: reads then end at their block timeout instead of being cut short.
          if (!isAuthError(error)) throw error;
          this.#unblockSupported = false;
        }
      }
      args.push('BLOCK', String(blockMs));
    }
    args.push('STREAMS', ...this.#streams, ...this.#streams.map(() => '>'));
    this.#blocking = block;
    let reply: ReadReply;
    try {
      reply = await reader.sendBinary<ReadReply>(args, { timeout: blockMs + 10_000 });
    } finally {
      this.#blocking = false;
    }
    for (const [key, entries] of reply ?? []) {
      const type = this.#typeOfStream.get(key.toString())!;
      for (const [id, fields] of entries) {
        if (fields) this.#accept(type, id.toString(), fields, 1);
      }
    }
  }

  #accept(type: string, entryId: string, fields: Buffer[], attempt: number): void {
    const delivery = new RedisDelivery(
      this,
      type,
      entryId,
      decodeEntry(type, entryId, fields),
      attempt,
      this.options.ackTimeoutMs,
    );
    if (this.#closed) {
      this.#lateReleases.push(this.release(delivery, 0));
      return;
    }
    this.#unsettled.add(delivery);
    this.#queue.push(delivery);
  }

  /**
   * Acks made in the same turn of the event loop go out as one XACK per stream (each still resolves only once
   * Redis recorded it): far fewer commands for Redis and the client than one XACK per message.
   */
  ack(delivery: RedisDelivery): Promise<void> {
    this.#settled(delivery);
    const stream = this.#host.keys.stream(delivery.type);
    let batch = this.#acks.get(stream);
    if (!batch) {
      batch = { ids: [], done: deferred() };
      this.#acks.set(stream, batch);
      setImmediate(() => this.#flushAcks(stream));
    }
    batch.ids.push(delivery.entryId);
    return batch.done.promise;
  }

  #flushAcks(stream: string): Promise<void> | undefined {
    const batch = this.#acks.get(stream);
    if (!batch) return undefined;
    this.#acks.delete(stream);
    this.#host.connection.send(['XACK', stream, this.group, ...batch.ids]).then(
      () => batch.done.resolve(),
      (error) => {
        const type = this.#typeOfStream.get(stream);
        batch.done.reject(redisError(error, 'BUSBAR_ERR_ACK', `acking ${batch.ids.length} message(s) of '${type}'`));
      },
    );
    return batch.done.promise;
  }

  async nack(delivery: RedisDelivery, options: NackOptions = {}): Promise<void> {
    const delayMs = Math.max(0, Math.round(options.delayMs ?? 0));
    this.#settled(delivery);
    try {
      await this.release(delivery, delayMs);
    } catch (error) {
      throw redisError(error, 'BUSBAR_ERR_ACK', `nacking message ${delivery.message.id} of '${delivery.type}'`);
    }
    if (delayMs === 0) {
      this.wake();
      this.#host.wakeGroup(delivery.type, this.group, this);
    } else if (!this.#closed) {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        this.wake();
      }, delayMs);
      this.#timers.add(timer);
    }
  }

  /** Makes the entry redeliverable to the group after delayMs, if this consumer still holds that lease. */
  release(delivery: RedisDelivery, delayMs: number): Promise<unknown> {
    return this.#host.connection.run(
      RELEASE,
      [this.#host.keys.stream(delivery.type), this.#host.keys.delayed(delivery.type, this.group)],
      [this.group, this.#consumer, delivery.entryId, String(delivery.attempt), String(delayMs)],
    );
  }

  #settled(delivery: RedisDelivery): void {
    if (this.#unsettled.delete(delivery)) this.#notify?.();
  }

  /** Cuts a blocked read short so the loop claims what just became due. */
  wake(): void {
    this.#wakeRequested = true;
    this.#notify?.();
    if (this.#blocking) void this.#unblock(3);
  }

  async #unblock(tries: number): Promise<void> {
    const id = this.#readerId;
    if (!this.#unblockSupported || id === undefined) return;
    try {
      const unblocked = await this.#host.connection.send<number>(['CLIENT', 'UNBLOCK', id]);
      // 0: the read was sent but has not reached the server yet; try again shortly.
      if (unblocked === 0 && this.#blocking && tries > 1) {
        await sleep(2);
        await this.#unblock(tries - 1);
      }
    } catch {
      // Without the right to CLIENT UNBLOCK (an ACL user), reads simply end at their block timeout.
      this.#unblockSupported = false;
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#queue.end();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.wake();
    await this.ready.catch(() => undefined);
    if (this.#loop) {
      const stopped = await Promise.race([this.#loop.then(() => true), sleep(MAX_BLOCK_MS + 500).then(() => false)]);
      if (!stopped) this.#reader?.destroy();
      await this.#loop;
    }
    // Everything this consumer still holds goes back to the group now, not after the ack timeout.
    const held = [...this.#unsettled];
    this.#unsettled.clear();
    const { connection } = this.#host;
    const acks = [...this.#acks.keys()].map((stream) => this.#flushAcks(stream));
    await Promise.allSettled([...acks, ...this.#lateReleases, ...held.map((delivery) => this.release(delivery, 0))]);
    await Promise.allSettled(
      this.#streams.map((stream) => connection.run(FORGET_CONSUMER, [stream], [this.group, this.#consumer])),
    );
    await this.#reader?.close();
    this.#host.forget(this);
    if (held.length) for (const type of this.types) this.#host.wakeGroup(type, this.group, this);
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return this.#queue[Symbol.asyncIterator]();
  }
}
