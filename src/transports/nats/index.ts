/**
 * `nats://h1:4222,h2:4222` — NATS JetStream. A stream per message type (file storage), a durable pull consumer per
 * group, PubAck per message, NAK with delay, redelivery after ack_wait. Wire mapping: docs/wire/nats.md.
 */
import {
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  type PubAck,
} from '@nats-io/jetstream';
import { connect, type MsgHdrs, type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { BusError } from '../../errors.ts';
import type {
  Capabilities,
  ConsumeOptions,
  Subscription,
  Transport,
  TransportConfig,
  TransportFactory,
  TransportMessage,
} from '../../transport/contract.ts';
import { NatsAdmin } from './admin.ts';
import { apiCode, isNoResponders, JS_NO_MESSAGE_FOUND, toNatsError } from './errors.ts';
import { MSG_ID_HEADER, toNatsHeaders } from './headers.ts';
import { headerBytes, PARTS_HEADER, splitBody } from './large.ts';
import { durableName, partsSubjectOf, streamName, subjectOf } from './names.ts';
import { connectionOptions, type NatsSettings, parseSettings } from './options.ts';
import { NatsSubscription, type SubscriptionHost } from './subscription.ts';

export const NATS_CAPABILITIES: Capabilities = Object.freeze({
  replay: true,
  // A stream is totally ordered, but redeliveries and several members of a group interleave: no promise.
  ordering: 'none',
  nackDelay: 'native',
  ackTimeout: 'native',
  partitions: false,
  retention: Object.freeze({ age: true, bytes: true }),
  purge: true,
  lag: true,
  persistence: true,
  // STREAM.MSG.GET by sequence (admin.peek): positions are stream sequences; times by a search over them.
  peek: Object.freeze({ position: true, time: true }),
  // A durable consumer without a member: the stream keeps its messages for it (retention: limits).
  createGroup: true,
});

/** nats-server's default max_payload, for the moment before the server's INFO is known. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

class NatsTransport implements Transport, SubscriptionHost {
  readonly name = 'nats';
  readonly capabilities = NATS_CAPABILITIES;
  readonly nc: NatsConnection;
  readonly admin: NatsAdmin;
  readonly requestTimeoutMs: number;
  connected = true;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #subscriptions = new Set<NatsSubscription>();
  #closing: Promise<void> | undefined;

  constructor(nc: NatsConnection, jsm: JetStreamManager, settings: NatsSettings) {
    this.nc = nc;
    this.#jsm = jsm;
    this.#js = jetstream(nc, { timeout: settings.requestTimeoutMs });
    this.admin = new NatsAdmin(jsm, settings);
    this.requestTimeoutMs = settings.requestTimeoutMs;
    void this.#watchStatus();
  }

  async #watchStatus(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (status.type === 'disconnect') this.connected = false;
      if (status.type === 'reconnect') {
        this.connected = true;
        for (const sub of this.#subscriptions) sub.reconnected();
      }
    }
  }

  #checkOpen(): void {
    if (this.#closing || this.nc.isClosed()) throw new BusError('BUSBAR_ERR_CLOSED', 'the nats transport is closed');
  }

  async publish(type: string, batch: readonly TransportMessage[]): Promise<void> {
    this.#checkOpen();
    const subject = subjectOf(type);
    await this.admin.ensureStream(type);
    try {
      await Promise.all(batch.map((message) => this.#publishOne(type, subject, message)));
    } catch (error) {
      throw toNatsError(
        error,
        'BUSBAR_ERR_PUBLISH',
        `nats: publishing to '${type}' was not confirmed (retrying is safe: JetStream drops duplicate ids)`,
      );
    }
  }

  #publishOne(type: string, subject: string, message: TransportMessage): Promise<unknown> {
    const headers = toNatsHeaders(message);
    const maxPayload = this.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
    // Headers stay far below half of any sensible max_payload: only measure them for large bodies.
    const size = message.body.length * 2 < maxPayload ? 0 : headerBytes(headers);
    if (size + message.body.length <= maxPayload) return this.#publishChecked(type, subject, message.body, headers);
    return this.#publishLarge(type, subject, message.body, headers, size, maxPayload);
  }

  async #publishLarge(
    type: string,
    subject: string,
    body: Uint8Array,
    headers: MsgHdrs,
    headerSize: number,
    maxPayload: number,
  ): Promise<void> {
    const { head, parts } = splitBody(body, headerSize, maxPayload);
    const id = headers.get(MSG_ID_HEADER);
    const acks = await Promise.all(
      parts.map((part, i) => {
        const partHeaders = natsHeaders();
        // Own ids, so a retried publish stores each part once too.
        partHeaders.set(MSG_ID_HEADER, `${id}#${i + 1}`);
        return this.#publishChecked(type, partsSubjectOf(type), part, partHeaders);
      }),
    );
    headers.set(PARTS_HEADER, acks.map((ack) => ack.seq).join(','));
    await this.#publishChecked(type, subject, head, headers);
  }

  #publishChecked(type: string, subject: string, body: Uint8Array, headers: MsgHdrs): Promise<PubAck> {
    const options = { headers, timeout: this.requestTimeoutMs };
    return this.#js.publish(subject, body, options).catch(async (error: unknown) => {
      if (!isNoResponders(error)) throw error;
      // The stream went away (deleted by an admin) or JetStream is still starting: make sure it exists, once more.
      this.admin.forget(type);
      await this.admin.ensureStream(type);
      return this.#js.publish(subject, body, { ...options, retries: 3 });
    });
  }

  async readParts(type: string, seqs: readonly number[]): Promise<Uint8Array[] | undefined> {
    const stream = streamName(type);
    const parts = await Promise.all(
      seqs.map((seq) =>
        this.#jsm.streams.getMessage(stream, { seq }).catch((error: unknown) => {
          if (apiCode(error) === JS_NO_MESSAGE_FOUND) return null;
          throw error;
        }),
      ),
    );
    return parts.every((part) => part !== null) ? parts.map((part) => part!.data) : undefined;
  }

  consume(options: ConsumeOptions): Subscription {
    this.#checkOpen();
    if (options.types.length === 0) {
      throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', 'consume needs at least one message type');
    }
    for (const type of options.types) streamName(type);
    durableName(options.group);
    const subscription = new NatsSubscription(this, options);
    this.#subscriptions.add(subscription);
    return subscription;
  }

  forget(subscription: NatsSubscription): void {
    this.#subscriptions.delete(subscription);
  }

  /** Creates the group's durable consumer on the type's stream if it is new; keeps ack_wait current. */
  attach(type: string, options: ConsumeOptions): Promise<void> {
    return this.admin.ensureGroup(type, options.group, options.offset, options.ackTimeoutMs);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all([...this.#subscriptions].map((s) => s.close()));
      await this.nc.close();
    })();
    return this.#closing;
  }
}

const createNatsTransport: TransportFactory = async (config: TransportConfig) => {
  const settings = parseSettings(config);
  const options = connectionOptions(config);
  let nc: NatsConnection;
  try {
    nc = await connect(options);
  } catch (error) {
    throw toNatsError(
      error,
      'BUSBAR_ERR_CONNECTION',
      `nats: could not connect to ${[options.servers].flat().join(',')} (is nats-server running with JetStream, -js?)`,
    );
  }
  try {
    const jsm = await jetstreamManager(nc, { timeout: settings.requestTimeoutMs });
    return new NatsTransport(nc, jsm, settings);
  } catch (error) {
    await nc.close();
    throw toNatsError(error, 'BUSBAR_ERR_CONNECTION', 'nats: JetStream is not available (start nats-server with -js)');
  }
};

export default createNatsTransport;
