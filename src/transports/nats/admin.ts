/** TransportAdmin over JetStream streams: one stream per type, one durable consumer per group. */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamManager,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { BusError, checkTypeName } from '../../errors.ts';
import type {
  GroupStats,
  Offset,
  PeekedMessage,
  PeekOptions,
  Retention,
  TransportAdmin,
  TypeInfo,
  TypeOptions,
  TypeStats,
} from '../../transport/contract.ts';
import { checkPartitionCount } from '../../transport/rules.ts';
import {
  apiCode,
  isNoResponders,
  JS_CONSUMER_EXISTS,
  JS_CONSUMER_NAME_EXISTS,
  JS_CONSUMER_NOT_FOUND,
  JS_STREAM_NAME_IN_USE,
  JS_STREAM_NOT_FOUND,
  toNatsError,
} from './errors.ts';
import { fromNatsMessage } from './headers.ts';
import { joinBody } from './large.ts';
import {
  durableName,
  groupOfDurable,
  partsSubjectOf,
  STREAM_PREFIX,
  streamName,
  subjectOf,
  typeOfStream,
} from './names.ts';
import type { NatsSettings } from './options.ts';

const MS = 1_000_000;
/** ack_wait of a group created before its first member; that member's ackTimeoutMs replaces it. */
const GROUP_ACK_WAIT_MS = 30_000;

export class NatsAdmin implements TransportAdmin {
  readonly #jsm: JetStreamManager;
  readonly #settings: NatsSettings;
  /** Types whose stream this process created or saw, so publishing does not ask every time. */
  readonly #known = new Map<string, Promise<void>>();

  constructor(jsm: JetStreamManager, settings: NatsSettings) {
    this.#jsm = jsm;
    this.#settings = settings;
  }

  /**
   * Creates the group's durable consumer on the type's stream if it is new; keeps ack_wait at `ackTimeoutMs` (a
   * consumer's attach passes its own; admin.ensureGroup leaves an existing group's as it is).
   */
  async ensureGroup(type: string, group: string, offset: Offset, ackTimeoutMs?: number): Promise<void> {
    checkTypeName(type);
    checkTypeName(group, 'consumer group');
    await this.ensureStream(type);
    const stream = streamName(type);
    const durable = durableName(group);
    const ackWait = (ackTimeoutMs ?? GROUP_ACK_WAIT_MS) * MS;
    try {
      let info = await this.#consumerInfo(stream, durable);
      if (!info) {
        try {
          await this.#jsm.consumers.add(stream, {
            durable_name: durable,
            ack_policy: AckPolicy.Explicit,
            deliver_policy: offset === 'earliest' ? DeliverPolicy.All : DeliverPolicy.New,
            replay_policy: ReplayPolicy.Instant,
            ack_wait: ackWait,
            // Attempts are counted by the bus, which dead-letters; the server never gives up on its own.
            max_deliver: -1,
            // Each member bounds itself by its prefetch; the group as a whole is not capped.
            max_ack_pending: -1,
            // Only the heads of large messages are deliveries; their parts are read by sequence.
            filter_subject: subjectOf(type),
          });
          return;
        } catch (error) {
          const code = apiCode(error);
          if (code !== JS_CONSUMER_EXISTS && code !== JS_CONSUMER_NAME_EXISTS) throw error;
          info = await this.#consumerInfo(stream, durable);
        }
      }
      if (ackTimeoutMs !== undefined && info && info.config.ack_wait !== ackWait) {
        await this.#jsm.consumers.update(stream, durable, { ack_wait: ackWait });
      }
    } catch (error) {
      if (isNoResponders(error)) this.forget(type);
      throw toNatsError(error, 'BUSBAR_ERR_BROKER', `nats: could not attach group '${group}' to '${type}'`);
    }
  }

  async #consumerInfo(stream: string, durable: string) {
    try {
      return await this.#jsm.consumers.info(stream, durable);
    } catch (error) {
      if (apiCode(error) === JS_CONSUMER_NOT_FOUND) return undefined;
      throw error;
    }
  }

  async ensureType(type: string, options?: TypeOptions): Promise<void> {
    checkPartitions(type, options?.partitions ?? 1);
    await this.ensureStream(type);
  }

  /** Cached: resolves once the type's stream exists. */
  ensureStream(type: string): Promise<void> {
    let known = this.#known.get(type);
    if (!known) {
      known = this.#createStream(type);
      this.#known.set(type, known);
      known.catch(() => this.#known.delete(type));
    }
    return known;
  }

  /** Forget a type so the next use creates its stream again (it was deleted behind our back). */
  forget(type: string): void {
    this.#known.delete(type);
  }

  async #createStream(type: string): Promise<void> {
    const name = streamName(type);
    const config: Partial<StreamConfig> & { name: string } = {
      name,
      subjects: [subjectOf(type), partsSubjectOf(type)],
      description: `busbar message type ${type}`,
      storage: this.#settings.storage === 'memory' ? StorageType.Memory : StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      num_replicas: this.#settings.replicas,
      duplicate_window: this.#settings.duplicateWindowMs * MS,
    };
    try {
      try {
        await this.#jsm.streams.add(config);
      } catch (error) {
        if (apiCode(error) !== JS_STREAM_NAME_IN_USE) throw error;
        // Exists already, with retention changed since: that is the type, as wanted, if it takes large messages.
        const existing = await this.#jsm.streams.info(name);
        const subjects = existing.config.subjects ?? [];
        if (!config.subjects!.every((s) => subjects.includes(s))) {
          await this.#jsm.streams.update(name, { subjects: [...new Set([...subjects, ...config.subjects!])] });
        }
      }
    } catch (error) {
      throw toNatsError(error, 'BUSBAR_ERR_BROKER', `nats: could not create the stream for '${type}'`);
    }
  }

  async deleteType(type: string): Promise<void> {
    this.#known.delete(type);
    try {
      await this.#jsm.streams.delete(streamName(type));
    } catch (error) {
      if (apiCode(error) === JS_STREAM_NOT_FOUND) return;
      throw toNatsError(error, 'BUSBAR_ERR_BROKER', `nats: could not delete '${type}'`);
    } finally {
      this.#known.delete(type);
    }
  }

  async listTypes(): Promise<TypeInfo[]> {
    const types: TypeInfo[] = [];
    for (const info of await this.#streams()) {
      const type = typeOfStream(info.config.name);
      if (type !== undefined) types.push({ type, partitions: 1, retention: retentionOf(info) });
    }
    return types.sort((a, b) => a.type.localeCompare(b.type));
  }

  async setPartitions(type: string, partitions: number): Promise<void> {
    await this.#info(type);
    checkPartitions(type, partitions);
  }

  async setRetention(type: string, retention: Retention): Promise<void> {
    const current = await this.#info(type);
    const next = { ...retentionOf(current), ...retention };
    for (const [key, value] of Object.entries(next)) {
      if (value !== undefined && (!Number.isInteger(value) || value <= 0)) {
        throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', `retention.${key} must be a positive integer, got ${value}`);
      }
    }
    const maxAge = next.maxAgeMs === undefined ? 0 : next.maxAgeMs * MS;
    // JetStream refuses a duplicate window longer than max_age.
    const window = this.#settings.duplicateWindowMs * MS;
    try {
      await this.#jsm.streams.update(current.config.name, {
        max_age: maxAge,
        max_bytes: next.maxBytes ?? -1,
        duplicate_window: maxAge > 0 ? Math.min(window, maxAge) : window,
      });
    } catch (error) {
      throw toNatsError(error, 'BUSBAR_ERR_BROKER', `nats: could not set the retention of '${type}'`);
    }
  }

  async purge(type: string): Promise<void> {
    try {
      await this.#jsm.streams.purge(streamName(type));
    } catch (error) {
      if (apiCode(error) === JS_STREAM_NOT_FOUND) return;
      throw toNatsError(error, 'BUSBAR_ERR_BROKER', `nats: could not purge '${type}'`);
    }
  }

  async stats(type?: string): Promise<TypeStats[]> {
    let infos: StreamInfo[];
    if (type === undefined) {
      infos = (await this.#streams()).filter((info) => typeOfStream(info.config.name) !== undefined);
    } else {
      try {
        infos = [await this.#jsm.streams.info(streamName(type))];
      } catch (error) {
        if (apiCode(error) === JS_STREAM_NOT_FOUND) return [];
        throw toNatsError(error, 'BUSBAR_ERR_BROKER', `nats: could not read the stats of '${type}'`);
      }
    }
    return Promise.all(infos.map((info) => this.#typeStats(info)));
  }

  async #typeStats(listed: StreamInfo): Promise<TypeStats> {
    const stream = listed.config.name;
    const type = typeOfStream(stream)!;
    const parts = partsSubjectOf(type);
    // Ask again with the parts subject filtered in, to count the parts of large messages out of the depth.
    let info = listed;
    try {
      info = await this.#jsm.streams.info(stream, { subjects_filter: parts });
    } catch (error) {
      if (apiCode(error) !== JS_STREAM_NOT_FOUND) {
        throw toNatsError(error, 'BUSBAR_ERR_BROKER', `nats: could not read the stats of '${type}'`);
      }
    }
    const groups: GroupStats[] = [];
    try {
      for await (const consumer of this.#jsm.consumers.list(stream)) {
        const unread = consumer.num_pending + consumer.num_ack_pending;
        groups.push({
          group: groupOfDurable(consumer.name),
          unread,
          inflight: consumer.num_ack_pending,
          oldestAgeMs:
            unread === 0
              ? null
              : await this.#ageOf(stream, Math.max(consumer.ack_floor.stream_seq + 1, info.state.first_seq)),
        });
      }
    } catch (error) {
      if (apiCode(error) !== JS_STREAM_NOT_FOUND) {
        throw toNatsError(error, 'BUSBAR_ERR_BROKER', `nats: could not list the groups of ${stream}`);
      }
    }
    return {
      type,
      depth: info.state.messages - (info.state.subjects?.[parts] ?? 0),
      // JetStream counts stored bytes: payload plus subject and headers.
      bytes: info.state.bytes,
      partitions: 1,
      groups: groups.sort((a, b) => a.group.localeCompare(b.group)),
    };
  }

  /** Age of the message right after a group's ack floor: its oldest unacked one (busbar never deletes single ones). */
  async #ageOf(stream: string, seq: number): Promise<number | null> {
    try {
      const first = await this.#jsm.streams.getMessage(stream, { seq });
      return first ? Math.max(0, Date.now() - first.time.getTime()) : null;
    } catch {
      return null;
    }
  }

  /**
   * Walks the type's stream with STREAM.MSG.GET (`next_by_subj` = the type's subject, so the parts of large messages
   * are skipped; a large message's parts are read back by sequence and joined as a delivery does): no consumer is
   * made, no group moves. A position is a stream sequence; `fromTime` is found by a binary search over sequences
   * (the stream's receipt times only grow), which works on every JetStream server (MSG.GET's start_time needs 2.11).
   */
  async peek(type: string, options: PeekOptions): Promise<PeekedMessage[]> {
    const stream = streamName(type);
    let from = 1;
    if (options.from !== undefined) {
      if (!/^\d{1,15}$/.test(options.from) || Number(options.from) < 1) {
        throw new BusError(
          'BUSBAR_ERR_INVALID_ARGUMENT',
          `'${options.from}' is not a NATS position: give a stream sequence (a whole number >= 1) a previous peek returned`,
        );
      }
      from = Number(options.from);
    }
    const subject = subjectOf(type);
    try {
      let info: StreamInfo;
      try {
        info = await this.#jsm.streams.info(stream);
      } catch (error) {
        if (apiCode(error) === JS_STREAM_NOT_FOUND) return [];
        throw error;
      }
      const last = info.state.last_seq;
      let seq = Math.max(from, info.state.first_seq);
      if (options.fromTime !== undefined) {
        seq = Math.max(seq, await this.#firstAtOrAfter(stream, subject, options.fromTime, seq, last));
      }
      const out: PeekedMessage[] = [];
      while (out.length < options.count && seq <= last) {
        const stored = await this.#next(stream, subject, seq);
        if (!stored) break;
        seq = stored.seq + 1;
        const { message, parts } = fromNatsMessage(stored.header, stored.data, type, {
          stream,
          seq: stored.seq,
          timestampNanos: BigInt(stored.time.getTime()) * 1_000_000n,
        });
        let whole = message;
        if (parts) {
          const read = await Promise.all(parts.map((s) => this.#jsm.streams.getMessage(stream, { seq: s })));
          // Parts removed by retention or a purge: a delivery would drop it too, as it cannot be whole.
          if (read.some((part) => !part)) continue;
          whole = {
            ...message,
            body: joinBody(
              message.body,
              read.map((part) => part!.data),
            ),
          };
        }
        out.push({ position: String(stored.seq), storedAt: stored.time.getTime(), message: whole });
      }
      return out;
    } catch (error) {
      throw toNatsError(error, 'BUSBAR_ERR_BROKER', `nats: could not peek at '${type}'`);
    }
  }

  /** The first message on `subject` at or after `seq` (null: none). */
  #next(stream: string, subject: string, seq: number) {
    return this.#jsm.streams.getMessage(stream, { seq, next_by_subj: subject } as unknown as { seq: number });
  }

  /** The lowest sequence in [low, high] whose message was stored at or after `time` (high + 1: none). */
  async #firstAtOrAfter(stream: string, subject: string, time: number, low: number, high: number): Promise<number> {
    let lo = low;
    let hi = high + 1;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const stored = await this.#next(stream, subject, mid);
      if (!stored || stored.seq >= hi || stored.time.getTime() >= time) hi = mid;
      else lo = stored.seq + 1;
    }
    return lo;
  }

  async #info(type: string): Promise<StreamInfo> {
    try {
      return await this.#jsm.streams.info(streamName(type));
    } catch (error) {
      if (apiCode(error) === JS_STREAM_NOT_FOUND) {
        throw new BusError(
          'BUSBAR_ERR_UNKNOWN_TYPE',
          `message type '${type}' does not exist: register it first (admin.registerMessageType)`,
        );
      }
      throw toNatsError(error, 'BUSBAR_ERR_BROKER', `nats: could not read '${type}'`);
    }
  }

  async #streams(): Promise<StreamInfo[]> {
    const infos: StreamInfo[] = [];
    try {
      for await (const info of this.#jsm.streams.list()) {
        if (info.config.name.startsWith(STREAM_PREFIX)) infos.push(info);
      }
    } catch (error) {
      throw toNatsError(error, 'BUSBAR_ERR_BROKER', 'nats: could not list the streams');
    }
    return infos;
  }
}

function retentionOf(info: StreamInfo): Retention {
  const { max_age: maxAge, max_bytes: maxBytes } = info.config;
  return {
    maxAgeMs: maxAge > 0 ? Math.round(maxAge / MS) : undefined,
    maxBytes: maxBytes > 0 ? maxBytes : undefined,
  };
}

function checkPartitions(type: string, partitions: number): void {
  checkPartitionCount(type, partitions);
  if (partitions > 1) {
    throw new BusError(
      'BUSBAR_ERR_UNSUPPORTED',
      `the nats transport keeps each type in one JetStream stream and cannot give '${type}' ${partitions} partitions: scale out with more consumers in the group instead`,
    );
  }
}
