/**
 * The group leader's partition assignment, aware of what each member subscribed to: busbar members of one group
 * may read different types, and a partition must only go to a member that asked for its topic (the client's
 * default round-robin ignores subscriptions). Partitions of each topic go round-robin over its subscribers,
 * continuing where the previous topic stopped so single-partition topics spread over the members — the same
 * contract as Kafka's own `roundrobin` strategy, whose protocol name it keeps.
 */
import type { GroupPartitionsAssigner, GroupPartitionsAssignments } from '@platformatic/kafka';

export const subscriptionAwareAssigner: GroupPartitionsAssigner = (_current, members, leaderTopics, metadata) => {
  // The client hands the leader's own topics only; the other members may have asked for more.
  const topics = new Set(leaderTopics);
  for (const member of members.values()) for (const topic of member.topics ?? []) topics.add(topic);
  const result = new Map<string, GroupPartitionsAssignments>();
  const memberIds = [...members.keys()].sort();
  for (const id of memberIds) result.set(id, { memberId: id, assignments: new Map() });
  let turn = 0;
  for (const topic of [...topics].sort()) {
    const subscribers = memberIds.filter((id) => members.get(id)?.topics?.includes(topic) ?? false);
    const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
    if (subscribers.length === 0) continue;
    for (let partition = 0; partition < count; partition++) {
      const member = result.get(subscribers[turn++ % subscribers.length]!)!;
      let assignment = member.assignments.get(topic);
      if (!assignment) {
        assignment = { topic, partitions: [] };
        member.assignments.set(topic, assignment);
      }
      assignment.partitions.push(partition);
    }
  }
  return [...result.values()];
};
