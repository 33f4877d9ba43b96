/**
 * A member of a consumer group: one MQTT client with its own persistent session, subscribed with shared
 * subscriptions to the types' topics and to the group's redelivery topics. PUBACKs wait for the application's ack
 * (busbar sends them itself, so a slow handler never stalls the connection); nack, the ack timeout and adoption
 * of departed members' sessions hand messages back to the group by republishing them on its redelivery topic
 * before the PUBACK, so a crash in between yields a duplicate, never a loss.
 */
import type { IPublishPacket, MqttClient } from 'mqtt';
import { BusError } from '../../errors.ts';
import type {
  ConsumeOptions,
  Delivery,
  NackOptions,
  Subscription,
  TransportMessage,
} from '../../transport/contract.ts';
import { DeliveryQueue } from '../../transport/queue.ts';
import { LeaseSweeper } from '../../transport/sweeper.ts';
import { adoptSession, type MemberRecord, memberPayload, parseMemberRecord } from './adoption.ts';
import { bufferOf, endClient, newSessionId, openClient, puback, publishConfirmed } from './connection.ts';
import type { MqttSettings } from './options.ts';
import { fromPacket, publishProperties, type Topics } from './wire.ts';

/** Wait this long after the group's member records change before adopting, so every record is seen first. */
const ADOPT_SETTLE_MS = 150;
const ADOPT_RETRY_MS = 3000;
const ADOPT_FALLBACK_MS = 10_000;
const HAND_BACK_RETRY_MS = 1000;
const CLOSE_WAIT_MS = 2000;

class MqttDelivery implements Delivery {
  readonly message: TransportMessage;
  readonly attempt: number;
  readonly topicType: string;
  readonly messageId: number;
  readonly connection: number;
  settled = false;
  /** Set when the delivery is queued for the application: its ack timer starts then. */
  leaseUntil = Number.POSITIVE_INFINITY;
  readonly #owner: MqttSubscription;

  constructor(
    owner: MqttSubscription,
    message: TransportMessage,
    attempt: number,
    topicType: string,
    messageId: number,
    connection: number,
  ) {
    this.#owner = owner;
    this.message = message;
    this.attempt = attempt;
    this.topicType = topicType;
    this.messageId = messageId;
    this.connection = connection;
  }

  async ack(): Promise<void> {
    if (this.#owner.settle(this)) this.#owner.acknowledge(this);
  }

  async nack(options: NackOptions = {}): Promise<void> {
    if (!this.#owner.settle(this)) return;
    const delayMs = options.delayMs ?? 0;
    await this.#owner.handBack(this, delayMs > 0 ? Date.now() + delayMs : undefined);
  }
}

export class MqttSubscription implements Subscription {
  readonly ready: Promise<void>;
  readonly #settings: MqttSettings;
  readonly #topics: Topics;
  readonly #options: ConsumeOptions;
  readonly #session: string;
  readonly #client: MqttClient;
  readonly #queue = new DeliveryQueue({ onLeave: () => this.close() });
  /** Deliveries of the current connection not yet settled (queued, handed out, or waiting for a not-before time). */
  readonly #open = new Set<MqttDelivery>();
  /** The handed-out deliveries of #open: the emulated ack timeout hands one left open past its lease back. */
  readonly #leases = new LeaseSweeper<MqttDelivery>((delivery) => {
    if (this.settle(delivery)) void this.handBack(delivery);
  });
  readonly #waiting = new Set<NodeJS.Timeout>();
  readonly #members = new Map<string, MemberRecord>();
  readonly #adopting = new Set<string>();
  /** When this member first saw each departed session's offline record, or last saw its adoption claim refreshed. */
  readonly #offlineSince = new Map<string, number>();
  /** Spread over members so that they do not all fall back at once. */
  readonly #fallbackMs = ADOPT_FALLBACK_MS + Math.floor(Math.random() * ADOPT_FALLBACK_MS);
  readonly #handingBack = new Set<Promise<void>>();
  readonly #onAbort = () => void this.close();
  readonly #onClosed: (subscription: MqttSubscription) => void;
  #connection = 0;
  #adoptTimer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;

  constructor(
    settings: MqttSettings,
    topics: Topics,
    options: ConsumeOptions,
    onClosed: (s: MqttSubscription) => void,
  ) {
    this.#settings = settings;
    this.#topics = topics;
    this.#options = options;
    this.#onClosed = onClosed;
    this.#session = newSessionId('busbar', options.group, options.consumerId);
    const offline = memberPayload('offline', options.types, options.consumerId);
    const { client, connected } = openClient(
      settings.client,
      {
        clientId: this.#session,
        clean: false,
        properties: {
          sessionExpiryInterval: settings.sessionExpirySec,
          receiveMaximum: Math.min(65_535, Math.max(1, Math.floor(options.prefetch))),
        },
        will: {
          topic: topics.member(options.group, this.#session),
          payload: Buffer.from(offline),
          qos: 1,
          retain: true,
          // An offline record lives as long as the session it describes, then the broker drops it.
          properties: { willDelayInterval: settings.willDelaySec, messageExpiryInterval: settings.sessionExpirySec },
        },
      },
      (packet) => this.#onPublish(packet),
    );
    this.#client = client;
    // Count connections on CONNACK: MQTT.js emits 'connect' only after resending its stored publishes, and the
    // broker may resend this session's unacknowledged messages before that.
    client.on('packetreceive', (packet) => {
      if (packet.cmd !== 'connack') return;
      this.#connection++;
      if (this.#connection > 1) void this.#attach().catch(() => {});
    });
    client.on('close', () => this.#dropConnection());
    this.ready = connected.then(() => this.#attach());
    this.ready.catch((error) => {
      this.#queue.end(error);
      void this.close();
    });
    if (options.signal?.aborted) void this.close();
    else options.signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Subscribes (again, after a reconnect: a session the broker lost has no subscriptions) and announces the member. */
  async #attach(): Promise<void> {
    const { group, types } = this.#options;
    const filters: Record<string, { qos: 1 }> = { [this.#topics.members(group)]: { qos: 1 } };
    for (const type of types) {
      filters[this.#topics.shared(group, this.#topics.messages(type))] = { qos: 1 };
      filters[this.#topics.shared(group, this.#topics.redeliveries(group, type))] = { qos: 1 };
    }
    const granted = await this.#client.subscribeAsync(filters);
    const refused = granted.filter((g) => g.qos === 128).map((g) => g.topic);
    if (refused.length) {
      throw new BusError(
        'BUSBAR_ERR_FORBIDDEN',
        `the MQTT broker refused the subscriptions ${refused.join(', ')}: check its ACL`,
      );
    }
    await publishConfirmed(
      this.#client,
      this.#topics.member(group, this.#session),
      memberPayload('online', types, this.#options.consumerId),
      { retain: true },
      this.#settings.publishTimeoutMs,
    );
  }

  #onPublish(packet: IPublishPacket): void {
    const messageId = packet.messageId ?? 0;
    if (packet.topic.startsWith(`${this.#topics.prefix}/_members/`)) {
      this.#onMemberRecord(packet);
      if (packet.qos > 0) puback(this.#client, messageId);
      return;
    }
    // While closing, leave new arrivals unacknowledged in the session: whoever adopts it hands them back.
    if (this.#closing) return;
    const type = this.#topics.typeOf(packet.topic);
    if (type === undefined || packet.qos === 0) {
      if (packet.qos > 0) puback(this.#client, messageId);
      return;
    }
    const { message, attempt, notBefore } = fromPacket(packet, type);
    const delivery = new MqttDelivery(this, message, attempt, type, messageId, this.#connection);
    this.#open.add(delivery);
    const wait = notBefore - Date.now();
    if (wait <= 0) {
      this.#hand(delivery);
      return;
    }
    const timer = setTimeout(() => {
      this.#waiting.delete(timer);
      if (!delivery.settled) this.#hand(delivery);
    }, wait);
    this.#waiting.add(timer);
  }

  #hand(delivery: MqttDelivery): void {
    delivery.leaseUntil = Date.now() + this.#options.ackTimeoutMs;
    this.#leases.add(delivery);
    this.#queue.push(delivery);
  }

  /** Marks a delivery settled; false if it already was, or belongs to a lost connection (the broker resends it). */
  settle(delivery: MqttDelivery): boolean {
    if (delivery.settled) return false;
    delivery.settled = true;
    this.#leases.delete(delivery);
    this.#open.delete(delivery);
    return delivery.connection === this.#connection && this.#client.connected;
  }

  acknowledge(delivery: MqttDelivery): void {
    puback(this.#client, delivery.messageId);
  }

  /**
   * Returns a delivery to its group: republish on the group's redelivery topic, then PUBACK the original. Until the
   * republish is confirmed the original stays unacknowledged, so it is retried; if the connection drops or the member
   * closes meanwhile, the broker resends the original on reconnect, or the member adopting this session hands it back.
   */
  handBack(delivery: MqttDelivery, notBefore?: number): Promise<void> {
    const work = (async () => {
      for (;;) {
        try {
          await publishConfirmed(
            this.#client,
            this.#topics.redeliveries(this.#options.group, delivery.topicType),
            bufferOf(delivery.message.body),
            { properties: publishProperties(delivery.message, { attempt: delivery.attempt + 1, notBefore }) },
            this.#settings.publishTimeoutMs,
            () => true,
          );
          break;
        } catch {
          if (this.#closing || delivery.connection !== this.#connection) return;
          await new Promise((resolve) => setTimeout(resolve, HAND_BACK_RETRY_MS));
        }
      }
      if (delivery.connection === this.#connection) puback(this.#client, delivery.messageId);
    })();
    this.#handingBack.add(work);
    return work.finally(() => this.#handingBack.delete(work));
  }

  /** The connection dropped: its unacknowledged deliveries are the broker's again (it resends them on reconnect). */
  #dropConnection(): void {
    for (const delivery of this.#open) {
      delivery.settled = true;
      this.#leases.delete(delivery);
    }
    this.#open.clear();
    for (const timer of this.#waiting) clearTimeout(timer);
    this.#waiting.clear();
    this.#queue.drain();
  }

  #onMemberRecord(packet: IPublishPacket): void {
    const session = packet.topic.slice(packet.topic.lastIndexOf('/') + 1);
    const record = parseMemberRecord(packet.payload as Buffer);
    if (record) this.#members.set(session, record);
    else this.#members.delete(session);
    if (record?.state === 'offline') this.#offlineSince.set(session, this.#offlineSince.get(session) ?? Date.now());
    else if (record?.state === 'adopting') this.#offlineSince.set(session, Date.now());
    else this.#offlineSince.delete(session);
    this.#scheduleAdoption(ADOPT_SETTLE_MS);
  }

  #scheduleAdoption(delayMs: number): void {
    if (this.#closing) return;
    clearTimeout(this.#adoptTimer);
    this.#adoptTimer = setTimeout(() => this.#adoptDeparted(), delayMs);
  }

  /**
   * The live member with the smallest session id adopts every departed member's session. Any member adopts a
   * session left offline longer than ADOPT_FALLBACK_MS: the leader may be a dead member whose record still says
   * online (one that died while the broker was down never gets its Will published).
   */
  #adoptDeparted(): void {
    if (this.#closing || !this.#client.connected) return;
    const online = [...this.#members].filter(([, r]) => r.state === 'online').map(([s]) => s);
    const leader = [...online, this.#session].sort()[0] === this.#session;
    let waiting = false;
    for (const [session, record] of this.#members) {
      if (record.state === 'online' || session === this.#session || this.#adopting.has(session)) continue;
      const overdue = Date.now() - (this.#offlineSince.get(session) ?? Date.now()) >= this.#fallbackMs;
      // A session being adopted is left to its adopter while it keeps refreshing its claim.
      if (record.state === 'adopting' ? !overdue : !leader && !overdue) {
        waiting = true;
        continue;
      }
      this.#adopting.add(session);
      void adoptSession(this.#settings, this.#topics, this.#options.group, session, record).then((done) => {
        this.#adopting.delete(session);
        if (!done) this.#scheduleAdoption(ADOPT_RETRY_MS);
      });
    }
    if (waiting) this.#scheduleAdoption(this.#fallbackMs);
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return this.#queue[Symbol.asyncIterator]();
  }

  /**
   * Leaves the group: the session stays with the broker, marked offline, and a live member of the group adopts it
   * (at once if one is connected, else the next one to join), handing back every message this member held.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#options.signal?.removeEventListener('abort', this.#onAbort);
      clearTimeout(this.#adoptTimer);
      this.#queue.end();
      this.#leases.stop();
      for (const timer of this.#waiting) clearTimeout(timer);
      // Hand-backs still running finish, or leave their original in the session for the adopter; never wait long.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.#handingBack]),
        new Promise((resolve) => {
          timer = setTimeout(resolve, CLOSE_WAIT_MS);
        }),
      ]);
      clearTimeout(timer);
      if (this.#client.connected) {
        await publishConfirmed(
          this.#client,
          this.#topics.member(this.#options.group, this.#session),
          memberPayload('offline', this.#options.types, this.#options.consumerId),
          { retain: true, properties: { messageExpiryInterval: this.#settings.sessionExpirySec } },
          Math.min(this.#settings.publishTimeoutMs, 5000),
        ).catch(() => {});
      }
      await endClient(this.#client).catch(() => {});
      this.#onClosed(this);
    })();
    return this.#closing;
  }
}
