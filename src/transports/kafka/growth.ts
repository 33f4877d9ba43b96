/**
 * Noticing that a subscribed topic grew partitions while the group runs. Kafka's classic group protocol assigns the
 * partitions that exist when the group rebalances; a group whose members stay put never rebalances, so new
 * partitions would wait unread until a member joins or leaves. As in Kafka's Java client (metadata.max.age.ms), the
 * group's leader refreshes the topics' metadata every `partitionCheckMs` and, when a partition count grew, first
 * commits the new partitions' earliest offsets for the group (so an `offset: latest` group does not skip what was
 * written to them before it reads them), then rejoins: a leader's JoinGroup makes the coordinator rebalance the
 * whole group, and the assignment then covers the new partitions.
 */
import type { CommitOptionsPartition, Consumer } from '@platformatic/kafka';

type Member = Consumer<Buffer, Buffer, Buffer, Buffer>;

/** Partition count per topic. */
export type PartitionCounts = Map<string, number>;

export async function partitionCounts(consumer: Member, topics: string[], fresh: boolean): Promise<PartitionCounts> {
  const metadata = await consumer.metadata({ topics, forceUpdate: fresh });
  const counts: PartitionCounts = new Map();
  for (const topic of topics) {
    const info = metadata.topics.get(topic);
    if (info) counts.set(topic, info.partitionsCount);
  }
  return counts;
}

/** The partitions in `now` beyond those in `before`, per topic (empty when nothing grew). */
export function grownPartitions(before: PartitionCounts, now: PartitionCounts): Map<string, number[]> {
  const grown = new Map<string, number[]>();
  for (const [topic, count] of now) {
    const was = before.get(topic);
    if (was === undefined || count <= was) continue;
    const partitions: number[] = [];
    for (let p = was; p < count; p++) partitions.push(p);
    grown.set(topic, partitions);
  }
  return grown;
}

/**
 * Commits the earliest offset of each new partition the group has no committed offset for yet, so the member that
 * gets it reads it from its start whatever the group's start option. Failures are left to the member's own start.
 */
export async function startNewPartitionsAtEarliest(consumer: Member, grown: Map<string, number[]>): Promise<void> {
  const topics = [...grown.keys()];
  const assignments = topics.map((topic) => ({ topic, partitions: grown.get(topic)! }));
  const [earliest, committed] = await Promise.all([
    consumer.listOffsets({ topics, timestamp: -2n }),
    consumer.listCommittedOffsets({ topics: assignments }),
  ]);
  const offsets: CommitOptionsPartition[] = [];
  for (const { topic, partitions } of assignments) {
    const starts = earliest.get(topic) ?? [];
    const known = committed.get(topic) ?? [];
    for (const partition of partitions) {
      const at = starts[partition];
      if (at !== undefined && (known[partition] ?? -1n) < 0n)
        offsets.push({ topic, partition, offset: at, leaderEpoch: -1 });
    }
  }
  if (offsets.length > 0) await consumer.commit({ offsets });
}
