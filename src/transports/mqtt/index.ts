/**
 * `mqtt://host:1883` / `mqtts://host:8883` — MQTT 5 (written against Mosquitto 2) through MQTT.js. Topic
 * `busbar/<type>`, QoS 1, consumer groups as shared subscriptions of persistent sessions; see docs/wire/mqtt.md.
 */
import type { IPublishPacket, MqttClient } from 'mqtt';
import { BusError, checkTypeName } from '../../errors.ts';
import type {
  Capabilities,
  ConsumeOptions,
  Retention,
  Subscription,
  Transport,
  TransportAdmin,
  TransportConfig,
  TransportFactory,
  TransportMessage,
  TypeInfo,
  TypeOptions,
  TypeStats,
} from '../../transport/contract.ts';
import { type MemberRecord, memberPayload, parseMemberRecord } from './adoption.ts';
import { bufferOf, endClient, newSessionId, openClient, puback, publishConfirmed } from './connection.ts';
import { type MqttSettings, resolveSettings } from './options.ts';
import { MqttSubscription } from './subscription.ts';
import { publishProperties, Topics } from './wire.ts';

export const MQTT_CAPABILITIES: Capabilities = Object.freeze({
  // Retained messages are not a log: a new group sees only what is published after it subscribed.
  replay: false,
  // Shared subscriptions spread a group's messages over its members with no regard to keys.
  ordering: 'none',
  // MQTT has no nack: the transport republishes on the group's redelivery topic (with a not-before time for a delay).
  nackDelay: 'emulated',
  ackTimeout: 'emulated',
  partitions: false,
  // Message Expiry Interval on every publish after setRetention; nothing bounds a topic by bytes.
  retention: Object.freeze({ age: true, bytes: false }),
  purge: false,
  lag: false,
  // With `persistence true` in mosquitto.conf (this machine's setting) sessions and queued messages survive a restart.
  persistence: true,
  // A member session that subscribes and leaves at once: the broker queues the group's messages in it, and the
  // group's first member adopts it as it adopts any departed member's session.
  createGroup: true,
});

/** How long after a reconnect a publish that reached no subscriber is suspect (see #mayHaveLostSubscriptions). */
const RESUBSCRIBE_GRACE_MS = 60_000;
const UNROUTED_RETRY_MS = 200;

interface TypeRecord {
  readonly retention: Retention;
}

function unsupported(what: string, instead: string): BusError {
  return new BusError('BUSBAR_ERR_UNSUPPORTED', `MQTT cannot ${what}: ${instead}`);
}

class MqttTransport implements Transport {
  readonly name = 'mqtt';
  readonly capabilities = MQTT_CAPABILITIES;
  readonly admin: TransportAdmin;
  readonly #settings: MqttSettings;
  readonly #topics: Topics;
  readonly #client: MqttClient;
  readonly #session: string;
  readonly #types = new Map<string, TypeRecord>();
  readonly #members = new Map<string, MemberRecord>();
  readonly #subscriptions = new Set<MqttSubscription>();
  readonly #markers = new Map<string, () => void>();
  #closing: Promise<void> | undefined;
  #reconnectedAt = Number.NEGATIVE_INFINITY;

  constructor(settings: MqttSettings, client: MqttClient, session: string) {
    this.#settings = settings;
    this.#topics = new Topics(settings.topicPrefix);
    this.#client = client;
    this.#session = session;
    this.admin = {
      ensureType: (type, options) => this.#ensureType(type, options),
      deleteType: (type) => this.#deleteType(type),
      listTypes: () => this.#listTypes(),
      setPartitions: (type, partitions) => this.#setPartitions(type, partitions),
      setRetention: (type, retention) => this.#setRetention(type, retention),
      purge: async (type) => {
        checkTypeName(type);
        throw unsupported(
          'purge a type',
          'the broker keeps queued messages in each consumer session; consume and ack them, or delete the sessions on the broker',
        );
      },
      stats: (type) => this.#stats(type),
      ensureGroup: (type, group) => this.#ensureGroup(type, group),
    };
  }

  /**
   * A group before its first member: a session of the group subscribes to the type (QoS 1, persistent) and leaves
   * with an `offline` member record. The broker keeps the group's share of each message in it (never PUBACKed here)
   * until the first member adopts the session and hands them back on the group's redelivery topic. MQTT keeps no log,
   * so `earliest` and `latest` both start now. Calling it again adds another such session: harmless, since a shared
   * subscription gives each message to one session of the group only.
   */
  async #ensureGroup(type: string, group: string): Promise<void> {
    checkTypeName(group, 'consumer group');
    await this.#ensureType(type);
    const settings = this.#settings;
    const session = newSessionId('busbar', group, 'created');
    const { client, connected } = openClient(
      settings.client,
      {
        clientId: session,
        clean: false,
        reconnectPeriod: 0,
        properties: { sessionExpiryInterval: settings.sessionExpirySec },
      },
      // Messages arriving while this session is connected stay unacknowledged in it, for the adopter.
      () => {},
    );
    try {
      await connected;
      const filters = {
        [this.#topics.shared(group, this.#topics.messages(type))]: { qos: 1 as const },
        [this.#topics.shared(group, this.#topics.redeliveries(group, type))]: { qos: 1 as const },
      };
      const granted = await client.subscribeAsync(filters);
      const refused = granted.filter((g) => g.qos === 128).map((g) => g.topic);
      if (refused.length) {
        throw new BusError(
          'BUSBAR_ERR_FORBIDDEN',
          `the MQTT broker refused the subscriptions ${refused.join(', ')}: check its ACL`,
        );
      }
      await publishConfirmed(
        client,
        this.#topics.member(group, session),
        memberPayload('offline', [type], 'admin.createConsumerGroup'),
        { retain: true, properties: { messageExpiryInterval: settings.sessionExpirySec } },
        settings.publishTimeoutMs,
      );
    } finally {
      await endClient(client).catch(() => {});
    }
  }

  /** Called for every PUBLISH on the transport's own client: registry records and sync markers. */
  onPublish(packet: IPublishPacket): void {
    const { topic } = packet;
    const payload = packet.payload as Buffer;
    const name = topic.slice(topic.lastIndexOf('/') + 1);
    if (topic === this.#topics.typeRecord(name)) {
      if (payload.length === 0) this.#types.delete(name);
      else this.#types.set(name, parseTypeRecord(payload));
    } else if (topic.startsWith(`${this.#topics.prefix}/_members/`)) {
      const group = topic.split('/').at(-2)!;
      const record = parseMemberRecord(payload);
      if (record) this.#members.set(`${group}/${name}`, record);
      else this.#members.delete(`${group}/${name}`);
    } else if (topic === this.#topics.marker(this.#session)) {
      const marker = payload.toString();
      this.#markers.get(marker)?.();
      this.#markers.delete(marker);
    }
    if (packet.qos > 0) puback(this.#client, packet.messageId!);
  }

  /** Subscribes to the registries; resolves once their retained records have all arrived. */
  async start(): Promise<void> {
    // A clean session has no subscriptions after a reconnect: subscribe again every time.
    // On CONNACK, not 'connect': MQTT.js emits 'connect' only after resending its stored publishes.
    this.#client.on('packetreceive', (packet) => {
      if (packet.cmd !== 'connack') return;
      this.#reconnectedAt = Date.now();
      void this.#subscribe().catch(() => {});
    });
    await this.#subscribe();
    await this.#sync();
  }

  async #subscribe(): Promise<void> {
    await this.#client.subscribeAsync({
      [this.#topics.typeRecords()]: { qos: 1 },
      [this.#topics.members()]: { qos: 1 },
      [this.#topics.marker(this.#session)]: { qos: 1 },
    });
  }

  /** Resolves once everything the broker queued for this client before now has been received. */
  async #sync(): Promise<void> {
    const marker = newSessionId('sync');
    const timeoutMs = this.#settings.publishTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const seen = new Promise<void>((resolve, reject) => {
      this.#markers.set(marker, resolve);
      timer = setTimeout(() => {
        this.#markers.delete(marker);
        reject(
          new BusError(
            'BUSBAR_ERR_TIMEOUT',
            `the MQTT broker did not answer a registry query within ${timeoutMs} ms (is it reachable?); try again`,
          ),
        );
      }, timeoutMs);
    });
    try {
      await publishConfirmed(this.#client, this.#topics.marker(this.#session), marker, {}, timeoutMs);
      await seen;
    } finally {
      clearTimeout(timer);
    }
  }

  #checkOpen(): void {
    if (this.#closing) throw new BusError('BUSBAR_ERR_CLOSED', 'the mqtt transport is closed: connect a new bus');
  }

  async publish(type: string, batch: readonly TransportMessage[]): Promise<void> {
    this.#checkOpen();
    checkTypeName(type);
    if (!this.#types.has(type)) await this.#ensureType(type);
    const maxAgeMs = this.#types.get(type)?.retention.maxAgeMs;
    const expirySec = maxAgeMs === undefined ? undefined : Math.max(1, Math.ceil(maxAgeMs / 1000));
    const topic = this.#topics.messages(type);
    const results = await Promise.allSettled(batch.map((message) => this.#publishOne(topic, type, message, expirySec)));
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length === 0) return;
    const first = failed[0]!.reason as BusError;
    throw new BusError(
      first.code ?? 'BUSBAR_ERR_PUBLISH',
      `${failed.length} of ${batch.length} messages were not confirmed by the MQTT broker (${first.message})`,
      {
        cause: failed.length === 1 ? first : new AggregateError(failed.map((f) => f.reason)),
        retryable: first.retryable ?? true,
      },
    );
  }

  /** Publishes one message; one that reached no group just after a reconnect is sent again until the groups are back. */
  async #publishOne(
    topic: string,
    type: string,
    message: TransportMessage,
    expirySec: number | undefined,
  ): Promise<void> {
    const deadline = Date.now() + this.#settings.publishTimeoutMs;
    for (;;) {
      try {
        await publishConfirmed(
          this.#client,
          topic,
          bufferOf(message.body),
          { properties: publishProperties(message, { expirySec }) },
          Math.max(1, deadline - Date.now()),
          () => this.#mayHaveLostSubscriptions(type),
        );
        return;
      } catch (error) {
        const unrouted = (error as BusError).details?.unrouted === true;
        if (!unrouted || this.#closing || Date.now() + UNROUTED_RETRY_MS > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, UNROUTED_RETRY_MS));
      }
    }
  }

  /**
   * Mosquitto 2.0 restores persistent sessions from its persistence file but not their shared subscriptions; a
   * group is back only when a member reconnects and subscribes again. Shortly after a reconnect, a publish that
   * matched no subscription while the type has group members fails retryably instead of vanishing.
   */
  #mayHaveLostSubscriptions(type: string): boolean {
    if (Date.now() - this.#reconnectedAt > RESUBSCRIBE_GRACE_MS) return false;
    for (const record of this.#members.values()) if (record.types.includes(type)) return true;
    return false;
  }

  consume(options: ConsumeOptions): Subscription {
    this.#checkOpen();
    checkTypeName(options.group, 'consumer group');
    for (const type of options.types) checkTypeName(type);
    const subscription = new MqttSubscription(this.#settings, this.#topics, options, (s) =>
      this.#subscriptions.delete(s),
    );
    this.#subscriptions.add(subscription);
    void Promise.all(options.types.filter((t) => !this.#types.has(t)).map((t) => this.#ensureType(t))).catch(() => {});
    return subscription;
  }

  async #writeType(type: string, record: TypeRecord | undefined): Promise<void> {
    this.#checkOpen();
    await publishConfirmed(
      this.#client,
      this.#topics.typeRecord(type),
      record ? JSON.stringify(record) : '',
      { retain: true },
      this.#settings.publishTimeoutMs,
    );
    if (record) this.#types.set(type, record);
    else this.#types.delete(type);
  }

  async #ensureType(type: string, options: TypeOptions = {}): Promise<void> {
    checkTypeName(type);
    if ((options.partitions ?? 1) > 1) {
      throw unsupported('partition a type', 'leave partitions unset; add consumers to a group to share its load');
    }
    if (!this.#types.has(type)) await this.#writeType(type, { retention: {} });
  }

  async #deleteType(type: string): Promise<void> {
    checkTypeName(type);
    await this.#writeType(type, undefined);
  }

  async #listTypes(): Promise<TypeInfo[]> {
    this.#checkOpen();
    await this.#sync();
    return [...this.#types]
      .map(([type, record]) => ({ type, partitions: 1, retention: record.retention }))
      .sort((a, b) => a.type.localeCompare(b.type));
  }

  async #setPartitions(type: string, partitions: number): Promise<void> {
    checkTypeName(type);
    if (partitions < 1)
      throw new BusError('BUSBAR_ERR_PARTITIONS', `MQTT types have exactly 1 partition; ${partitions} is not possible`);
    await this.#ensureType(type, { partitions });
  }

  async #setRetention(type: string, retention: Retention): Promise<void> {
    checkTypeName(type);
    if (retention.maxBytes !== undefined) {
      throw unsupported(
        'bound a type by bytes',
        'set max_queued_bytes / max_queued_messages in mosquitto.conf to bound each consumer session instead',
      );
    }
    await this.#writeType(type, {
      retention: retention.maxAgeMs === undefined ? {} : { maxAgeMs: retention.maxAgeMs },
    });
  }

  async #stats(type?: string): Promise<TypeStats[]> {
    this.#checkOpen();
    await this.#sync();
    const types = type === undefined ? [...this.#types.keys()].sort() : [checkTypeName(type)];
    return types.map((t) => {
      const groups = new Set<string>();
      for (const [key, record] of this.#members)
        if (record.types.includes(t)) groups.add(key.slice(0, key.indexOf('/')));
      return {
        type: t,
        depth: -1,
        bytes: -1,
        partitions: 1,
        groups: [...groups].sort().map((group) => ({ group, unread: -1, inflight: -1, oldestAgeMs: null })),
      };
    });
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#subscriptions].map((s) => s.close()));
      await endClient(this.#client).catch(() => {});
    })();
    return this.#closing;
  }
}

function parseTypeRecord(payload: Buffer): TypeRecord {
  try {
    const parsed = JSON.parse(payload.toString('utf8')) as Partial<TypeRecord>;
    return { retention: parsed.retention ?? {} };
  } catch {
    return { retention: {} };
  }
}

const createMqttTransport: TransportFactory = async (config: TransportConfig) => {
  const settings = resolveSettings(config);
  const session = newSessionId('busbar', 'client');
  let transport: MqttTransport | undefined;
  const { client, connected } = openClient(settings.client, { clientId: session, clean: true }, (packet) =>
    transport?.onPublish(packet),
  );
  transport = new MqttTransport(settings, client, session);
  await connected;
  try {
    await transport.start();
  } catch (error) {
    await transport.close();
    throw error;
  }
  return transport;
};

export default createMqttTransport;
