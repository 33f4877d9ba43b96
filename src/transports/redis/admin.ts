/**
 * Admin over Redis: the set `<prefix>:types` lists the types, a hash `<prefix>:{type}:meta` holds each one's
 * settings (partitions, maxAgeMs); stats come from XLEN, XINFO GROUPS and XPENDING.
 */
import { BusError, checkTypeName } from '../../errors.ts';
import type {
  GroupStats,
  Offset,
  PeekedMessage,
  PeekOptions,
  Retention,
  TransportAdmin,
  TypeInfo,
  TypeOptions,
  TypeStats,
} from '../../transport/contract.ts';
import { checkPartitionCount, partitionsCannotShrink } from '../../transport/rules.ts';
import { type RedisConnection, redisError } from './connection.ts';
import { COUNT_AFTER, DROP, PURGE } from './scripts.ts';
import { decodeEntry, entryTime, type Keys } from './wire.ts';

export interface AdminHost {
  readonly connection: RedisConnection;
  readonly keys: Keys;
  /** Forget cached type settings (after a change here). */
  invalidate(type: string): void;
  checkOpen(): void;
}

export class RedisAdmin implements TransportAdmin {
  readonly #host: AdminHost;

  constructor(host: AdminHost) {
    this.#host = host;
  }

  get #redis(): RedisConnection {
    this.#host.checkOpen();
    return this.#host.connection;
  }

  async ensureType(type: string, options: TypeOptions = {}): Promise<void> {
    checkTypeName(type);
    const partitions = checkPartitionCount(type, options.partitions ?? 1);
    const { keys } = this.#host;
    await guard(`registering type '${type}'`, () =>
      Promise.all([
        this.#redis.send(['SADD', keys.types, type]),
        this.#redis.send(['HSETNX', keys.meta(type), 'partitions', String(partitions)]),
      ]),
    );
  }

  /** XRANGE from the position (an entry id) or the time (entry ids start with their ms): nothing is read by a group. */
  async peek(type: string, options: PeekOptions): Promise<PeekedMessage[]> {
    checkTypeName(type);
    const starts = ['-'];
    if (options.from !== undefined) {
      if (!/^\d{1,20}(-\d{1,20})?$/.test(options.from)) {
        throw new BusError(
          'BUSBAR_ERR_INVALID_ARGUMENT',
          `'${options.from}' is not a Redis stream position: give an entry id (ms-seq) a previous peek returned`,
        );
      }
      starts.push(options.from.includes('-') ? options.from : `${options.from}-0`);
    }
    if (options.fromTime !== undefined) starts.push(`${Math.max(0, Math.floor(options.fromTime))}-0`);
    const start = starts.length === 1 ? '-' : starts.slice(1).sort((a, b) => entryTime(b) - entryTime(a))[0]!;
    const reply = await guard(`peeking at '${type}'`, () =>
      this.#redis.sendBinary<[Buffer, Buffer[] | null][]>([
        'XRANGE',
        this.#host.keys.stream(type),
        start,
        '+',
        'COUNT',
        String(options.count),
      ]),
    );
    const out: PeekedMessage[] = [];
    for (const [rawId, fields] of reply ?? []) {
      if (!fields) continue;
      const id = rawId.toString();
      out.push({ position: id, storedAt: entryTime(id), message: decodeEntry(type, id, fields) });
    }
    return out;
  }

  /** XGROUP CREATE at the stream's end (`$`) or start (`0`); an existing group (BUSYGROUP) is left as it is. */
  async ensureGroup(type: string, group: string, offset: Offset): Promise<void> {
    checkTypeName(type);
    checkTypeName(group, 'consumer group');
    await this.ensureType(type);
    const start = offset === 'earliest' ? '0' : '$';
    await guard(`creating group '${group}' on '${type}'`, async () => {
      try {
        await this.#redis.send(['XGROUP', 'CREATE', this.#host.keys.stream(type), group, start, 'MKSTREAM']);
      } catch (error) {
        if (!(error instanceof Error && error.message.startsWith('BUSYGROUP'))) throw error;
      }
    });
  }

  async deleteType(type: string): Promise<void> {
    checkTypeName(type);
    const { keys } = this.#host;
    await guard(`deleting type '${type}'`, () =>
      Promise.all([
        this.#redis.send(['SREM', keys.types, type]),
        this.#redis.run(DROP, [keys.stream(type), keys.meta(type)], [keys.delayed(type, '')]),
      ]),
    );
    this.#host.invalidate(type);
  }

  async listTypes(): Promise<TypeInfo[]> {
    const { keys } = this.#host;
    return guard('listing types', async () => {
      const types = (await this.#redis.send<string[]>(['SMEMBERS', keys.types])).sort();
      return Promise.all(types.map((type) => this.#info(type)));
    });
  }

  async #info(type: string): Promise<TypeInfo> {
    const flat = await this.#redis.send<string[]>(['HGETALL', this.#host.keys.meta(type)]);
    const meta = new Map<string, string>();
    for (let i = 0; i + 1 < flat.length; i += 2) meta.set(flat[i]!, flat[i + 1]!);
    const maxAgeMs = meta.has('maxAgeMs') ? Number(meta.get('maxAgeMs')) : undefined;
    return {
      type,
      partitions: Number(meta.get('partitions') ?? 1),
      retention: maxAgeMs === undefined ? {} : { maxAgeMs },
    };
  }

  /** Records the count (a stream serves any number of consumers per group, so it changes nothing else). */
  async setPartitions(type: string, partitions: number): Promise<void> {
    checkTypeName(type);
    checkPartitionCount(type, partitions);
    await this.ensureType(type);
    const current = (await this.#info(type)).partitions;
    if (partitions < current) throw partitionsCannotShrink(type, current, partitions);
    await guard(`setting partitions of '${type}'`, () =>
      this.#redis.send(['HSET', this.#host.keys.meta(type), 'partitions', String(partitions)]),
    );
  }

  async setRetention(type: string, retention: Retention): Promise<void> {
    checkTypeName(type);
    if (retention.maxBytes !== undefined) {
      throw new BusError(
        'BUSBAR_ERR_UNSUPPORTED',
        `the redis transport cannot limit a type by bytes (Redis streams keep no byte count): set maxAgeMs instead`,
      );
    }
    const maxAgeMs = retention.maxAgeMs;
    if (maxAgeMs !== undefined && (!Number.isInteger(maxAgeMs) || maxAgeMs <= 0)) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `invalid maxAgeMs ${maxAgeMs}: use a positive whole number of ms`,
      );
    }
    await this.ensureType(type);
    const { keys } = this.#host;
    await guard(`setting retention of '${type}'`, async () => {
      if (maxAgeMs === undefined) {
        await this.#redis.send(['HDEL', keys.meta(type), 'maxAgeMs']);
      } else {
        await this.#redis.send(['HSET', keys.meta(type), 'maxAgeMs', String(maxAgeMs)]);
        await this.trim(type, maxAgeMs);
      }
    });
    this.#host.invalidate(type);
  }

  /** Removes entries older than maxAgeMs (by their id's timestamp, i.e. when Redis added them). */
  trim(type: string, maxAgeMs: number): Promise<number> {
    return this.#redis.send<number>(['XTRIM', this.#host.keys.stream(type), 'MINID', String(Date.now() - maxAgeMs)]);
  }

  async purge(type: string): Promise<void> {
    checkTypeName(type);
    const { keys } = this.#host;
    await guard(`purging '${type}'`, () => this.#redis.run(PURGE, [keys.stream(type)], [keys.delayed(type, '')]));
  }

  async stats(type?: string): Promise<TypeStats[]> {
    if (type !== undefined) checkTypeName(type);
    return guard('reading stats', async () => {
      const types =
        type === undefined ? (await this.#redis.send<string[]>(['SMEMBERS', this.#host.keys.types])).sort() : [type];
      return Promise.all(types.map((t) => this.#stats(t)));
    });
  }

  async #stats(type: string): Promise<TypeStats> {
    const info = await this.#info(type);
    if (info.retention.maxAgeMs !== undefined) await this.trim(type, info.retention.maxAgeMs);
    const stream = this.#host.keys.stream(type);
    const exists = (await this.#redis.send<number>(['EXISTS', stream])) === 1;
    if (!exists) return { type, depth: 0, bytes: -1, partitions: info.partitions, groups: [] };
    const [depth, rawGroups] = await Promise.all([
      this.#redis.send<number>(['XLEN', stream]),
      this.#redis.send<unknown[][]>(['XINFO', 'GROUPS', stream]),
    ]);
    const groups = await Promise.all(rawGroups.map((flat) => this.#groupStats(type, stream, flat)));
    return { type, depth, bytes: -1, partitions: info.partitions, groups };
  }

  async #groupStats(type: string, stream: string, flat: unknown[]): Promise<GroupStats> {
    const field = new Map<string, unknown>();
    for (let i = 0; i + 1 < flat.length; i += 2) field.set(String(flat[i]), flat[i + 1]);
    const group = String(field.get('name'));
    const pending = Number(field.get('pending'));
    const lastDelivered = String(field.get('last-delivered-id'));
    const lagReply = field.get('lag');
    const [lag, delayed, summary] = await Promise.all([
      lagReply === null || lagReply === undefined
        ? this.#redis.run<number>(COUNT_AFTER, [stream], [lastDelivered])
        : Number(lagReply),
      this.#redis.send<number>(['ZCARD', this.#host.keys.delayed(type, group)]),
      this.#redis.send<[number, string | null]>(['XPENDING', stream, group]),
    ]);
    let oldest: string | null = summary[1] ?? null;
    if (lag > 0) {
      const next = await this.#redis.send<[string, unknown][]>([
        'XRANGE',
        stream,
        `(${lastDelivered}`,
        '+',
        'COUNT',
        '1',
      ]);
      const first = next[0]?.[0];
      if (first !== undefined && (oldest === null || entryTime(first) < entryTime(oldest))) oldest = first;
    }
    return {
      group,
      unread: lag + pending,
      inflight: Math.max(0, pending - delayed),
      oldestAgeMs: oldest === null ? null : Math.max(0, Date.now() - entryTime(oldest)),
    };
  }
}

async function guard<T>(context: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    throw redisError(error, 'BUSBAR_ERR_BROKER', context);
  }
}
