import { BusError, checkTypeName } from '../errors.ts';
import type {
  Capabilities,
  Offset,
  PeekedMessage,
  Retention,
  Transport,
  TransportAdmin,
  TypeInfo,
  TypeStats,
} from '../transport/contract.ts';
import {
  type DeadLetter,
  type DeadLetterReadOptions,
  DeadLetters,
  type RedriveOptions,
  type RedriveResult,
} from './dead-letters.ts';
import { describeTypes } from './describe-types.ts';
import { deadLetterTypeOf } from './options.ts';

/** What registerMessageType did: created the type, grew its partitions, or found it as asked. */
export interface Registration {
  readonly type: string;
  readonly outcome: 'created' | 'grown' | 'unchanged';
  /** The partitions the type has now. */
  readonly partitions: number;
  /** The partitions it had before, when it existed already. */
  readonly previousPartitions?: number;
}

export interface PeekRequest {
  /** Start at this position (one a previous peek returned); the oldest stored message when absent. */
  from?: string;
  /** Start at the first message stored at or after this time (a Date, ms since the epoch, or RFC 3339 text). */
  fromTime?: Date | number | string;
  /** At most this many messages, 1 to 1000. Default 20. */
  count?: number;
}

/** The longest peek. */
export const MAX_PEEK = 1000;

export interface ExpiryOptions {
  /** CORTX's expire time: messages older than this are removed. */
  expireTimeMs?: number;
  /** CORTX's data limit: oldest messages are removed beyond this many bytes. */
  dataLimitBytes?: number;
}

/** One line saying what registerMessageType did, for the CLI and logs. */
export function registrationLine(r: Registration): string {
  const n = (p: number) => `${p} partition${p === 1 ? '' : 's'}`;
  if (r.outcome === 'created') return `created message type '${r.type}' with ${n(r.partitions)}`;
  if (r.outcome === 'grown')
    return `grew message type '${r.type}' from ${n(r.previousPartitions ?? 1)} to ${r.partitions}`;
  return `message type '${r.type}' already exists with ${n(r.partitions)}: nothing to change`;
}

function unknownType(type: string, action: string): BusError {
  return new BusError(
    'BUSBAR_ERR_UNKNOWN_TYPE',
    `no message type '${type}' to ${action}: check the name; busbar types list shows the types that exist`,
  );
}

function count(value: number | undefined, name: string): void {
  if (value !== undefined && (!Number.isInteger(value) || value < 1)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `${name} must be a whole number >= 1, not ${JSON.stringify(value)}`,
    );
  }
}

/** CORTX's MessageBusAdmin: message types, partitions, expiry, purge and analytics. */
export class Admin {
  readonly #admin: TransportAdmin;
  readonly #deadLetters: DeadLetters | undefined;
  readonly #capabilities: Capabilities | undefined;
  readonly #transportName: string | undefined;

  /** `transport` enables the dead-letter operations (MessageBus.admin() passes it). */
  constructor(admin: TransportAdmin, transport?: Transport) {
    this.#admin = admin;
    this.#deadLetters = transport ? new DeadLetters(transport) : undefined;
    this.#capabilities = transport?.capabilities;
    this.#transportName = transport?.name;
  }

  #dlq(): DeadLetters {
    if (!this.#deadLetters) {
      throw new BusError(
        'BUSBAR_ERR_UNSUPPORTED',
        'dead-letter operations need the transport: use bus.admin() rather than new Admin(transport.admin)',
      );
    }
    return this.#deadLetters;
  }

  /**
   * Stored messages of `type`, oldest first (from a position or a time where the transport can), without consuming
   * them: no group moves. A transport that cannot browse (capabilities.peek absent) throws BUSBAR_ERR_UNSUPPORTED.
   */
  async peek(type: string, request: PeekRequest = {}): Promise<PeekedMessage[]> {
    checkTypeName(type);
    const count = request.count ?? 20;
    if (!Number.isInteger(count) || count < 1 || count > MAX_PEEK) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `count must be a whole number from 1 to ${MAX_PEEK}, not ${JSON.stringify(request.count)}`,
      );
    }
    const name = this.#transportName ?? 'this transport';
    const can = this.#capabilities?.peek;
    if (!this.#admin.peek || (this.#capabilities && !can)) {
      throw new BusError(
        'BUSBAR_ERR_UNSUPPORTED',
        `${name} cannot browse messages without consuming them (see the peek row of docs/transports.md): ` +
          'read them with a consumer group of your own instead (busbar receive --group)',
      );
    }
    let fromTime: number | undefined;
    if (request.fromTime !== undefined) {
      fromTime =
        request.fromTime instanceof Date
          ? request.fromTime.getTime()
          : typeof request.fromTime === 'number'
            ? request.fromTime
            : Date.parse(request.fromTime);
      if (!Number.isFinite(fromTime)) {
        throw new BusError(
          'BUSBAR_ERR_INVALID_ARGUMENT',
          `fromTime ${JSON.stringify(request.fromTime)} is not a time: give a Date, ms since the epoch or RFC 3339 text`,
        );
      }
      if (can && !can.time) {
        throw new BusError('BUSBAR_ERR_UNSUPPORTED', `${name} can peek from a position but not from a time: use from`);
      }
    }
    if (request.from !== undefined && can && !can.position) {
      throw new BusError(
        'BUSBAR_ERR_UNSUPPORTED',
        `${name} can peek from a time but not from a position: use fromTime`,
      );
    }
    await this.#existing(type, 'peek at');
    return this.#admin.peek(type, { from: request.from, fromTime, count });
  }

  /**
   * The dead letters of `type` (in `<type>.dlq`), oldest first, with reason, attempts, original type and group,
   * without removing them. An unknown type throws BUSBAR_ERR_UNKNOWN_TYPE; a type without dead letters gives [].
   */
  async deadLetters(type: string, options?: DeadLetterReadOptions): Promise<DeadLetter[]> {
    return this.#dlq().list(type, options);
  }

  /** One dead letter of `type` by message id, or undefined. */
  async peekDeadLetter(type: string, id: string, options?: DeadLetterReadOptions): Promise<DeadLetter | undefined> {
    return this.#dlq().peek(type, id, options);
  }

  /** Sends dead letters of `type` back to their original type (all, or `options.ids`) and removes them. */
  async redriveDeadLetters(type: string, options?: RedriveOptions): Promise<RedriveResult> {
    return this.#dlq().redrive(type, options);
  }

  /** Removes every dead letter of `type`; resolves with how many where they were counted one by one. */
  async purgeDeadLetters(type: string): Promise<number | undefined> {
    return this.#dlq().purge(type);
  }

  /**
   * Creates consumer group `group` on `type` before its first consumer starts, so it misses nothing published
   * meanwhile: from now on (`offset: 'latest'`, the default) or from the oldest message kept (`'earliest'`, where the
   * transport has replay). Creates the type too if it does not exist. Idempotent: an existing group keeps its
   * position and what it has not read. Throws BUSBAR_ERR_UNSUPPORTED on a transport that cannot (its capabilities
   * say createGroup: false; docs/transports.md).
   */
  async createConsumerGroup(type: string, group: string, options: { offset?: Offset } = {}): Promise<void> {
    checkTypeName(type);
    checkTypeName(group, 'consumer group');
    const offset = options.offset ?? 'latest';
    if (offset !== 'latest' && offset !== 'earliest') {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `offset must be 'earliest' or 'latest', not ${JSON.stringify(options.offset)}`,
      );
    }
    const ensureGroup = this.#admin.ensureGroup;
    if (this.#capabilities?.createGroup !== true || ensureGroup === undefined) {
      throw new BusError(
        'BUSBAR_ERR_UNSUPPORTED',
        `the ${this.#transportName ?? 'this'} transport cannot create consumer group '${group}' before a consumer joins it: start the group's first consumer (offset: 'earliest' where the transport has replay) before messages are sent`,
      );
    }
    await ensureGroup.call(this.#admin, type, group, offset);
  }

  /**
   * Creates the type, or grows an existing one to `partitions` (as addConcurrency does). Asking an existing type
   * for fewer partitions than it has throws BUSBAR_ERR_PARTITIONS rather than silently keeping them: no broker
   * shrinks partitions. (CORTX's register raised on any existing type; busbar keeps re-registering idempotent.)
   */
  async registerMessageType(type: string, options: { partitions?: number } = {}): Promise<Registration> {
    count(options.partitions, 'partitions');
    checkTypeName(type);
    const existing = await this.#find(type);
    if (!existing) {
      await this.#admin.ensureType(type, options);
      return { type, outcome: 'created', partitions: (await this.#find(type))?.partitions ?? options.partitions ?? 1 };
    }
    const wanted = options.partitions ?? existing.partitions;
    if (wanted < existing.partitions) {
      throw new BusError(
        'BUSBAR_ERR_PARTITIONS',
        `message type '${type}' has ${existing.partitions} partitions and cannot shrink to ${wanted}: ` +
          `partitions only grow; delete and re-create the type to start over with fewer`,
        { details: { partitions: existing.partitions } },
      );
    }
    const found = { type, previousPartitions: existing.partitions };
    if (wanted === existing.partitions) return { ...found, outcome: 'unchanged', partitions: wanted };
    await this.#admin.setPartitions(type, wanted);
    return { ...found, outcome: 'grown', partitions: wanted };
  }

  /** Removes the type, its messages and its groups; an unknown type throws BUSBAR_ERR_UNKNOWN_TYPE. */
  async deregisterMessageType(type: string): Promise<void> {
    await this.#existing(checkTypeName(type), 'delete');
    await this.#admin.deleteType(type);
  }

  async listMessageTypes(): Promise<TypeInfo[]> {
    return this.#admin.listTypes();
  }

  /** CORTX's add_concurrency: grows the type's partitions to `partitions` (never shrinks). */
  async addConcurrency(type: string, partitions: number): Promise<void> {
    count(partitions, 'partitions');
    await this.#admin.setPartitions(checkTypeName(type), partitions);
  }

  /** CORTX's set_message_type_expire. */
  async setExpiry(type: string, options: ExpiryOptions): Promise<void> {
    count(options.expireTimeMs, 'expireTimeMs');
    count(options.dataLimitBytes, 'dataLimitBytes');
    if (options.expireTimeMs === undefined && options.dataLimitBytes === undefined) {
      throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', 'setExpiry needs expireTimeMs, dataLimitBytes or both');
    }
    const retention: Retention = { maxAgeMs: options.expireTimeMs, maxBytes: options.dataLimitBytes };
    await this.#admin.setRetention(checkTypeName(type), retention);
  }

  /** Removes every stored message of the type; an unknown type throws BUSBAR_ERR_UNKNOWN_TYPE. */
  async purge(type: string): Promise<void> {
    await this.#existing(checkTypeName(type), 'purge');
    await this.#admin.purge(type);
  }

  /** Stats of every type, or of one: a named type that does not exist throws BUSBAR_ERR_UNKNOWN_TYPE. */
  async stats(type?: string): Promise<TypeStats[]> {
    if (type === undefined) return this.#admin.stats();
    // Checked first: some brokers answer zeros for any name, which would hide a typo.
    await this.#existing(checkTypeName(type), 'show stats of');
    return this.#admin.stats(type);
  }

  /**
   * Whether there is anything to read from `type`: it exists, or it is the dead-letter type of one that does (a
   * dead-letter type is made when its first message arrives). Readers check it so that a typo fails rather than
   * creates a type nobody sends to.
   */
  async hasMessageType(type: string): Promise<boolean> {
    const suffix = deadLetterTypeOf('');
    const names = type.endsWith(suffix) ? [type, type.slice(0, -suffix.length)] : [type];
    return (await describeTypes(this.#admin, names)).length > 0;
  }

  async #find(type: string): Promise<TypeInfo | undefined> {
    return (await describeTypes(this.#admin, [type]))[0];
  }

  /**
   * Deleting or purging a type that does not exist is almost always a typo: say so rather than succeed.
   * Checked here, once for every transport, so each broker answers the same.
   */
  async #existing(type: string, action: string): Promise<void> {
    if (!(await this.#find(type))) throw unknownType(type, action);
  }

  /** CORTX's get_unread_count: messages the group has not acked yet. */
  async unreadCount(type: string, group: string): Promise<number> {
    const [stats] = await this.stats(type);
    return stats?.groups.find((g) => g.group === group)?.unread ?? stats?.depth ?? 0;
  }
}
