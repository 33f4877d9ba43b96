/**
 * The transport contract: the one interface every broker adapter implements.
 * The bus layer (src/bus/) is written only against this file, never against a broker.
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
  /** Idempotent. Resolves once the broker recorded the ack. */
  ack(): Promise<void>;
  /** Idempotent. Returns the message to its group, after `delayMs` where given. */
  nack(options?: NackOptions): Promise<void>;
}

export type Offset = 'earliest' | 'latest';

export interface ConsumeOptions {
  readonly types: readonly string[];
  readonly group: string;
  readonly consumerId: string;
  /** Where a group that has never read a type starts. Ignored for a group that already exists. */
  readonly offset: Offset;
  /** At most this many unacked deliveries outstanding to this consumer. */
  readonly prefetch: number;
  /** A delivered message that is neither acked nor nacked within this time returns to its group. */
  readonly ackTimeoutMs: number;
  readonly signal?: AbortSignal | undefined;
}

/**
 * A live consumer. Iterating yields deliveries until `close()`, the abort signal, or the transport's close;
 * then iteration ends normally. Closing returns every unacked delivery to its group at once.
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

export interface TransportAdmin {
  /** Creates the type if it does not exist (idempotent); partitions apply on creation. */
  ensureType(type: string, options?: TypeOptions): Promise<void>;
  /** Removes the type, its messages and its groups. Unknown types are a no-op. */
  deleteType(type: string): Promise<void>;
  listTypes(): Promise<TypeInfo[]>;
  /** Grows the partition count; shrinking throws BUSBAR_ERR_PARTITIONS. */
  setPartitions(type: string, partitions: number): Promise<void>;
  setRetention(type: string, retention: Retention): Promise<void>;
  /** Removes every stored message of the type; groups stay and have nothing unread. */
  purge(type: string): Promise<void>;
  /** Stats for one type, or for every type when none is named. */
  stats(type?: string): Promise<TypeStats[]>;
}

/** How a transport provides a feature: by the broker itself, emulated in the transport or bus layer, or not at all. */
export type Support = 'native' | 'emulated' | 'none';

export interface Capabilities {
  /** A new group can start at `earliest` and read what was published before it existed. */
  readonly replay: boolean;
  readonly ordering: 'none' | 'per-key' | 'total';
  readonly nackDelay: Support;
  /** Unacked deliveries come back after `ackTimeoutMs`. */
  readonly ackTimeout: Support;
  readonly partitions: boolean;
  readonly retention: { readonly age: boolean; readonly bytes: boolean };
  readonly purge: boolean;
  /** stats() reports unread per group. */
  readonly lag: boolean;
  /** Accepted messages survive a broker (or process) restart. */
  readonly persistence: boolean;
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
