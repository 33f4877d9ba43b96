/**
 * One consumer of a group: a pull loop per message type over a durable JetStream consumer. The loop asks the server
 * for at most `prefetch` unsettled messages (split over the types), so a slow member never hoards its group's work;
 * messages still queued or unacked when the subscription closes are NAKed at once.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription as NatsSub } from '@nats-io/transport-node';
import { BusError, toBusError } from '../../errors.ts';
import type {
  ConsumeOptions,
  Delivery,
  NackOptions,
  Subscription,
  TransportMessage,
} from '../../transport/contract.ts';
import { DeliveryQueue } from '../../transport/queue.ts';
import { fromNatsMessage } from './headers.ts';
import { joinBody } from './large.ts';
import { durableName, PARTS_PREFIX, streamName } from './names.ts';

/** How long one pull request waits on the server, and how often an idle one proves it is alive. */
export const PULL_EXPIRES_MS = 5_000;
export const PULL_HEARTBEAT_MS = 2_000;
/** How long after a pull request's expiry the server may still serve it (clocks, queued work). */
const REQUEST_EXPIRY_MARGIN_MS = 500;
const MS = 1_000_000;
const REPAIR_BACKOFF_MS = [100, 250, 500, 1_000, 2_000];

/** What a subscription needs from its transport. */
export interface SubscriptionHost {
  readonly nc: NatsConnection;
  readonly requestTimeoutMs: number;
  /** False between a disconnect and the reconnect: pull requests then would pile up in the client's buffer. */
  readonly connected: boolean;
  /** Creates the type's stream and the group's durable consumer if missing (and brings ack_wait up to date). */
  attach(type: string, options: ConsumeOptions): Promise<void>;
  /** The tail parts of a large message, by stream sequence; undefined when retention or a purge removed one. */
  readParts(type: string, seqs: readonly number[]): Promise<Uint8Array[] | undefined>;
  forget(subscription: NatsSubscription): void;
}

interface AckInfo {
  stream: string;
  deliveryCount: number;
  streamSeq: number;
  timestampNanos: bigint;
}

/** `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`, or the 12-token form with domain. */
export function parseAckSubject(reply: string): AckInfo | undefined {
  const t = reply.split('.');
  if (t[0] !== '$JS' || t[1] !== 'ACK') return undefined;
  const at = t.length === 9 ? 2 : t.length >= 11 ? 4 : -1;
  if (at < 0) return undefined;
  return {
    stream: t[at]!,
    deliveryCount: Number(t[at + 2]),
    streamSeq: Number(t[at + 3]),
    timestampNanos: BigInt(t[at + 5]!),
  };
}

class NatsDelivery implements Delivery {
  readonly message: TransportMessage;
  readonly attempt: number;
  readonly leaseUntil: number;
  readonly #nc: NatsConnection;
  readonly #reply: string;
  readonly #timeoutMs: number;
  readonly #release: (delivery: NatsDelivery) => void;
  #released = false;
  #returned = false;
  #pending: Promise<void> | undefined;

  constructor(
    nc: NatsConnection,
    reply: string,
    message: TransportMessage,
    attempt: number,
    leaseUntil: number,
    timeoutMs: number,
    release: (d: NatsDelivery) => void,
  ) {
    this.#nc = nc;
    this.#reply = reply;
    this.message = message;
    this.attempt = attempt;
    this.leaseUntil = leaseUntil;
    this.#timeoutMs = timeoutMs;
    this.#release = release;
  }

  get settled(): boolean {
    return this.#released;
  }

  ack(): Promise<void> {
    if (this.#returned) {
      return Promise.reject(
        new BusError(
          'BUSBAR_ERR_CLOSED',
          'cannot ack: the subscription closed and returned this message to its group, where it will be delivered again',
        ),
      );
    }
    return this.#settle('+ACK', 'ack');
  }

  nack(options?: NackOptions): Promise<void> {
    if (this.#returned) return Promise.resolve();
    return this.#settle(nakCommand(options?.delayMs ?? 0), 'nack');
  }

  /** On close: NAK without waiting for the server's reply; the caller flushes once for all. */
  returnToGroup(): void {
    if (this.#released) return;
    this.#returned = true;
    this.#markReleased();
    try {
      this.#nc.publish(this.#reply, '-NAK');
    } catch {
      // Connection gone: the server returns the message after the ack timeout instead.
    }
  }

  /** The lease ended unsettled: the server redelivers it after AckWait, so its slot is free (contract rule 3). */
  expire(): void {
    this.#markReleased();
  }

  #markReleased(): void {
    if (this.#released) return;
    this.#released = true;
    this.#release(this);
  }

  #settle(command: string, what: string): Promise<void> {
    if (this.#pending) return this.#pending;
    this.#markReleased();
    const pending = this.#nc.request(this.#reply, command, { timeout: this.#timeoutMs }).then(
      () => undefined,
      (error: unknown) => {
        // Let a later call try again; the message stays safe on the server meanwhile.
        this.#pending = undefined;
        throw toBusError(
          error,
          'BUSBAR_ERR_ACK',
          `nats: the ${what} was not confirmed (retry, or let the ack timeout return the message)`,
        );
      },
    );
    this.#pending = pending;
    return pending;
  }
}

function nakCommand(delayMs: number): string {
  const delay = Math.max(0, Math.round(delayMs));
  return delay > 0 ? `-NAK ${JSON.stringify({ delay: delay * MS })}` : '-NAK';
}

/**
 * Pulls one type for one subscription. The server (2.9) may serve a pull request after its subscriber went away, so
 * a message a closing puller returns (or a new one) can land in that dead request and would wait out AckWait: a
 * stopped puller listens until its requests expire, keeps what still comes, and returns it once they are gone
 * (returning it at once would bounce it straight back into them).
 */
class Puller {
  readonly #sub: NatsSubscription;
  readonly #type: string;
  readonly #limit: number;
  readonly #inbox = createInbox();
  readonly #nextSubject: string;
  #natsSub: NatsSub | undefined;
  #requested = 0;
  /** When the pull requests sent so far expire on the server. */
  #requestsEndBy = 0;
  #outstanding = 0;
  #lastSeen = Date.now();
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #stopped = false;
  /** Ack subjects of messages that reached this puller after it stopped: returned once its requests expire. */
  readonly #late: string[] = [];
  #repairing = false;

  constructor(sub: NatsSubscription, type: string, group: string, limit: number) {
    this.#sub = sub;
    this.#type = type;
    this.#limit = limit;
    this.#nextSubject = `$JS.API.CONSUMER.MSG.NEXT.${streamName(type)}.${durableName(group)}`;
  }

  start(): void {
    this.#natsSub = this.#sub.host.nc.subscribe(this.#inbox, { callback: (error, msg) => this.#onMessage(error, msg) });
    this.#watchdog = setInterval(() => this.#checkAlive(), PULL_HEARTBEAT_MS);
    this.#watchdog.unref?.();
    this.pump();
  }

  /** Until when a message returned now could still be served to this puller's own pull requests (0: none open). */
  get openUntil(): number {
    return this.#requested > 0 ? this.#requestsEndBy : 0;
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#watchdog);
    const wait = this.openUntil - Date.now();
    if (wait <= 0) this.#finish();
    else setTimeout(() => this.#finish(), wait + REQUEST_EXPIRY_MARGIN_MS).unref();
  }

  #finish(): void {
    this.#natsSub?.unsubscribe();
    for (const reply of this.#late.splice(0)) this.#send(reply, '-NAK');
  }

  released(): void {
    this.#outstanding--;
    this.pump();
  }

  /** Open pull requests died with the connection (or the server restarted): ask again. */
  reset(): void {
    this.#requested = 0;
    this.#lastSeen = Date.now();
    this.pump();
  }

  pump(): void {
    if (this.#stopped || this.#repairing || !this.#sub.host.connected) return;
    const want = this.#limit - this.#outstanding - this.#requested;
    if (want <= 0) return;
    // Top up in chunks so a busy consumer does not send a pull request per ack.
    if (this.#requested > 0 && want < Math.ceil(this.#limit / 4)) return;
    try {
      this.#sub.host.nc.publish(
        this.#nextSubject,
        JSON.stringify({ batch: want, expires: PULL_EXPIRES_MS * MS, idle_heartbeat: PULL_HEARTBEAT_MS * MS }),
        { reply: this.#inbox },
      );
      this.#requested += want;
      this.#requestsEndBy = Date.now() + PULL_EXPIRES_MS;
    } catch {
      // Closed connection: the subscription is ending anyway.
    }
  }

  #checkAlive(): void {
    // Two missed heartbeats: the request is gone (server restart, dropped connection). Ask again.
    if (this.#requested > 0 && Date.now() - this.#lastSeen > 2 * PULL_HEARTBEAT_MS + 1_000) this.reset();
  }

  #onMessage(error: Error | null, msg: Msg): void {
    if (this.#stopped) {
      if (!error && msg.reply?.startsWith('$JS.ACK.')) this.#late.push(msg.reply);
      return;
    }
    this.#lastSeen = Date.now();
    if (error) {
      this.#sub.fail(toBusError(error, 'BUSBAR_ERR_BROKER', `nats: pulling '${this.#type}' failed`));
      return;
    }
    if (msg.subject === this.#inbox) {
      this.#onStatus(msg);
      return;
    }
    const reply = msg.reply;
    const info = reply ? parseAckSubject(reply) : undefined;
    if (!reply || !info) return;
    this.#requested = Math.max(0, this.#requested - 1);
    this.#outstanding++;
    if (msg.subject.startsWith(PARTS_PREFIX)) {
      // A group made without busbar's filter_subject also sees the parts of large messages: they are not messages.
      this.#drop(reply, '+ACK');
      return;
    }
    let decoded: ReturnType<typeof fromNatsMessage>;
    try {
      decoded = fromNatsMessage(msg.headers, msg.data, this.#type, {
        stream: info.stream,
        seq: info.streamSeq,
        timestampNanos: info.timestampNanos,
      });
    } catch {
      // Unreadable headers cannot be fixed by retrying: keep it out of the group's way for good.
      this.#drop(reply, '+TERM');
      return;
    }
    // The server's AckWait started when it sent the message: the lease runs from here, not after assembly.
    const leaseUntil = Date.now() + this.#sub.options.ackTimeoutMs;
    if (decoded.parts) void this.#assemble(reply, info, decoded.message, decoded.parts, leaseUntil);
    else this.#deliver(reply, info, decoded.message, leaseUntil);
  }

  #deliver(reply: string, info: AckInfo, message: TransportMessage, leaseUntil: number): void {
    const delivery = new NatsDelivery(
      this.#sub.host.nc,
      reply,
      message,
      info.deliveryCount,
      leaseUntil,
      this.#sub.host.requestTimeoutMs,
      (d) => this.#sub.released(this, d),
    );
    this.#sub.deliver(delivery);
  }

  /** Settles a message that never became a delivery. */
  #drop(reply: string, command: string): void {
    this.#send(reply, command);
    this.#outstanding--;
    this.pump();
  }

  #send(reply: string, command: string): void {
    try {
      this.#sub.host.nc.publish(reply, command);
    } catch {
      // Connection gone: the ack timeout returns the message.
    }
  }

  async #assemble(
    reply: string,
    info: AckInfo,
    head: TransportMessage,
    seqs: number[],
    leaseUntil: number,
  ): Promise<void> {
    let parts: Uint8Array[] | undefined;
    try {
      parts = await this.#sub.host.readParts(this.#type, seqs);
    } catch {
      // The broker is unreachable for now: try again a little later.
      this.#drop(reply, `-NAK ${JSON.stringify({ delay: 1000 * MS })}`);
      return;
    }
    if (this.#stopped) this.#drop(reply, '-NAK');
    // Parts removed by retention or a purge: the message is gone and cannot be delivered whole.
    else if (!parts) this.#drop(reply, '+TERM');
    else this.#deliver(reply, info, { ...head, body: joinBody(head.body, parts) }, leaseUntil);
  }

  #onStatus(msg: Msg): void {
    const code = msg.headers?.code ?? 0;
    if (code === 100) return;
    const left = Number(msg.headers?.get('Nats-Pending-Messages') || Number.NaN);
    if (code === 408 || code === 404 || (code === 409 && !Number.isNaN(left))) {
      this.#requested = Number.isNaN(left) ? 0 : Math.max(0, this.#requested - left);
      this.pump();
      return;
    }
    // 503 no responders (stream or consumer missing, JetStream restarting), 409 consumer deleted, and the rest:
    // re-attach, then pull afresh.
    void this.#repair();
  }

  async #repair(): Promise<void> {
    if (this.#repairing) return;
    this.#repairing = true;
    for (let attempt = 0; !this.#stopped; attempt++) {
      await new Promise((resolve) =>
        setTimeout(resolve, REPAIR_BACKOFF_MS[Math.min(attempt, REPAIR_BACKOFF_MS.length - 1)]),
      );
      if (this.#stopped) break;
      try {
        await this.#sub.host.attach(this.#type, this.#sub.options);
        break;
      } catch {
        // Keep trying until the broker is back or the subscription closes.
      }
    }
    this.#repairing = false;
    this.reset();
  }
}

export class NatsSubscription implements Subscription {
  readonly host: SubscriptionHost;
  readonly options: ConsumeOptions;
  readonly ready: Promise<void>;
  readonly #queue = new DeliveryQueue({ onLeave: () => this.close() });
  /** In lease order: every delivery has the same ack timeout and leases start in arrival order. */
  readonly #unsettled = new Set<NatsDelivery>();
  readonly #all: Puller[];
  #expiry: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;

  constructor(host: SubscriptionHost, options: ConsumeOptions) {
    this.host = host;
    this.options = options;
    // Prefetch bounds this consumer as a whole, so it is shared out over the types (at least one each).
    const share = Math.max(1, Math.floor(options.prefetch / Math.max(1, options.types.length)));
    this.#all = options.types.map((type) => new Puller(this, type, options.group, share));
    this.ready = this.#start();
    this.ready.catch((error: unknown) => this.fail(error));
    options.signal?.addEventListener('abort', () => void this.close(), { once: true });
  }

  async #start(): Promise<void> {
    await Promise.all(this.options.types.map((type) => this.host.attach(type, this.options)));
    if (this.#closing) return;
    for (const puller of this.#all) puller.start();
  }

  deliver(delivery: NatsDelivery): void {
    this.#unsettled.add(delivery);
    this.#queue.push(delivery);
    if (!this.#expiry) this.#expireAt(delivery.leaseUntil);
  }

  /** One timer for the earliest lease: expired, unsettled deliveries free their prefetch slots (rule 3). */
  #expireAt(at: number): void {
    this.#expiry = setTimeout(
      () => {
        this.#expiry = undefined;
        const now = Date.now();
        for (const delivery of this.#unsettled) {
          if (delivery.leaseUntil > now) {
            this.#expireAt(delivery.leaseUntil);
            return;
          }
          delivery.expire();
        }
      },
      Math.max(0, at - Date.now() + 1),
    );
  }

  released(puller: Puller, delivery: NatsDelivery): void {
    this.#unsettled.delete(delivery);
    puller.released();
  }

  /** The connection came back: pull requests made before are gone. */
  reconnected(): void {
    for (const puller of this.#all) puller.reset();
  }

  fail(error: unknown): void {
    this.#queue.end(error);
    void this.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return this.#queue[Symbol.asyncIterator]();
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    for (const puller of this.#all) puller.stop();
    clearTimeout(this.#expiry);
    this.#queue.end();
    this.#queue.drain();
    for (const delivery of [...this.#unsettled]) delivery.returnToGroup();
    this.host.forget(this);
    if (!this.host.nc.isClosed()) await this.host.nc.flush().catch(() => {});
  }
}
