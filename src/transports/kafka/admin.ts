/**
 * TransportAdmin on Kafka's admin API: a type is a topic plus its retry topic (`<type>.busbar-retry`), created and
 * grown together; purge is DeleteRecords up to the end offsets; stats come from ListOffsets and OffsetFetch.
 */

import { type Admin, Consumer, type Message } from '@platformatic/kafka';
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
import { checkPartitionCount, partitionsCannotShrink } from '../../transport/rules.ts';
import { hasKafkaError, kafkaError } from './errors.ts';
import type { KafkaSettings } from './options.ts';
import { checkKafkaType, fromRecord, isRetryTopic, retryTopicOf } from './wire.ts';

const CONFIG_RESOURCE_TOPIC = 2;
const CONFIG_SET = 0;
const OFFSET_LATEST = -1n;
const OFFSET_EARLIEST = -2n;

/** What this process knows about in-flight deliveries: undefined when it has no member of the group. */
export type InflightLookup = (group: string, type: string) => number | undefined;

function retentionOf(configs: Map<string, string | null | undefined>): Retention {
  const ms = Number(configs.get('retention.ms') ?? -1);
  const bytes = Number(configs.get('retention.bytes') ?? -1);
  return { maxAgeMs: ms >= 0 ? ms : undefined, maxBytes: bytes >= 0 ? bytes : undefined };
}

function limit(value: number | undefined, what: string): string {
  if (value === undefined) return '-1';
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', `${what} must be a whole number >= 1, not ${value}`);
  }
  return String(value);
}

/** A record batch's attributes bit for a transaction marker (not a message). */
const IS_CONTROL = 0x20;
/** Fetches of one partition a peek makes at most (each returns at least one batch): bounds a peek of tiny batches. */
const PEEK_MAX_FETCHES = 50;

/** Merge order of a peek across partitions: broker timestamp, then partition, then offset. */
interface PeekKey {
  readonly time: bigint;
  readonly partition: number;
  readonly offset: bigint;
}

function compareKeys(a: PeekKey, b: PeekKey): number {
  if (a.time !== b.time) return a.time < b.time ? -1 : 1;
  if (a.partition !== b.partition) return a.partition - b.partition;
  return a.offset === b.offset ? 0 : a.offset < b.offset ? -1 : 1;
}

/** `<partition>:<offset>`, as a peek returns it. */
function parsePosition(position: string): { partition: number; offset: bigint } {
  const match = /^(\d{1,9}):(\d{1,19})$/.exec(position);
  if (!match) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `'${position}' is not a Kafka position: give <partition>:<offset> (e.g. 0:42) as a previous peek returned it`,
    );
  }
  return { partition: Number(match[1]), offset: BigInt(match[2]!) };
}

/** The client's answer about a topic that does not exist (any more). */
function topicGone(error: unknown): boolean {
  return (
    hasKafkaError(error, 'UNKNOWN_TOPIC_OR_PARTITION') ||
    hasKafkaError(error, 'UNKNOWN_TOPIC_ID') ||
    // Its metadata() turns the protocol error into a UserError that keeps only the topic's name (1.35).
    (error instanceof Error && /^Unknown topic /.test(error.message))
  );
}

/** How long an admin call waits for the broker's metadata to show the topics it created, grew or deleted. */
const METADATA_SETTLE_MS = 5_000;
/** How often stats of every type start again because a topic they listed was deleted meanwhile. */
const DELETED_MEANWHILE_ATTEMPTS = 5;

export class KafkaAdmin implements TransportAdmin {
  readonly #admin: Admin;
  readonly #settings: KafkaSettings;
  readonly #inflight: InflightLookup;
  /** Types this process created or saw, so publish does not ask the broker each time. */
  readonly #known = new Set<string>();

  constructor(admin: Admin, settings: KafkaSettings, inflight: InflightLookup) {
    this.#admin = admin;
    this.#settings = settings;
    this.#inflight = inflight;
  }

  /** ensureType, at most once per type and process unless forgotten. */
  async ensureKnown(type: string): Promise<void> {
    if (!this.#known.has(type)) await this.ensureType(type);
  }

  forget(type: string): void {
    this.#known.delete(type);
  }

  async ensureType(type: string, options: TypeOptions = {}): Promise<void> {
    checkKafkaType(type);
    const partitions = options.partitions ?? this.#settings.partitions;
    // -1: the broker's num.partitions.
    if (partitions !== -1) checkPartitionCount(type, partitions);
    const created: string[] = [];
    for (const topic of [type, retryTopicOf(type)]) {
      try {
        await this.#admin.createTopics({
          topics: [topic],
          partitions,
          replicas: this.#settings.replicas,
          configs: [{ name: 'max.message.bytes', value: String(this.#settings.maxMessageBytes) }],
        });
        created.push(topic);
      } catch (error) {
        if (!hasKafkaError(error, 'TOPIC_ALREADY_EXISTS')) {
          throw kafkaError(error, 'BUSBAR_ERR_BROKER', `could not create Kafka topic '${topic}'`);
        }
      }
    }
    this.#known.add(type);
    // The controller has the topics; the broker's metadata follows a moment later (longer on a loaded machine).
    // Resolve once they are listed, so that a list, a stats or a group's offsets right after see them.
    if (created.length > 0) await this.#settled(created, Math.max(1, partitions));
  }

  /** Waits (at most METADATA_SETTLE_MS) until the metadata lists every topic with at least `partitions` partitions. */
  async #settled(topics: string[], partitions: number): Promise<void> {
    for (const deadline = Date.now() + METADATA_SETTLE_MS; Date.now() < deadline; ) {
      const counts = await this.#partitionCounts(topics).catch(() => new Map<string, number>());
      if (topics.every((t) => (counts.get(t) ?? 0) >= partitions)) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async deleteType(type: string): Promise<void> {
    checkKafkaType(type);
    const made = this.#known.delete(type);
    // Only topics that exist (the client retries a DeleteTopics of an unknown topic for seconds before it gives up);
    // a type this process made counts as existing even if the broker's metadata does not list it yet.
    const existing = await this.#topicNames(`to delete '${type}'`);
    const topics = [type, retryTopicOf(type)].filter((t) => made || existing.has(t));
    if (topics.length === 0) return;
    try {
      await this.#admin.deleteTopics({ topics });
    } catch (error) {
      // Deleted meanwhile by someone else: the outcome asked for.
      if (!hasKafkaError(error, 'UNKNOWN_TOPIC_OR_PARTITION') && !hasKafkaError(error, 'UNKNOWN_TOPIC_ID')) {
        throw kafkaError(error, 'BUSBAR_ERR_BROKER', `could not delete Kafka topic(s) ${topics.join(', ')}`);
      }
    }
    // The controller has the deletion; the broker's metadata follows a moment later. Resolve once the type is no
    // longer listed, so that a list right after deregistering does not show it.
    for (const deadline = Date.now() + METADATA_SETTLE_MS; Date.now() < deadline; ) {
      const left = await this.#topicNames(`to see '${type}' deleted`);
      if (!topics.some((t) => left.has(t))) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async #topicNames(why: string): Promise<Set<string>> {
    try {
      return new Set(await this.#admin.listTopics({ includeInternals: false }));
    } catch (error) {
      throw kafkaError(error, 'BUSBAR_ERR_BROKER', `could not list Kafka topics ${why}`);
    }
  }

  async #typeNames(): Promise<string[]> {
    const topics = await this.#topicNames('for the list of types');
    return [...topics].filter((t) => !t.startsWith('__') && !isRetryTopic(t)).sort();
  }

  /** Partition counts of existing topics; a missing topic is absent from the map. */
  async #partitionCounts(topics: string[]): Promise<Map<string, number>> {
    if (topics.length === 0) return new Map();
    const existing = await this.#topicNames('to count their partitions');
    return this.#countsOf(topics.filter((t) => existing.has(t)));
  }

  /** Partition counts of topics known to exist (the client fails the request if one does not). */
  async #countsOf(topics: string[]): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    if (topics.length === 0) return counts;
    const metadata = await this.#admin.metadata({ topics, forceUpdate: true });
    for (const topic of topics) {
      const info = metadata.topics.get(topic);
      if (info) counts.set(topic, info.partitionsCount);
    }
    return counts;
  }

  /** The types with their partitions and retention (a topic deleted while they are described is left out). */
  async listTypes(): Promise<TypeInfo[]> {
    try {
      return await this.#describe(await this.#typeNames());
    } catch (error) {
      throw kafkaError(error, 'BUSBAR_ERR_BROKER', 'could not describe Kafka topics');
    }
  }

  /** Only the named types' topics are described: other topics (however many, whatever happens to them) cost nothing. */
  async describeTypes(types: readonly string[]): Promise<TypeInfo[]> {
    const names = types.filter((t) => !t.startsWith('__') && !isRetryTopic(t));
    try {
      return await this.#describe(names);
    } catch (error) {
      throw kafkaError(error, 'BUSBAR_ERR_BROKER', `could not describe Kafka topic(s) ${names.join(', ')}`);
    }
  }

  /**
   * Partitions and retention of those of `types` that exist. A topic deleted between the listing and the description
   * (by anyone: the cluster is shared) is no type any more: left out rather than failing the whole answer.
   */
  async #describe(types: string[]): Promise<TypeInfo[]> {
    if (types.length === 0) return [];
    const existing = await this.#topicNames('to describe them');
    const present = types.filter((t) => existing.has(t));
    try {
      return await this.#describeExisting(present);
    } catch (error) {
      if (!topicGone(error) || present.length === 1) throw error;
      // The client fails the whole request for one unknown topic: ask about each on its own.
      const each = await Promise.all(
        present.map((t) => this.#describeExisting([t]).catch((e) => (topicGone(e) ? [] : Promise.reject(e)))),
      );
      return each.flat();
    }
  }

  async #describeExisting(types: string[]): Promise<TypeInfo[]> {
    if (types.length === 0) return [];
    const counts = await this.#countsOf(types);
    const described = await this.#admin.describeConfigs({
      resources: types.map((t) => ({
        resourceType: CONFIG_RESOURCE_TOPIC,
        resourceName: t,
        configurationKeys: ['retention.ms', 'retention.bytes'],
      })),
    });
    const retention = new Map(
      described.map((d) => [d.resourceName, retentionOf(new Map(d.configs.map((c) => [c.name, c.value])))]),
    );
    return types
      .filter((t) => counts.has(t))
      .map((type) => ({ type, partitions: counts.get(type)!, retention: retention.get(type) ?? {} }));
  }

  async #requirePartitions(type: string): Promise<number> {
    const count = (await this.#partitionCounts([type])).get(type);
    if (count === undefined) {
      throw new BusError('BUSBAR_ERR_UNKNOWN_TYPE', `message type '${type}' does not exist: register it first`);
    }
    return count;
  }

  async setPartitions(type: string, partitions: number): Promise<void> {
    checkKafkaType(type);
    checkPartitionCount(type, partitions);
    const current = await this.#requirePartitions(type);
    if (partitions < current) throw partitionsCannotShrink(type, current, partitions);
    const counts = await this.#partitionCounts([type, retryTopicOf(type)]);
    const grow = [...counts].filter(([, count]) => count < partitions).map(([name]) => ({ name, count: partitions }));
    if (grow.length === 0) return;
    try {
      await this.#admin.createPartitions({ topics: grow });
    } catch (error) {
      throw kafkaError(
        error,
        'BUSBAR_ERR_PARTITIONS',
        `could not grow message type '${type}' to ${partitions} partitions`,
      );
    }
    await this.#settled(
      grow.map((t) => t.name),
      partitions,
    );
  }

  async setRetention(type: string, retention: Retention): Promise<void> {
    checkKafkaType(type);
    await this.#requirePartitions(type);
    const configs = [
      { name: 'retention.ms', configOperation: CONFIG_SET, value: limit(retention.maxAgeMs, 'maxAgeMs') },
      { name: 'retention.bytes', configOperation: CONFIG_SET, value: limit(retention.maxBytes, 'maxBytes') },
    ];
    // Kafka removes whole closed segments only: roll segments at least as often as the age limit so it can bite.
    if (retention.maxAgeMs !== undefined) {
      configs.push({ name: 'segment.ms', configOperation: CONFIG_SET, value: String(retention.maxAgeMs) });
    }
    try {
      await this.#admin.incrementalAlterConfigs({
        resources: [type, retryTopicOf(type)].map((resourceName) => ({
          resourceType: CONFIG_RESOURCE_TOPIC,
          resourceName,
          configs: configs as never,
        })),
      });
    } catch (error) {
      throw kafkaError(error, 'BUSBAR_ERR_BROKER', `could not set the retention of message type '${type}'`);
    }
  }

  /**
   * Reads the type's topic with the Fetch API (a Consumer that never joins a group and never commits: no group
   * moves), from each partition's offset for the start time (ListOffsets by timestamp), and merges the partitions
   * oldest first by broker timestamp. `from` (`<partition>:<offset>`) starts at that record: records before it in
   * that order are left out. The retry topic (redeliveries waiting for their time) is not shown.
   */
  async peek(type: string, options: PeekOptions): Promise<PeekedMessage[]> {
    checkKafkaType(type);
    const from = options.from === undefined ? undefined : parsePosition(options.from);
    const count = (await this.#partitionCounts([type])).get(type);
    if (count === undefined) return [];
    if (from && from.partition >= count) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `position '${options.from}' names partition ${from.partition}, but '${type}' has ${count} partition(s)`,
      );
    }
    const consumer = new Consumer<Buffer, Buffer, Buffer, Buffer>({
      bootstrapBrokers: [...this.#settings.bootstrapBrokers],
      connectTimeout: this.#settings.connectTimeoutMs,
      ...(this.#settings.tls ? { tls: this.#settings.tls } : {}),
      ...(this.#settings.sasl ? { sasl: this.#settings.sasl } : {}),
      clientId: `${this.#settings.clientId}-peek`,
      // Required by the client; never used: this consumer only fetches, it never joins a group or commits.
      groupId: `${this.#settings.clientId}-peek-unjoined`,
      autocommit: false,
      retries: 2,
    });
    consumer.on('error', () => {});
    try {
      const metadata = await this.#admin.metadata({ topics: [type], forceUpdate: true });
      const topic = metadata.topics.get(type);
      if (!topic) return [];
      const offsets = await this.#offsets(new Map([[type, count]]));
      const ranges = offsets.get(type)!;
      const read = (partition: number, start: bigint, limit: number) =>
        this.#fetchRecords(
          consumer,
          type,
          topic.id,
          topic.partitions[partition]!,
          partition,
          start,
          ranges[partition]!.end,
          limit,
        );
      // The lower bound in merge order: the record at `from`, and/or the start time.
      let bound: PeekKey | undefined;
      if (from) {
        const [first] = await read(from.partition, from.offset, 1);
        if (!first) return [];
        bound = first.key;
      }
      if (options.fromTime !== undefined) {
        const time = BigInt(Math.max(0, Math.floor(options.fromTime)));
        if (!bound || bound.time < time) bound = { time, partition: -1, offset: -1n };
      }
      const starts = ranges.map((r) => r.start);
      if (bound) {
        const time = bound.time;
        const [listed] = await this.#admin.listOffsets({
          topics: [
            {
              name: type,
              partitions: ranges.map((_, partitionIndex) => ({ partitionIndex, timestamp: time })),
            },
          ],
        });
        for (const p of listed?.partitions ?? []) {
          // -1: nothing stored at or after that time.
          starts[p.partitionIndex] = p.offset < 0n ? ranges[p.partitionIndex]!.end : p.offset;
        }
        if (from) starts[from.partition] = from.offset;
      }
      const found = (await Promise.all(starts.map((start, partition) => read(partition, start, options.count)))).flat();
      return found
        .filter((r) => !bound || compareKeys(r.key, bound) >= 0)
        .sort((a, b) => compareKeys(a.key, b.key))
        .slice(0, options.count)
        .map((r) => r.peeked);
    } catch (error) {
      throw kafkaError(error, 'BUSBAR_ERR_BROKER', `could not peek at message type '${type}'`);
    } finally {
      await (consumer.close(true) as unknown as Promise<void>).catch(() => {});
    }
  }

  /** Up to `limit` records of one partition from `start` (below `end`), without any group. */
  async #fetchRecords(
    consumer: Consumer<Buffer, Buffer, Buffer, Buffer>,
    topicName: string,
    topicId: string,
    leader: { leader: number; leaderEpoch: number },
    partition: number,
    start: bigint,
    end: bigint,
    limit: number,
  ): Promise<{ key: PeekKey; peeked: PeekedMessage }[]> {
    const out: { key: PeekKey; peeked: PeekedMessage }[] = [];
    let next = start;
    for (let fetches = 0; out.length < limit && next < end && fetches < PEEK_MAX_FETCHES; fetches++) {
      const response = await consumer.fetch({
        node: leader.leader,
        maxWaitTime: 0,
        minBytes: 0,
        maxBytes: this.#settings.fetchMaxBytes,
        topics: [
          {
            topicId,
            partitions: [
              {
                partition,
                fetchOffset: next,
                currentLeaderEpoch: leader.leaderEpoch,
                lastFetchedEpoch: -1,
                partitionMaxBytes: this.#settings.fetchMaxBytes,
              },
            ],
          },
        ],
      });
      let advanced = false;
      for (const topicResponse of response.responses) {
        for (const p of topicResponse.partitions) {
          if (p.partitionIndex !== partition) continue;
          for (const batch of p.records ?? []) {
            const last = batch.firstOffset + BigInt(batch.lastOffsetDelta);
            if (last + 1n > next) {
              next = last + 1n;
              advanced = true;
            }
            if (batch.attributes & IS_CONTROL) continue;
            for (const record of batch.records) {
              const offset = batch.firstOffset + BigInt(record.offsetDelta);
              if (offset < start || out.length >= limit) continue;
              const timestamp = batch.firstTimestamp + record.timestampDelta;
              const { message } = fromRecord({
                key: record.key,
                value: record.value,
                headers: record.headers,
                topic: topicName,
                partition,
                offset,
                timestamp,
              } as unknown as Message<Buffer, Buffer, Buffer, Buffer>);
              out.push({
                key: { time: timestamp, partition, offset },
                peeked: { position: `${partition}:${offset}`, storedAt: Number(timestamp), message },
              });
            }
          }
        }
      }
      if (!advanced) break;
    }
    return out;
  }

  /** [start, end) offsets of every partition of the given topics. */
  async #offsets(counts: Map<string, number>): Promise<Map<string, { start: bigint; end: bigint }[]>> {
    const ask = (timestamp: bigint) =>
      this.#admin.listOffsets({
        topics: [...counts].map(([name, count]) => ({
          name,
          partitions: Array.from({ length: count }, (_, partitionIndex) => ({ partitionIndex, timestamp })),
        })),
      });
    const [starts, ends] = await Promise.all([ask(OFFSET_EARLIEST), ask(OFFSET_LATEST)]);
    const result = new Map<string, { start: bigint; end: bigint }[]>();
    for (const [name, count] of counts)
      result.set(
        name,
        Array.from({ length: count }, () => ({ start: 0n, end: 0n })),
      );
    for (const topic of starts) {
      for (const p of topic.partitions) result.get(topic.name)![p.partitionIndex]!.start = p.offset;
    }
    for (const topic of ends) {
      for (const p of topic.partitions) result.get(topic.name)![p.partitionIndex]!.end = p.offset;
    }
    return result;
  }

  /**
   * Commits the group's start offsets (the ends of the type's topic and retry topic for `latest`, their starts for
   * `earliest`) on every partition it has none for, so its first member starts there. Kafka keeps an empty group's
   * offsets for the broker's offsets.retention.minutes (7 days by default). A group with live members (Kafka
   * refuses offsets from outside then) already has its position.
   */
  async ensureGroup(type: string, group: string, offset: Offset): Promise<void> {
    checkKafkaType(type);
    checkTypeName(group, 'consumer group');
    await this.ensureType(type);
    try {
      const counts = await this.#partitionCounts([type, retryTopicOf(type)]);
      const [listed] = await this.#admin.listConsumerGroupOffsets({ groups: [group] });
      const committed = new Map<string, Set<number>>();
      for (const topic of listed?.topics ?? []) {
        const done = topic.partitions.filter((p) => p.committedOffset >= 0n).map((p) => p.partitionIndex);
        committed.set(topic.name, new Set(done));
      }
      const topics = [...(await this.#offsets(counts))]
        .map(([name, ranges]) => ({
          name,
          partitionOffsets: ranges
            .map((r, partition) => ({ partition, offset: offset === 'earliest' ? r.start : r.end }))
            .filter((p) => !committed.get(name)?.has(p.partition)),
        }))
        .filter((t) => t.partitionOffsets.length > 0);
      if (topics.length > 0) await this.#admin.alterConsumerGroupOffsets({ groupId: group, topics });
    } catch (error) {
      if (hasKafkaError(error, 'UNKNOWN_MEMBER_ID') || hasKafkaError(error, 'REBALANCE_IN_PROGRESS')) return;
      throw kafkaError(error, 'BUSBAR_ERR_BROKER', `could not create consumer group '${group}' on '${type}'`);
    }
  }

  async purge(type: string): Promise<void> {
    checkKafkaType(type);
    try {
      const counts = await this.#partitionCounts([type, retryTopicOf(type)]);
      if (!counts.has(type)) {
        throw new BusError('BUSBAR_ERR_UNKNOWN_TYPE', `message type '${type}' does not exist: nothing to purge`);
      }
      const offsets = await this.#offsets(counts);
      const topics = [...offsets]
        .map(([name, partitions]) => ({
          name,
          partitions: partitions
            .map((p, partition) => ({ partition, offset: p.end, start: p.start }))
            .filter((p) => p.offset > p.start)
            .map(({ partition, offset }) => ({ partition, offset })),
        }))
        .filter((t) => t.partitions.length > 0);
      if (topics.length > 0) await this.#admin.deleteRecords({ topics });
    } catch (error) {
      throw kafkaError(error, 'BUSBAR_ERR_BROKER', `could not purge message type '${type}'`);
    }
  }

  async stats(type?: string): Promise<TypeStats[]> {
    const named = type === undefined ? undefined : checkKafkaType(type);
    return this.#despiteDeletions(
      async () => {
        const types = named === undefined ? await this.#typeNames() : [named];
        if (types.length === 0) return [];
        const counts = await this.#partitionCounts(types);
        if (named !== undefined && !counts.has(named)) {
          throw new BusError('BUSBAR_ERR_UNKNOWN_TYPE', `message type '${named}' does not exist: register it first`);
        }
        const offsets = await this.#offsets(counts);
        const committed = await this.#committedOffsets([...counts.keys()]);
        const sizes = await this.#sizes(counts);
        return [...counts].map(([name, partitions]) => {
          const ranges = offsets.get(name)!;
          const depth = ranges.reduce((sum, r) => sum + Number(r.end - r.start), 0);
          const groups: GroupStats[] = [...(committed.get(name) ?? new Map())].map(([group, byPartition]) => {
            let unread = 0;
            ranges.forEach((r, partition) => {
              const at = byPartition.get(partition);
              const from = at === undefined || at < r.start ? r.start : at;
              if (r.end > from) unread += Number(r.end - from);
            });
            return { group, unread, inflight: this.#inflight(group, name) ?? -1, oldestAgeMs: null };
          });
          groups.sort((a, b) => a.group.localeCompare(b.group));
          return { type: name, depth, bytes: sizes.get(name) ?? -1, partitions, groups };
        });
      },
      `could not read stats${named ? ` of message type '${named}'` : ''}`,
    );
  }

  /**
   * Runs `read` (which lists the topics afresh) again when a topic it listed was deleted before it read it: that
   * topic is no type any more, and the next listing leaves it out. Bounded: a cluster that deletes topics faster than
   * a read takes still gets an error.
   */
  async #despiteDeletions<T>(read: () => Promise<T>, context: string): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await read();
      } catch (error) {
        if (!topicGone(error) || attempt >= DELETED_MEANWHILE_ATTEMPTS) {
          throw kafkaError(error, 'BUSBAR_ERR_BROKER', context);
        }
      }
    }
  }

  /** topic -> group -> partition -> committed offset, for every consumer group with commits on the topics. */
  async #committedOffsets(topics: string[]): Promise<Map<string, Map<string, Map<number, bigint>>>> {
    const result = new Map<string, Map<string, Map<number, bigint>>>();
    const groups = [...(await this.#admin.listGroups()).keys()];
    if (groups.length === 0) return result;
    const wanted = new Set(topics);
    const listed = await this.#admin.listConsumerGroupOffsets({ groups });
    for (const { groupId, topics: groupTopics } of listed) {
      for (const topic of groupTopics) {
        if (!wanted.has(topic.name)) continue;
        const partitions = new Map<number, bigint>();
        for (const p of topic.partitions)
          if (p.committedOffset >= 0n) partitions.set(p.partitionIndex, p.committedOffset);
        if (partitions.size === 0) continue;
        let byGroup = result.get(topic.name);
        if (!byGroup) {
          byGroup = new Map();
          result.set(topic.name, byGroup);
        }
        byGroup.set(groupId, partitions);
      }
    }
    return result;
  }

  /** Bytes the broker's log directories hold per topic (record batches, headers included); absent if unknown. */
  async #sizes(counts: Map<string, number>): Promise<Map<string, number>> {
    const sizes = new Map<string, number>();
    try {
      const described = await this.#admin.describeLogDirs({
        topics: [...counts].map(([name, count]) => ({ name, partitions: Array.from({ length: count }, (_, i) => i) })),
      });
      for (const broker of described) {
        for (const dir of broker.results) {
          for (const topic of dir.topics) {
            const total = topic.partitions.reduce((sum, p) => sum + Number(p.partitionSize), 0);
            sizes.set(topic.name, (sizes.get(topic.name) ?? 0) + total);
          }
        }
      }
    } catch {
      // Not every cluster lets a client describe log directories: bytes are then unknown (-1).
      sizes.clear();
    }
    return sizes;
  }
}
