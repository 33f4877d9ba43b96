/**
 * Fixing where a new group starts. Kafka only remembers a group's position once it commits one; until then a
 * member that rejoins asks `latest` again and would skip what was published meanwhile. So the start position the
 * fetch stream chose is committed at once for every assigned partition that has no committed offset yet.
 */
import type { CommitOptionsPartition, Consumer, MessagesStream } from '@platformatic/kafka';

type Member = Consumer<Buffer, Buffer, Buffer, Buffer>;
type Stream = MessagesStream<Buffer, Buffer, Buffer, Buffer>;

/**
 * The positions the stream is about to fetch the assigned partitions from. Read synchronously in its 'offsets'
 * event: later, fetched records move them past messages not yet delivered.
 */
export function startPositions(consumer: Member, stream: Stream): Map<string, bigint> {
  const start = new Map<string, bigint>();
  for (const { topic, partitions } of consumer.assignments ?? []) {
    for (const partition of partitions) {
      const at = stream.offsetsToFetch.get(`${topic}:${partition}`);
      if (at !== undefined) start.set(`${topic}:${partition}`, at);
    }
  }
  return start;
}

/** Commits `start` for the assigned partitions without a committed offset; failures leave the broker's default. */
export async function commitStartPositions(consumer: Member, start: Map<string, bigint>): Promise<void> {
  const assignments = consumer.assignments ?? [];
  if (assignments.length === 0 || start.size === 0) return;
  try {
    const committed = await consumer.listCommittedOffsets({ topics: assignments });
    const offsets: CommitOptionsPartition[] = [];
    for (const { topic, partitions } of assignments) {
      const known = committed.get(topic) ?? [];
      for (const partition of partitions) {
        const at = start.get(`${topic}:${partition}`);
        if (at !== undefined && (known[partition] ?? -1n) < 0n) {
          offsets.push({ topic, partition, offset: at, leaderEpoch: -1 });
        }
      }
    }
    if (offsets.length > 0) await consumer.commit({ offsets });
  } catch {
    // The group then starts where the broker says on its next join: at worst `latest` moves on.
  }
}
