/**
 * Adopting the session of a group member that left. Mosquitto keeps routing a shared subscription's messages to
 * every subscribed session, connected or not, and only that session's own client id can read them. So when a member
 * closes or dies, a live member of the group connects with the departed member's client id, stops its
 * subscriptions, hands everything it holds back to the group (republished on the group's redelivery topic, then
 * PUBACKed) and ends the session. A marker published to a private topic of that session tells when its queue is
 * empty: the broker delivers a session's messages in order.
 *
 * Only one adopter may hold a session at a time: a second one connecting with the same client id takes the session
 * over, and the broker resends it what the first had received but not yet PUBACKed, so everything the first had just
 * handed back would be handed back (and handled) twice. The adopter therefore claims the session first, replacing its
 * member record with an `adopting` one that it refreshes while it drains, and leaves a Will that puts the `offline`
 * record back if its connection is lost before it is done. Members adopt `offline` sessions only, and take over a
 * claim only when it has not been refreshed for the fallback time (its adopter died with the broker, say).
 */
import { randomUUID } from 'node:crypto';
import type { IPublishPacket, MqttClient } from 'mqtt';
import { bufferOf, endClient, openClient, puback, publishConfirmed } from './connection.ts';
import type { MqttSettings } from './options.ts';
import { fromPacket, publishProperties, type Topics } from './wire.ts';

/** An adopter refreshes its claim this often; members take a claim over after 10-20 s without a refresh. */
const CLAIM_REFRESH_MS = 3000;

export interface MemberRecord {
  readonly state: 'online' | 'offline' | 'adopting';
  readonly types: readonly string[];
  readonly consumerId: string;
  readonly at: string;
}

export function parseMemberRecord(payload: Buffer): MemberRecord | undefined {
  if (payload.length === 0) return undefined;
  try {
    const record = JSON.parse(payload.toString('utf8')) as MemberRecord;
    return Array.isArray(record.types) && ['online', 'offline', 'adopting'].includes(record.state) ? record : undefined;
  } catch {
    return undefined;
  }
}

export function memberPayload(state: MemberRecord['state'], types: readonly string[], consumerId: string): string {
  return JSON.stringify({ state, types, consumerId, at: new Date().toISOString() } satisfies MemberRecord);
}

/** Drains and ends the session `session` of `group`. Resolves true when done, false when it could not finish. */
export async function adoptSession(
  settings: MqttSettings,
  topics: Topics,
  group: string,
  session: string,
  record: MemberRecord,
): Promise<boolean> {
  const marker = randomUUID();
  const pending = new Set<Promise<void>>();
  let markerSeen: () => void = () => {};
  const drained = new Promise<void>((resolve) => {
    markerSeen = resolve;
  });
  let failed = false;
  let client: MqttClient | undefined;
  const handBack = async (packet: IPublishPacket, messageId: number, current: MqttClient) => {
    const type = topics.typeOf(packet.topic);
    if (type !== undefined) {
      const { message, attempt, notBefore } = fromPacket(packet, type);
      await publishConfirmed(
        current,
        topics.redeliveries(group, type),
        bufferOf(message.body),
        { properties: publishProperties(message, { attempt, notBefore: notBefore || undefined }) },
        settings.publishTimeoutMs,
        () => true,
      );
    }
    puback(current, messageId);
  };
  const opened = openClient(
    settings.client,
    {
      clientId: session,
      clean: false,
      reconnectPeriod: 0,
      properties: { sessionExpiryInterval: settings.sessionExpirySec, receiveMaximum: 100 },
      will: {
        topic: topics.member(group, session),
        payload: Buffer.from(memberPayload('offline', record.types, record.consumerId)),
        qos: 1,
        retain: true,
        properties: { willDelayInterval: 0, messageExpiryInterval: settings.sessionExpirySec },
      },
    },
    (packet) => {
      if (packet.topic === topics.marker(session)) {
        if (packet.payload.toString() === marker) markerSeen();
        puback(client!, packet.messageId!);
        return;
      }
      const work = handBack(packet, packet.messageId!, client!).catch(() => {
        failed = true;
      });
      pending.add(work);
      void work.finally(() => pending.delete(work));
    },
  );
  client = opened.client;
  const lost = new Promise<void>((resolve) => client.once('close', resolve));
  const claim = () =>
    publishConfirmed(
      client,
      topics.member(group, session),
      memberPayload('adopting', record.types, record.consumerId),
      { retain: true, properties: { messageExpiryInterval: settings.sessionExpirySec } },
      settings.publishTimeoutMs,
    );
  let refresh: NodeJS.Timeout | undefined;
  try {
    await opened.connected;
    await claim();
    refresh = setInterval(() => void claim().catch(() => {}), CLAIM_REFRESH_MS);
    const filters = record.types.flatMap((type) => [
      topics.shared(group, topics.messages(type)),
      topics.shared(group, topics.redeliveries(group, type)),
    ]);
    if (filters.length) await client.unsubscribeAsync(filters);
    await client.subscribeAsync(topics.marker(session), { qos: 1 });
    await publishConfirmed(client, topics.marker(session), marker, {}, settings.publishTimeoutMs);
    await Promise.race([drained, lost]);
    await Promise.all(pending);
    // No refresh may land after the record is cleared below.
    clearInterval(refresh);
    if (failed || !client.connected) return false;
    await publishConfirmed(client, topics.member(group, session), '', { retain: true }, settings.publishTimeoutMs);
    await endClient(client, { sessionExpiryInterval: 0 });
    return true;
  } catch {
    return false;
  } finally {
    clearInterval(refresh);
    // A connection dropped here publishes the Will: the session is offline again, for a member to adopt.
    if (!client.disconnected) await client.endAsync(true).catch(() => {});
  }
}
