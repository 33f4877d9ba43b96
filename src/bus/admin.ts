import { BusError, checkTypeName } from '../errors.ts';
import type { Retention, TransportAdmin, TypeInfo, TypeStats } from '../transport/contract.ts';

export interface ExpiryOptions {
  /** CORTX's expire time: messages older than this are removed. */
  expireTimeMs?: number;
  /** CORTX's data limit: oldest messages are removed beyond this many bytes. */
  dataLimitBytes?: number;
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

  constructor(admin: TransportAdmin) {
    this.#admin = admin;
  }

  async registerMessageType(type: string, options: { partitions?: number } = {}): Promise<void> {
    count(options.partitions, 'partitions');
    await this.#admin.ensureType(checkTypeName(type), options);
  }

  async deregisterMessageType(type: string): Promise<void> {
    await this.#admin.deleteType(checkTypeName(type));
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

  async purge(type: string): Promise<void> {
    await this.#admin.purge(checkTypeName(type));
  }

  async stats(type?: string): Promise<TypeStats[]> {
    return this.#admin.stats(type === undefined ? undefined : checkTypeName(type));
  }

  /** CORTX's get_unread_count: messages the group has not acked yet. */
  async unreadCount(type: string, group: string): Promise<number> {
    const [stats] = await this.stats(type);
    return stats?.groups.find((g) => g.group === group)?.unread ?? stats?.depth ?? 0;
  }
}
