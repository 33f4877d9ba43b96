/**
 * One member of a Kafka consumer group, with per-message acks emulated on top of offsets:
 * - a partition's offset is committed only past the contiguous run of acked messages (PartitionProgress);
 * - at most `prefetch` deliveries are outstanding; the fetch stream pauses while enough are buffered;
 * - a delivery neither acked nor nacked within `ackTimeoutMs` is handed out again (attempt + 1);
 * - nack without delay hands the message out again at once; nack with a delay re-publishes it to the type's retry
 *   topic with a not-before time, the group and the next attempt, then commits past the original, so the
 *   partition keeps flowing for every other key;
 * - on a rebalance, deliveries of partitions this member lost are dropped (their acks become no-ops): the new owner
 *   reads them again from the committed offset. Closing leaves the group, which hands every unacked message back
 *   (see #returnUnacked).
 */
import { Consumer, type Message, type MessagesStream } from '@platformatic/kafka';
import { BusError } from '../../errors.ts';
import type {
  ConsumeOptions,
  Delivery,
  NackOptions,
  Subscription,
  TransportMessage,
} from '../../transport/contract.ts';
import { DeliveryQueue } from '../../transport/queue.ts';
import { subscriptionAwareAssigner } from './assigner.ts';
import { OffsetCommits } from './commits.ts';
import { kafkaError } from './errors.ts';
import { grownPartitions, type PartitionCounts, partitionCounts, startNewPartitionsAtEarliest } from './growth.ts';
import type { KafkaSettings } from './options.ts';
import { PartitionProgress } from './progress.ts';
import { commitStartPositions, startPositions } from './start.ts';
import { fromRecord, isRetryTopic, type KafkaRecord, RETRY_HEADERS, retryTopicOf, toRecord } from './wire.ts';

/** How a subscription reaches the rest of the transport. */
export interface SubscriptionHost {
  readonly settings: KafkaSettings;
  /** Creates the types (and their retry topics) if needed. */
  ensureTypes(types: readonly string[]): Promise<void>;
  /** Durably publishes records (acks=all); used for delayed redeliveries. */
  produce(records: KafkaRecord[]): Promise<void>;
  closed(subscription: KafkaSubscription): void;
}

type EntryState = 'held' | 'ready' | 'out' | 'retrying' | 'done';

interface Entry {
  readonly key: string;
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  readonly progress: PartitionProgress;
  readonly message: TransportMessage;
  attempt: number;
  state: EntryState;
  /** Increments on every hand-out, so a late ack timer of an earlier hand-out does nothing. */
  lease: number;
  /** The delay timer of a held entry. */
  timer: NodeJS.Timeout | undefined;
}

/** A hand-out's ack deadline. The ack timeout is the same for every hand-out, so deadlines come in hand-out order. */
interface Deadline {
  readonly entry: Entry;
  readonly lease: number;
  readonly at: number;
}

/** True while the hand-out a deadline watches is still out (not settled, not handed out again). */
function isPending({ entry, lease }: Deadline): boolean {
  return entry.state === 'out' && entry.lease === lease;
}

const RESTART_DELAY_MS = 1000;
/** The client's metadataMaxAge (its default, set explicitly because growth.ts relies on it). */
const METADATA_MAX_AGE_MS = 5000;
/** Records fetched but not handed out before the fetch stream pauses. */
const MIN_BUFFER = 256;
const SETTLED = Promise.resolve();

/** Leaves the group and closes the client; failures only mean the broker already forgot this member. */
function closeQuietly(consumer: Consumer<Buffer, Buffer, Buffer, Buffer>): Promise<void> {
  return new Promise((resolve) => consumer.close(true, () => resolve()));
}

export class KafkaSubscription implements Subscription {
  readonly ready: Promise<void>;
  readonly #host: SubscriptionHost;
  readonly #options: ConsumeOptions;
  readonly #queue = new DeliveryQueue({ onLeave: () => this.close() });
  readonly #topics: string[];
  readonly #bufferLimit: number;
  readonly #live = new Set<Entry>();
  readonly #readyEntries: Entry[] = [];
  readonly #progress = new Map<string, PartitionProgress>();
  #assigned = new Set<string>();
  #outstanding = 0;
  #consumer: Consumer<Buffer, Buffer, Buffer, Buffer> | undefined;
  #stream: MessagesStream<Buffer, Buffer, Buffer, Buffer> | undefined;
  #paused = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  readonly #commits: OffsetCommits;
  readonly #retrying = new Set<Promise<void>>();
  /** Ack deadlines in hand-out order, watched by one timer instead of one timer per message. */
  #deadlines: Deadline[] = [];
  #deadlineHead = 0;
  #deadlineTimer: NodeJS.Timeout | undefined;
  readonly #onAbort = () => void this.close();
  /** Set while this member leads its group: it then watches the subscribed topics for new partitions. */
  #leading = false;
  /** Partition counts the group's current assignment was made from (known to the leader only). */
  #counts: PartitionCounts | undefined;
  #growthTimer: NodeJS.Timeout | undefined;
  #checking = false;

  constructor(host: SubscriptionHost, options: ConsumeOptions) {
    this.#host = host;
    this.#options = options;
    this.#commits = new OffsetCommits(
      (offsets) => this.#consumer?.commit({ offsets }) ?? Promise.reject(new Error('the consumer is reconnecting')),
      options.group,
    );
    this.#topics = [...new Set(options.types)].flatMap((type) => [type, retryTopicOf(type)]);
    this.#bufferLimit = Math.max(MIN_BUFFER, options.prefetch * 4);
    this.ready = this.#start();
    this.ready.catch((error: unknown) => this.#queue.end(error));
    if (options.signal?.aborted) void this.close();
    else options.signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  get group(): string {
    return this.#options.group;
  }

  get types(): readonly string[] {
    return this.#options.types;
  }

  /** Deliveries handed out and not yet acked, nacked or returned. */
  get inflight(): number {
    return this.#outstanding;
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return this.#queue[Symbol.asyncIterator]();
  }

  async #start(): Promise<void> {
    await this.#host.ensureTypes(this.#options.types);
    await this.#connect();
  }

  /** Joins the group and starts fetching; resolves once the start positions of the assigned partitions are fixed. */
  async #connect(): Promise<void> {
    if (this.#closed) return;
    const { settings } = this.#host;
    const consumer = new Consumer<Buffer, Buffer, Buffer, Buffer>({
      clientId: `${settings.clientId}-${this.#options.consumerId}`,
      bootstrapBrokers: [...settings.bootstrapBrokers],
      connectTimeout: settings.connectTimeoutMs,
      groupId: this.#options.group,
      sessionTimeout: settings.sessionTimeoutMs,
      rebalanceTimeout: settings.sessionTimeoutMs,
      heartbeatInterval: settings.heartbeatIntervalMs,
      maxWaitTime: 500,
      metadataMaxAge: METADATA_MAX_AGE_MS,
      maxBytes: settings.fetchMaxBytes,
      partitionAssigner: subscriptionAwareAssigner,
      autocommit: false,
      ...(settings.tls ? { tls: settings.tls } : {}),
      ...(settings.sasl ? { sasl: settings.sasl } : {}),
    });
    this.#consumer = consumer;
    consumer.on('error', (error: Error) => this.#restart(consumer, error));
    // A replaced member's client may still finish a rejoin or a fetch it started (its close does not close its
    // stream when it had already lost its member id): only the current member's events touch this subscription.
    consumer.on('consumer:group:join', ({ assignments, isLeader }) => {
      if (this.#consumer !== consumer) return;
      this.#assign(assignments ?? []);
      this.#lead(consumer, isLeader === true);
    });
    let stream: MessagesStream<Buffer, Buffer, Buffer, Buffer>;
    try {
      stream = await consumer.consume({
        topics: this.#topics,
        mode: 'committed',
        fallbackMode: this.#options.offset,
        autocommit: false,
      });
    } catch (error) {
      await closeQuietly(consumer);
      throw kafkaError(error, 'BUSBAR_ERR_CONNECTION', `could not join consumer group '${this.#options.group}'`);
    }
    if (this.#closed) {
      // Closed while joining: the stream may still be starting (it looks its offsets up on the next tick) and fails
      // once the client is closed under it; without a listener that 'error' would be an uncaught exception.
      stream.on('error', () => {});
      await closeQuietly(consumer);
      return;
    }
    this.#stream = stream;
    let first = true;
    const fixed = new Promise<void>((resolve) => {
      stream.on('offsets', () => {
        const done = commitStartPositions(consumer, startPositions(consumer, stream));
        if (first) void done.finally(resolve);
        first = false;
      });
      stream.once('close', resolve);
    });
    stream.on('data', (record: Message<Buffer, Buffer, Buffer, Buffer>) => {
      // Records of a replaced stream sit past the committed offset the new member starts from: taking them would
      // mark that gap as already seen, and the acks that follow would commit past messages nobody received.
      if (this.#stream === stream) this.#take(record);
    });
    stream.on('error', (error: Error) => this.#restart(consumer, error));
    stream.on('close', () => this.#restart(consumer));
    await fixed;
  }

  #assign(assignments: readonly { topic: string; partitions: number[] }[]): void {
    const next = new Set<string>();
    for (const { topic, partitions } of assignments) for (const p of partitions) next.add(`${topic}:${p}`);
    for (const key of this.#progress.keys()) if (!next.has(key)) this.#drop(key);
    this.#assigned = next;
  }

  /**
   * After each join: the leader notes the partition counts the assignment was made from (the client's metadata cache,
   * which the assignment just used) and checks them again every `partitionCheckMs` (see growth.ts).
   */
  #lead(consumer: Consumer<Buffer, Buffer, Buffer, Buffer>, leader: boolean): void {
    this.#leading = leader;
    this.#counts = undefined;
    if (!leader) {
      clearTimeout(this.#growthTimer);
      this.#growthTimer = undefined;
      return;
    }
    partitionCounts(consumer, this.#topics, false).then(
      (counts) => {
        if (this.#consumer === consumer && this.#leading) this.#counts ??= counts;
      },
      () => {},
    );
    if (this.#growthTimer) return;
    this.#growthTimer = setInterval(() => void this.#checkGrowth(), this.#host.settings.partitionCheckMs);
    this.#growthTimer.unref();
  }

  /** Leader only: rejoins the group (a rebalance) when a subscribed topic has more partitions than assigned. */
  async #checkGrowth(): Promise<void> {
    const consumer = this.#consumer;
    const before = this.#counts;
    if (this.#checking || this.#closed || !consumer || !this.#leading || !before) return;
    this.#checking = true;
    try {
      const now = await partitionCounts(consumer, this.#topics, true);
      const grown = grownPartitions(before, now);
      if (grown.size === 0 || this.#consumer !== consumer || this.#closed || this.#counts !== before) return;
      await startNewPartitionsAtEarliest(consumer, grown).catch(() => {});
      // Every member's client fetches with metadata up to METADATA_MAX_AGE_MS old, and @platformatic/kafka 1.35
      // throws (uncaught) when it is assigned a partition its cached metadata lacks: wait until every cache that
      // predates the growth has expired, so each member looks the topics up again before it reads a new partition.
      await new Promise((resolve) => setTimeout(resolve, METADATA_MAX_AGE_MS + 1000).unref());
      if (this.#consumer !== consumer || this.#closed || !this.#leading) return;
      this.#counts = now;
      await consumer.joinGroup({});
    } catch {
      // Metadata or the rejoin failed: the next check tries again (a failed rejoin also surfaces as a client error).
    } finally {
      this.#checking = false;
    }
  }

  /** Forgets a partition this member no longer owns: its messages come back from the committed offset elsewhere. */
  #drop(key?: string): void {
    for (const entry of this.#live) {
      if (key === undefined || entry.key === key) this.#release(entry, 'done');
    }
    if (key === undefined) this.#progress.clear();
    else this.#progress.delete(key);
    this.#pump();
  }

  #take(record: Message<Buffer, Buffer, Buffer, Buffer>): void {
    if (this.#closed) return;
    const key = `${record.topic}:${record.partition}`;
    if (!this.#assigned.has(key)) return;
    let progress = this.#progress.get(key);
    if (!progress) {
      progress = new PartitionProgress();
      this.#progress.set(key, progress);
    }
    if (!progress.track(record.offset)) return;
    const { message, retry } = fromRecord(record);
    const retried = isRetryTopic(record.topic);
    const entry: Entry = {
      key,
      topic: record.topic,
      partition: record.partition,
      offset: record.offset,
      progress,
      message,
      attempt: retried && retry.attempt && retry.attempt > 1 ? retry.attempt : 1,
      state: 'ready',
      lease: 0,
      timer: undefined,
    };
    if (retried && retry.group !== this.#options.group) {
      // Another group's redelivery: not ours to deliver, only to step over.
      entry.state = 'done';
      void this.#settle(entry).catch(() => {});
      return;
    }
    this.#live.add(entry);
    const wait = retried && retry.notBefore ? retry.notBefore - Date.now() : 0;
    if (wait > 0) this.#hold(entry, wait);
    else this.#readyEntries.push(entry);
    this.#pump();
  }

  #hold(entry: Entry, ms: number): void {
    entry.state = 'held';
    entry.timer = setTimeout(() => {
      if (entry.state !== 'held') return;
      entry.timer = undefined;
      entry.state = 'ready';
      this.#readyEntries.unshift(entry);
      this.#pump();
    }, ms);
  }

  #pump(): void {
    while (!this.#closed && this.#outstanding < this.#options.prefetch && this.#readyEntries.length > 0) {
      this.#handOut(this.#readyEntries.shift()!);
    }
    const stream = this.#stream;
    if (!stream || this.#closed) return;
    if (!this.#paused && this.#readyEntries.length >= this.#bufferLimit) {
      this.#paused = true;
      stream.pause();
    } else if (this.#paused && this.#readyEntries.length < this.#bufferLimit / 2) {
      this.#paused = false;
      stream.resume();
    }
  }

  #handOut(entry: Entry): void {
    entry.state = 'out';
    const lease = ++entry.lease;
    this.#outstanding++;
    const leaseUntil = Date.now() + this.#options.ackTimeoutMs;
    this.#deadlines.push({ entry, lease, at: leaseUntil });
    if (this.#deadlines.length - this.#deadlineHead > Math.max(1024, this.#options.prefetch * 4)) this.#compact();
    this.#watchDeadlines();
    let settled: Promise<void> | undefined;
    this.#queue.push({
      message: entry.message,
      attempt: entry.attempt,
      // The lease ends early when this member loses it: ack timeout, or its partition revoked in a rebalance (the
      // new owner reads the message again from the committed offset), so a waiting delivery is then dropped.
      get leaseUntil() {
        return entry.state === 'out' && entry.lease === lease ? leaseUntil : 0;
      },
      ack: () => {
        settled ??= this.#ack(entry);
        return settled;
      },
      nack: (options?: NackOptions) => {
        settled ??= this.#nack(entry, lease, options?.delayMs ?? 0);
        return settled;
      },
    });
  }

  /** Takes an entry out of wherever it waits (buffer, delay timer, a consumer's hands) and sets its new state. */
  #release(entry: Entry, state: EntryState): void {
    if (entry.state === 'out') this.#outstanding--;
    if (entry.state === 'ready') {
      const index = this.#readyEntries.indexOf(entry);
      if (index >= 0) this.#readyEntries.splice(index, 1);
    }
    clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.state = state;
    if (state === 'done') this.#live.delete(entry);
  }

  /** Drops deadlines of hand-outs already settled (acks usually come in order, so they sit at the front). */
  #compact(): void {
    const live = this.#deadlines.slice(this.#deadlineHead).filter(isPending);
    this.#deadlines = live;
    this.#deadlineHead = 0;
  }

  /** Keeps one timer armed for the earliest deadline still pending. */
  #watchDeadlines(): void {
    const deadlines = this.#deadlines;
    while (this.#deadlineHead < deadlines.length) {
      if (isPending(deadlines[this.#deadlineHead]!)) break;
      this.#deadlineHead++;
    }
    if (this.#deadlineHead >= deadlines.length) {
      this.#deadlines = [];
      this.#deadlineHead = 0;
      clearTimeout(this.#deadlineTimer);
      this.#deadlineTimer = undefined;
      return;
    }
    if (this.#deadlineTimer || this.#closed) return;
    const wait = Math.max(0, deadlines[this.#deadlineHead]!.at - Date.now());
    this.#deadlineTimer = setTimeout(() => this.#onDeadline(), wait);
  }

  #onDeadline(): void {
    this.#deadlineTimer = undefined;
    const now = Date.now();
    while (this.#deadlineHead < this.#deadlines.length && this.#deadlines[this.#deadlineHead]!.at <= now) {
      const { entry, lease } = this.#deadlines[this.#deadlineHead++]!;
      this.#expire(entry, lease);
    }
    this.#watchDeadlines();
  }

  #expire(entry: Entry, lease: number): void {
    if (entry.state !== 'out' || entry.lease !== lease || this.#closed) return;
    this.#release(entry, 'ready');
    entry.attempt++;
    this.#readyEntries.unshift(entry);
    this.#pump();
  }

  #ack(entry: Entry): Promise<void> {
    // An ack after the ack timeout still counts: the message was processed, its redelivery becomes moot.
    if (entry.state === 'done' || entry.state === 'retrying') return SETTLED;
    this.#release(entry, 'done');
    this.#pump();
    return this.#settle(entry);
  }

  async #nack(entry: Entry, lease: number, delayMs: number): Promise<void> {
    if (!Number.isFinite(delayMs) || delayMs < 0) {
      throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', `nack delayMs must be a number of ms >= 0, not ${delayMs}`);
    }
    // A nack of an earlier hand-out (the message already came back by ack timeout) changes nothing.
    if (entry.state !== 'out' || entry.lease !== lease) return;
    const attempt = entry.attempt + 1;
    if (delayMs === 0 || this.#closed) {
      this.#release(entry, 'ready');
      entry.attempt = attempt;
      if (this.#closed) return;
      this.#readyEntries.unshift(entry);
      this.#pump();
      return;
    }
    this.#release(entry, 'retrying');
    this.#pump();
    const sent = this.#host.produce([this.#retryRecord(entry, attempt, Date.now() + delayMs)]);
    this.#retrying.add(sent);
    try {
      await sent;
    } catch {
      // The retry topic is out of reach: keep the message here instead; its offset stays uncommitted meanwhile.
      if ((entry.state as EntryState) !== 'retrying' || this.#closed) return;
      entry.attempt = attempt;
      this.#hold(entry, delayMs);
      return;
    } finally {
      this.#retrying.delete(sent);
    }
    if ((entry.state as EntryState) !== 'retrying') return;
    this.#release(entry, 'done');
    await this.#settle(entry);
  }

  /** The message again, for the type's retry topic, addressed to this group. */
  #retryRecord(entry: Entry, attempt: number, notBefore: number): KafkaRecord {
    return toRecord(retryTopicOf(entry.message.type), entry.message, {
      [RETRY_HEADERS.group]: this.#options.group,
      [RETRY_HEADERS.notBefore]: String(notBefore),
      [RETRY_HEADERS.attempt]: String(attempt),
    });
  }

  /** Records a finished offset; commits when the partition's acked prefix grew (and waits for that commit). */
  #settle(entry: Entry): Promise<void> {
    if (this.#progress.get(entry.key) !== entry.progress) return SETTLED;
    const next = entry.progress.ack(entry.offset);
    if (next === undefined) return SETTLED;
    return this.#commits.commit(entry.key, {
      topic: entry.topic,
      partition: entry.partition,
      offset: next,
      leaderEpoch: -1,
    });
  }

  /** The client gave up (broker gone for longer than its retries): start over with a fresh member. */
  #restart(consumer: Consumer<Buffer, Buffer, Buffer, Buffer>, _error?: Error): void {
    if (this.#closed || this.#consumer !== consumer) return;
    const stream = this.#stream;
    this.#consumer = undefined;
    this.#stream = undefined;
    stream?.removeAllListeners('data');
    if (stream && !stream.destroyed) stream.destroy();
    this.#paused = false;
    this.#assigned = new Set();
    this.#leading = false;
    this.#counts = undefined;
    clearInterval(this.#growthTimer);
    this.#growthTimer = undefined;
    this.#drop();
    void closeQuietly(consumer);
    clearTimeout(this.#restartTimer);
    this.#restartTimer = setTimeout(() => {
      this.#connect().catch((error: unknown) => this.#restartLater(error));
    }, RESTART_DELAY_MS);
  }

  #restartLater(_error: unknown): void {
    if (this.#closed) return;
    clearTimeout(this.#restartTimer);
    this.#restartTimer = setTimeout(() => {
      this.#connect().catch((error: unknown) => this.#restartLater(error));
    }, RESTART_DELAY_MS);
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#closed = true;
    this.#options.signal?.removeEventListener('abort', this.#onAbort);
    clearTimeout(this.#restartTimer);
    clearTimeout(this.#deadlineTimer);
    clearInterval(this.#growthTimer);
    this.#growthTimer = undefined;
    this.#queue.end();
    this.#queue.drain();
    await Promise.allSettled([...this.#retrying]);
    await this.#returnUnacked();
    for (const entry of this.#live) this.#release(entry, 'done');
    this.#readyEntries.length = 0;
    await this.#commits.drain();
    const consumer = this.#consumer;
    this.#consumer = undefined;
    this.#stream = undefined;
    if (consumer) await closeQuietly(consumer);
    this.#host.closed(this);
  }

  /**
   * Hands the messages this member delivered and nobody acked back to the group. Those after the last acked message
   * of their partition need nothing: their offsets stay uncommitted and the next member reads them from there, so a
   * member that acks nothing (a dead-letter listing) leaves its group exactly where it was. Those with an acked message
   * behind them go through the retry topic (attempt + 1), and the partition is committed past them: the next member
   * gets exactly those, not the acked ones that followed them. If the retry topic cannot be written, the offsets stay
   * uncommitted and the next member reads them again from there.
   */
  async #returnUnacked(): Promise<void> {
    const lastAcked = new Map<PartitionProgress, bigint>();
    const behindAnAck = (entry: Entry) => {
      let last = lastAcked.get(entry.progress);
      if (last === undefined) {
        last = entry.progress.lastAcked;
        lastAcked.set(entry.progress, last);
      }
      return entry.offset < last;
    };
    const returning = [...this.#live].filter((e) => (e.lease > 0 || e.state === 'held') && behindAnAck(e));
    if (returning.length === 0 || !this.#consumer) return;
    const now = Date.now();
    try {
      await this.#host.produce(returning.map((e) => this.#retryRecord(e, e.attempt + 1, now)));
    } catch {
      return;
    }
    const settled: Promise<void>[] = [];
    for (const entry of returning) {
      if (entry.state === 'done') continue;
      this.#release(entry, 'done');
      settled.push(this.#settle(entry));
    }
    await Promise.allSettled(settled);
  }
}
