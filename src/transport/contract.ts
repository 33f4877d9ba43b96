/**
 * The transport contract: the one interface every broker adapter implements.
 * The bus layer (src/bus/) is written only against this file, never against a broker.
 * A transport is a folder src/transports/<name>/ that imports only src/transport/ and src/errors.ts. The toolkit
 * beside this file: queue.ts (DeliveryQueue: rules 1 and 3), sweeper.ts (LeaseSweeper: an emulated ack timeout),
 * options.ts (OptionReader, endpoints, TLS files: one error for a bad option), rules.ts (admin argument checks),
 * envelope.ts + cloudevents.ts (wire attribute names, completing a received envelope), deferred.ts, uuid.ts.
 *
 * Rules every Subscription follows (test/conformance/ checks each; src/transport/queue.ts implements 1 and 3):
 * 1. Leaving a `for await` loop early (break, return, throw) closes the subscription exactly as close() does: its
 *    unacked deliveries return to the group at once (NATS: once its pull requests expire, see there), and a later
 *    iteration ends at once.
 * 2. The bus validates ConsumeOptions before consume() (see there); a transport trusts them and does not check
 *    again, so every caller sees the bus's one error (BUSBAR_ERR_INVALID_ARGUMENT) for a bad value.
 * 3. The transport never hands out a delivery whose lease has ended (Date.now() >= leaseUntil): it drops it
 *    without a word to the broker (the group has it back) and counts its prefetch slot free. The same holds for
 *    deliveries already handed out and left unsettled past leaseUntil: they no longer count against `prefetch`,
 *    so a consumer that holds `prefetch` expired deliveries is given messages again (its expired ones included).
 * The bus keeps to 3 as well: it reads ahead of the application only within leases and drops what expired.
 */

/** CloudEvents 1.0 attributes plus busbar's extensions, as they travel beside the body. */
export interface Envelope {
  /** CloudEvents `id`: a UUIDv7 made by the producer (or filled in for a bare message from a plain client). */
  readonly id: string;
  /** CloudEvents `type`: the message type. */
  readonly type: string;
  /** CloudEvents `source`: the producer id. */
  readonly source: string;
  /** CloudEvents `time`: RFC 3339 timestamp. */
  readonly time: string;
  /** CloudEvents `datacontenttype`: chooses the codec (json | text | bytes). */
  readonly contentType: string;
  /** Extension `partitionkey`: ordering and partitioning key. */
  readonly key?: string | undefined;
  /** User headers and the other extensions (traceparent, correlationid, busbar-* dead-letter info). */
  readonly headers: Readonly<Record<string, string>>;
}

/** A message as a transport stores and carries it: the envelope plus the payload bytes, untouched. */
export interface TransportMessage extends Envelope {
  readonly body: Uint8Array;
}

export interface NackOptions {
  /** Redeliver no sooner than this many milliseconds from now. */
  delayMs?: number;
}

/** One delivery of one message to one consumer of a group. */
export interface Delivery {
  readonly message: TransportMessage;
  /** 1 on first delivery to this group; increments on every redelivery (nack, ack timeout, consumer death). */
  readonly attempt: number;
  /**
   * When this consumer's lease ends (Date.now() ms): the time the broker handed the message to this consumer plus
   * ackTimeoutMs. From then on the group may give the message to another member; see rule 3. An ack after it is
   * still accepted where the broker can (at-least-once), but the message may have been processed twice.
   */
  readonly leaseUntil: number;
  /** Idempotent. Resolves once the broker recorded the ack. */
  ack(): Promise<void>;
  /** Idempotent. Returns the message to its group, after `delayMs` where given. */
  nack(options?: NackOptions): Promise<void>;
}

export type Offset = 'earliest' | 'latest';

/** The longest ack timeout: 2^31 - 1 ms (about 24.8 days), the longest delay setTimeout keeps. */
export const MAX_ACK_TIMEOUT_MS = 2_147_483_647;

export interface ConsumeOptions {
  readonly types: readonly string[];
  readonly group: string;
  readonly consumerId: string;
  /** Where a group that has never read a type starts. Ignored for a group that already exists. */
  readonly offset: Offset;
  /**
   * At most this many unacked deliveries outstanding to this consumer, whether handed out or waiting in the
   * transport (expired ones excepted, rule 3). A whole number >= 1; a broker limit below it (AMQP's 65535) caps it.
   */
  readonly prefetch: number;
  /**
   * A delivered message that is neither acked nor nacked within this time returns to its group. A whole number of
   * milliseconds, 1 to MAX_ACK_TIMEOUT_MS (the longest timer Node.js can set).
   */
  readonly ackTimeoutMs: number;
  readonly signal?: AbortSignal | undefined;
}

/**
 * A live consumer. Iterating yields deliveries until `close()`, the abort signal, the transport's close, or the
 * loop is left early (rule 1); then iteration ends normally. Closing returns every unacked delivery to its group at
 * once. Deliveries wait in the transport (up to `prefetch`) until iterated, and expire there (rule 3).
 */
export interface Subscription extends AsyncIterable<Delivery> {
  /**
   * Resolves once the consumer is attached to its group and, for a new group, the start position is fixed
   * (so a message published after `ready` reaches an `offset: latest` group). Rejects if attaching failed;
   * iteration then throws the same error.
   */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

export interface TypeOptions {
  partitions?: number;
}

export interface Retention {
  /** Messages older than this are removed. */
  maxAgeMs?: number | undefined;
  /** Oldest messages are removed while the type holds more than this many payload bytes. */
  maxBytes?: number | undefined;
}

export interface TypeInfo {
  readonly type: string;
  readonly partitions: number;
  readonly retention: Retention;
}

export interface GroupStats {
  readonly group: string;
  /** Messages the group has not acked yet, in-flight ones included (CORTX's unread count, Kafka's lag). */
  readonly unread: number;
  /** Messages delivered to a member of the group and not yet acked or returned. -1 where the broker cannot tell. */
  readonly inflight: number;
  /** Age of the oldest message the group has not acked; null when there is none or the broker cannot tell. */
  readonly oldestAgeMs: number | null;
  /**
   * Messages the group lost to a bounded buffer and will never see, counted since the transport opened. Only a
   * transport without a broker to hold them sets it (zeromq: each group's buffer in the consuming process).
   */
  readonly dropped?: number;
  /** Consumers attached to the group now, where the broker tells (absent where it cannot). */
  readonly consumers?: number | undefined;
}

export interface TypeStats {
  readonly type: string;
  /** Messages the broker holds for the type. */
  readonly depth: number;
  /** Payload bytes the broker holds for the type; -1 where the broker cannot tell. */
  readonly bytes: number;
  readonly partitions: number;
  readonly groups: readonly GroupStats[];
}

/** Where a peek starts and how much it shows. */
export interface PeekOptions {
  /** The first position to show (a position a previous peek returned, e.g. a sequence number); the oldest if absent. */
  readonly from?: string | undefined;
  /** Only messages the broker stored at or after this time (Date.now() ms). Needs capability peek.time. */
  readonly fromTime?: number | undefined;
  /** At most this many messages (a whole number >= 1; the bus caps it). */
  readonly count: number;
}

/** A message seen by a peek: nothing is consumed, no group moves. */
export interface PeekedMessage {
  /** Where it is in its type, as the transport counts (give it back as `from` to start there). */
  readonly position: string;
  /** When the broker stored it (Date.now() ms), where the broker tells. */
  readonly storedAt?: number | undefined;
  readonly message: TransportMessage;
}

export interface TransportAdmin {
  /** Creates the type if it does not exist (idempotent); partitions apply on creation. */
  ensureType(type: string, options?: TypeOptions): Promise<void>;
  /** Removes the type, its messages and its groups. Unknown types are a no-op. */
  deleteType(type: string): Promise<void>;
  listTypes(): Promise<TypeInfo[]>;
  /**
   * The TypeInfo of those of the named types that exist, asking the broker about those types only. Optional: where
   * absent the bus filters listTypes(); a transport whose listing is costly on a big broker (one request per
   * resource, or one that fails when something unrelated vanishes meanwhile) has it.
   */
  describeTypes?(types: readonly string[]): Promise<TypeInfo[]>;
  /** Grows the partition count; shrinking throws BUSBAR_ERR_PARTITIONS. */
  setPartitions(type: string, partitions: number): Promise<void>;
  setRetention(type: string, retention: Retention): Promise<void>;
  /** Removes every stored message of the type; groups stay and have nothing unread. */
  purge(type: string): Promise<void>;
  /** Stats for one type, or for every type when none is named. */
  stats(type?: string): Promise<TypeStats[]>;
  /**
   * Stored messages of a type, oldest first, without consuming them: no group moves, no attempt counts. Present only
   * where capabilities.peek says so; an unknown type gives [].
   */
  peek?(type: string, options: PeekOptions): Promise<PeekedMessage[]>;
  /**
   * Creates consumer group `group` on `type` (and the type, if new) before any member joins: it starts at `offset`
   * (`latest`: the broker's end now; `earliest`: the oldest message kept, where `replay` holds), and from then on
   * the broker keeps every message of the type for it, within the type's retention, until a member acks it.
   * Idempotent: a group that exists keeps its position and its unread messages. Present exactly where
   * `capabilities.createGroup` is true.
   */
  ensureGroup?(type: string, group: string, offset: Offset): Promise<void>;
}

/** How a transport provides a feature: by the broker itself, emulated in the transport or bus layer, or not at all. */
export type Support = 'native' | 'emulated' | 'none';

export interface Capabilities {
  /** A new group can start at `earliest` and read what was published before it existed. */
  readonly replay: boolean;
  readonly ordering: 'none' | 'per-key' | 'total';
  /** `none`: nack({ delayMs }) returns the message at once (the conformance suite skips the delay checks). */
  readonly nackDelay: Support;
  /**
   * Unacked deliveries come back after `ackTimeoutMs`. `none`: they come back only when their consumer closes, and
   * every delivery's leaseUntil is Infinity (the suite skips the ack-timeout scenarios).
   */
  readonly ackTimeout: Support;
  readonly partitions: boolean;
  readonly retention: { readonly age: boolean; readonly bytes: boolean };
  readonly purge: boolean;
  /** stats() reports unread per group. */
  readonly lag: boolean;
  /** Accepted messages survive a broker (or process) restart. */
  readonly persistence: boolean;
  /**
   * admin.peek: browse stored messages without consuming them, from a position and/or from a time. Absent (the
   * default for a transport that does not declare it) means no peek: the bus answers BUSBAR_ERR_UNSUPPORTED.
   */
  readonly peek?: { readonly position: boolean; readonly time: boolean } | undefined;
  /**
   * admin.ensureGroup exists: a group can be created before its first member, and keeps what is published
   * meanwhile. False where nothing can hold messages for a group without members (zeromq).
   */
  readonly createGroup: boolean;
}

export interface Transport {
  /** The transport's name, e.g. `embedded`, `rabbitmq`. */
  readonly name: string;
  readonly capabilities: Capabilities;
  readonly admin: TransportAdmin;
  /**
   * Resolves only after the broker durably accepted every message of the batch; rejects with a BusError
   * (retryable where a retry can succeed) otherwise. All messages in `batch` have `type` equal to `type`.
   * Publishing to a type that does not exist yet creates it with default settings.
   */
  publish(type: string, batch: readonly TransportMessage[]): Promise<void>;
  /** Starts consuming at once (types that do not exist yet are created); see Subscription.ready. */
  consume(options: ConsumeOptions): Subscription;
  /** Idempotent; safe while a consume is blocked; ends every open subscription. */
  close(): Promise<void>;
}

/** Validated connection settings handed to a transport factory (see src/config/). */
export interface TransportConfig {
  /** The broker URL as the user gave it (credentials included); endpoints are parsed from it and `endpoints`. */
  readonly url: string;
  /** Every broker endpoint, `host:port`, from the URL's host list and the config's cluster list. */
  readonly endpoints: readonly string[];
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly tls?: TlsConfig | undefined;
  /** Transport-specific settings, from the URL's query string and the config file's `options`. */
  readonly options: Readonly<Record<string, string | number | boolean>>;
}

export interface TlsConfig {
  /** Paths to PEM files. */
  readonly ca?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly rejectUnauthorized?: boolean | undefined;
}

/** What a transport module exports as its default. */
export type TransportFactory = (config: TransportConfig) => Promise<Transport>;
