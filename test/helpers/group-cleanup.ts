/**
 * Removing consumer-group state a test run leaves on a shared broker beyond its types, which the transport's admin
 * API cannot delete: Kafka consumer groups, and MQTT group members' persistent sessions with their retained member
 * records (docs/wire/mqtt.md). Both would go away by themselves (Kafka drops empty groups without offsets on its
 * periodic offsets cleanup; MQTT sessions and offline records expire after sessionExpirySec), just not at once.
 * Only the named groups are touched; run these after every bus of the run closed.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Admin } from '@platformatic/kafka';
import mqtt from 'mqtt';
import { resolveConfig } from '../../src/index.ts';
import { kafkaSettings } from '../../src/transports/kafka/options.ts';
import { resolveSettings } from '../../src/transports/mqtt/options.ts';

/** Deletes those of `groups` that exist on the Kafka cluster at `url`. */
export async function deleteKafkaGroups(url: string, groups: readonly string[]): Promise<void> {
  if (groups.length === 0) return;
  const settings = kafkaSettings(resolveConfig({ broker: url }).transport);
  const admin = new Admin({
    clientId: `busbar-test-cleanup-${randomUUID().slice(0, 8)}`,
    bootstrapBrokers: [...settings.bootstrapBrokers],
    ...(settings.tls ? { tls: settings.tls } : {}),
    ...(settings.sasl ? { sasl: settings.sasl } : {}),
  });
  try {
    const existing = await admin.listGroups();
    const ours = groups.filter((group) => existing.has(group));
    // A member that just left may still be listed for a moment (NON_EMPTY_GROUP): try again shortly.
    for (let attempt = 1; ours.length > 0; attempt++) {
      try {
        await admin.deleteGroups({ groups: ours });
        return;
      } catch (error) {
        if (attempt >= 10) throw error;
        await sleep(500);
        const now = await admin.listGroups();
        ours.splice(0, ours.length, ...ours.filter((group) => now.has(group)));
      }
    }
  } finally {
    await admin.close();
  }
}

/**
 * Ends the persistent sessions of the members of `groups` on the MQTT broker at `url` and clears their retained
 * member records: connects once as each session with a clean start and no session expiry, then disconnects.
 */
export async function endMqttGroupSessions(url: string, groups: readonly string[]): Promise<void> {
  if (groups.length === 0) return;
  const settings = resolveSettings(resolveConfig({ broker: url }).transport);
  const wanted = new Set(groups);
  const members = `${settings.topicPrefix}/_members/`;
  const clientId = `busbar-test-cleanup-${randomUUID()}`;
  const marker = `${settings.topicPrefix}/_marker/${clientId}`;
  const client = await mqtt.connectAsync({ ...settings.client, clientId, clean: true, reconnectPeriod: 0 });
  try {
    const records = new Set<string>();
    let markerSeen = () => {};
    let timer: NodeJS.Timeout | undefined;
    const seen = new Promise<void>((resolve, reject) => {
      markerSeen = resolve;
      timer = setTimeout(() => reject(new Error('the MQTT broker did not send back the cleanup marker')), 10_000);
    });
    client.on('message', (topic, payload) => {
      if (topic === marker) markerSeen();
      else if (topic.startsWith(members) && payload.length > 0) {
        if (wanted.has(topic.slice(members.length).split('/')[0]!)) records.add(topic);
      }
    });
    await client.subscribeAsync([`${members}+/+`, marker], { qos: 1 });
    // The broker sends this client the retained records before a message published after subscribing.
    await client.publishAsync(marker, 'synced', { qos: 1 });
    await seen.finally(() => clearTimeout(timer));
    for (const topic of records) {
      const session = await mqtt.connectAsync({
        ...settings.client,
        clientId: topic.slice(topic.lastIndexOf('/') + 1),
        clean: true,
        reconnectPeriod: 0,
        properties: { sessionExpiryInterval: 0 },
      });
      await session.endAsync();
      await client.publishAsync(topic, '', { qos: 1, retain: true });
    }
  } finally {
    await client.endAsync();
  }
}
