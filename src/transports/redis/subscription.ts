/**
 * One consumer of a group on one or more streams. A loop on its own connection claims what is due (nacked,
 * released or timed-out entries, via the CLAIM script) and otherwise blocks in XREADGROUP for new entries, never
 * holding more than `prefetch` unsettled deliveries. Local events (a nack, a close, a freed slot) cut a block short
 * with CLIENT UNBLOCK from the shared connection.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConsumeOptions, Delivery, NackOptions, Subscription } from '../../transport/contract.ts';
import { type Deferred, deferred } from '../../transport/deferred.ts';
import { DeliveryQueue } from '../../transport/queue.ts';
import { isAuthError, isNoGroup, type RedisConnection, redisError } from './connection.ts';
import { RedisDelivery } from './delivery.ts';
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

/** Most entries one RELEASE script call returns to the group (one script call blocks Redis while it runs). */
const RELEASE_CHUNK = 500;

/** Acks of one stream sent together as one XACK. */
interface AckBatch {
  readonly deliveries: RedisDelivery[];
  readonly done: Deferred;
}

export class RedisSubscription implements Subscription {
  readonly ready: Promise<void>;
  readonly options: ConsumeOptions;
  readonly #host: SubscriptionHost;
  readonly #queue = new DeliveryQueue({ onEmpty: () => this.#capacityFreed(), onLeave: () => this.close() });
  readonly #consumer: string;
  readonly #streams: string[];
  readonly #indexOfStream = new Map<string, number>();
  readonly #unsettled = new Set<RedisDelivery>();
  readonly #claimIntervalMs: number;
  /** Free slots that make a refill worth a read while deliveries are still queued. */
  readonly #refillAt: number;
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Acks waiting to be sent (see ack()), per stream. */
  readonly #acks = new Map<string, AckBatch>();
  #acksScheduled = false;
  /** Entries that arrived after close() began: close() releases them with the ones still held. */
  readonly #late: RedisDelivery[] = [];
  #reader: RedisConnection | undefined;
  #readerId: string | undefined;
  #unblockSupported = true;
  #blocking = false;
  #wakeRequested = false;
  #nextClaimAt = 0;
  #nextPruneAt = Date.now() + PRUNE_INTERVAL_MS * Math.random();
  /** Ends the loop's wait for capacity (set while it waits). */
  #notify: (() => void) | undefined;
  /** A notify is due at the end of this event-loop turn (so one turn's acks free their slots together). */
  #notifyScheduled = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  #loop: Promise<void> | undefined;

  constructor(host: SubscriptionHost, options: ConsumeOptions) {
    this.#host = host;
    this.options = options;
    this.#consumer = `${options.consumerId}~${randomUUID().slice(0, 8)}`;
    this.#streams = options.types.map((type) => host.keys.stream(type));
    for (const [i, stream] of this.#streams.entries()) this.#indexOfStream.set(stream, i);
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
      // The reader's id (for CLIENT UNBLOCK) comes in while the group is attached, not before the first read.
      await Promise.all([this.#attach(), this.#identifyReader()]);
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
      if (delivery.leaseUntil > now) live++;
      else this.#unsettled.delete(delivery);
    }
    return live;
  }

  /**
   * Waits until a read is worth making (see #capacityFreed), a wake, or the earliest lease deadline (when a timed-out
   * delivery frees its slot).
   */
  #waitForCapacity(): Promise<void> {
    let earliest = Number.POSITIVE_INFINITY;
    for (const delivery of this.#unsettled) earliest = Math.min(earliest, delivery.leaseUntil);
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.#notify === done) this.#notify = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(1, Math.min(earliest - Date.now(), MAX_BLOCK_MS)));
      this.#notify = done;
    });
  }

  /**
   * A settle or the application emptying the queue freed capacity: once that makes a read worthwhile (the loop's
   * own test, on the set's size, which only overcounts the live deliveries), the waiting loop resumes at the end of
   * this event-loop turn, after every ack the application makes in the turn, so it reads for all the freed slots
   * at once. Per message this is a comparison, not a timer or a promise.
   */
  #capacityFreed(): void {
    if (this.#notify === undefined || this.#notifyScheduled) return;
    const free = this.options.prefetch - this.#unsettled.size;
    if (free <= 0 || (this.#queue.length > 0 && free < this.#refillAt)) return;
    this.#notifyScheduled = true;
    setImmediate(() => {
      this.#notifyScheduled = false;
      this.#notify?.();
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
      const deadline = Date.now() + this.options.ackTimeoutMs;
      for (const [id, fields, count] of claimed) this.#accept(type, stream, id.toString(), fields, count, deadline);
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

  /** Learns the reader's client id (again after a reconnect), so wake() can cut its blocked reads short. */
  async #identifyReader(): Promise<void> {
    try {
      this.#readerId = String(await this.#reader!.send<number>(['CLIENT', 'ID']));
    } catch (error) {
      // An ACL user without CLIENT: reads then end at their block timeout instead of being cut short.
      if (!isAuthError(error)) throw error;
      this.#unblockSupported = false;
    }
  }

  async #read(count: number): Promise<void> {
    const reader = this.#reader!;
    const perStream = Math.max(1, Math.floor(count / this.#streams.length));
    const args = ['XREADGROUP', 'GROUP', this.group, this.#consumer, 'COUNT', String(perStream)];
    const blockMs = Math.max(1, Math.min(MAX_BLOCK_MS, this.#nextClaimAt - Date.now()));
    const block = !this.#wakeRequested;
    if (block) {
      if (this.#unblockSupported && this.#readerId === undefined) await this.#identifyReader();
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
    if (reply === null) return;
    const deadline = Date.now() + this.options.ackTimeoutMs;
    for (const [key, entries] of reply) {
      const i = this.#indexOfStream.get(key.toString())!;
      const stream = this.#streams[i]!;
      const type = this.types[i]!;
      for (let e = 0; e < entries.length; e++) {
        const [id, fields] = entries[e]!;
        if (fields) this.#accept(type, stream, id.toString(), fields, 1, deadline);
      }
    }
  }

  #accept(type: string, stream: string, entryId: string, fields: Buffer[], attempt: number, deadline: number): void {
    const message = decodeEntry(type, entryId, fields);
    const delivery = new RedisDelivery(this, type, stream, entryId, message, attempt, deadline);
    if (this.#closed) {
      this.#late.push(delivery);
      return;
    }
    this.#unsettled.add(delivery);
    this.#queue.push(delivery);
  }

  /**
   * Acks made by one callback and the promise reactions it sets off (a read's deliveries handled at once) go out as
   * one XACK per stream (each still resolves only once Redis recorded it): far fewer commands for Redis and the
   * client than one XACK per message.
   */
  ack(delivery: RedisDelivery): Promise<void> {
    this.#settled(delivery);
    let batch = this.#acks.get(delivery.stream);
    if (!batch) {
      batch = { deliveries: [], done: deferred() };
      this.#acks.set(delivery.stream, batch);
      if (!this.#acksScheduled) {
        this.#acksScheduled = true;
        // Once this callback and the promise reactions it set off are done, not a loop turn later: node-redis
        // writes on the next turn anyway, so an awaited ack waited for two turns.
        process.nextTick(() => this.#flushAcks());
      }
    }
    batch.deliveries.push(delivery);
    return batch.done.promise;
  }

  /** Sends every waiting ack; returns when Redis answered them all (whether or not it recorded them). */
  #flushAcks(): Promise<unknown> {
    this.#acksScheduled = false;
    const sent: Promise<void>[] = [];
    for (const [stream, batch] of this.#acks) {
      const { deliveries, done } = batch;
      const command = ['XACK', stream, this.group];
      for (const delivery of deliveries) command.push(delivery.entryId);
      this.#host.connection.send(command).then(
        () => done.resolve(),
        (error) => {
          // Each of these acks may be tried again; a rejection nobody awaits is no unhandled rejection.
          for (const delivery of deliveries) delivery.failed(done.promise);
          done.promise.catch(() => undefined);
          const type = deliveries[0]!.type;
          done.reject(redisError(error, 'BUSBAR_ERR_ACK', `acking ${deliveries.length} message(s) of '${type}'`));
        },
      );
      sent.push(done.promise);
    }
    this.#acks.clear();
    return Promise.allSettled(sent);
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
    return this.#releaseAll([delivery], delayMs);
  }

  /** release() for many deliveries: one script call per stream (per RELEASE_CHUNK entries), not one per entry. */
  #releaseAll(deliveries: readonly RedisDelivery[], delayMs: number): Promise<unknown> {
    const calls: Promise<unknown>[] = [];
    for (const [i, stream] of this.#streams.entries()) {
      const mine = deliveries.filter((delivery) => delivery.stream === stream);
      for (let at = 0; at < mine.length; at += RELEASE_CHUNK) {
        const args = [this.group, this.#consumer, String(delayMs)];
        for (const delivery of mine.slice(at, at + RELEASE_CHUNK))
          args.push(delivery.entryId, String(delivery.attempt));
        const keys = [stream, this.#host.keys.delayed(this.types[i]!, this.group)];
        calls.push(this.#host.connection.run(RELEASE, keys, args));
      }
    }
    return calls.length === 1 ? calls[0]! : Promise.all(calls);
  }

  #settled(delivery: RedisDelivery): void {
    if (this.#unsettled.delete(delivery)) this.#capacityFreed();
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
      // An unref'd timer: a closed subscription must not hold the process open for it.
      const stopped = await Promise.race([
        this.#loop.then(() => true),
        sleep(MAX_BLOCK_MS + 500, false, { ref: false }),
      ]);
      if (!stopped) this.#reader?.destroy();
      await this.#loop;
    }
    // Everything this consumer still holds goes back to the group now, not after the ack timeout.
    const held = [...this.#unsettled, ...this.#late];
    this.#unsettled.clear();
    this.#late.length = 0;
    const { connection } = this.#host;
    // One connection runs its commands in order, so the consumer is forgotten after these acks and releases
    // without waiting for their replies first (a release leaves the entries pending: it never changes the outcome).
    await Promise.allSettled([
      this.#flushAcks(),
      held.length ? this.#releaseAll(held, 0) : undefined,
      ...this.#streams.map((stream) => connection.run(FORGET_CONSUMER, [stream], [this.group, this.#consumer])),
      this.#reader?.close(),
    ]);
    this.#host.forget(this);
    if (held.length) for (const type of this.types) this.#host.wakeGroup(type, this.group, this);
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return this.#queue[Symbol.asyncIterator]();
  }
}
