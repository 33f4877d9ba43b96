import { hostname } from 'node:os';
import type { MessageBus } from '../bus/bus.ts';
import { ackTimeout, wholeNumber } from '../bus/consumer.ts';
import type { BusOptions } from '../config/index.ts';
import { BusError, checkTypeName } from '../errors.ts';
import type { Offset } from '../transport/contract.ts';
import { makeRename, parsePatternList, type Rename, type TypePattern } from './patterns.ts';

/** The consumer group a bridge reads with when none is given: one per bridge keeps its place across restarts. */
export const DEFAULT_BRIDGE_GROUP = 'busbar-bridge';
/** Long enough that a target outage of a minute does not make the source hand the same messages out again. */
export const DEFAULT_BRIDGE_ACK_TIMEOUT_MS = 60_000;
export const DEFAULT_BRIDGE_PREFETCH = 1000;
export const DEFAULT_BRIDGE_BATCH = 500;
export const DEFAULT_DISCOVER_INTERVAL_MS = 30_000;
export const DEFAULT_LAG_INTERVAL_MS = 5000;
/** close() publishes what was read for at most this long, then leaves the rest to the source. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;
/** Lag samples that must each be higher than the one before for the bridge to say it falls behind. */
export const BEHIND_SAMPLES = 3;

export type Endpoint = string | BusOptions | MessageBus;

export interface BridgeOptions {
  /** The source: a broker URL, bus options, or a connected MessageBus (which the bridge then does not close). */
  from: Endpoint;
  /** The target, as `from`. */
  to: Endpoint;
  /**
   * The types to move: names, and patterns (`orders.*`: one dotted part; `orders.**`: any run). Default: every type
   * the source lists (`**`). Patterns are matched against the source's type list at start and every
   * `discoverIntervalMs`; exact names are read at once (the type is created at the source if missing).
   */
  types?: string | readonly string[];
  /** The consumer group at the source. Default DEFAULT_BRIDGE_GROUP. */
  group?: string;
  /** Target names: `{ 'legacy.*': 'shop.*' }`, or pairs; the first that matches wins; unmatched types keep their name. */
  rename?: Readonly<Record<string, string>> | ReadonlyArray<readonly [string, string]>;
  /** Where the group starts on a type it has never read (default earliest: everything the source holds). */
  offset?: Offset;
  ackTimeoutMs?: number;
  /** Messages read ahead of the target's confirms, per type. */
  prefetch?: number;
  /** Most messages per publish. */
  maxBatch?: number;
  /** How often patterns are matched against the source's types again (ms); 0: only at start. */
  discoverIntervalMs?: number;
  /** How often the source's unread count for the group is sampled (ms); 0: never (no lag, no "behind"). */
  lagIntervalMs?: number;
  drainTimeoutMs?: number;
  /** Names the bridge's consumers at the source (logs, broker consumer names). Default `bridge-<host>-<pid>`. */
  consumerId?: string;
}

export interface ResolvedBridgeOptions {
  readonly patterns: readonly TypePattern[];
  readonly group: string;
  readonly consumerId: string;
  readonly renames: readonly Rename[];
  readonly offset: Offset;
  readonly ackTimeoutMs: number;
  readonly prefetch: number;
  readonly maxBatch: number;
  readonly discoverIntervalMs: number;
  readonly lagIntervalMs: number;
  readonly drainTimeoutMs: number;
}

function interval(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (value === 0) return 0;
  return wholeNumber(value, name);
}

export function resolveBridgeOptions(options: BridgeOptions): ResolvedBridgeOptions {
  if (options === null || typeof options !== 'object') {
    throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', 'a bridge takes options: { from: URL, to: URL, types?: [...] }');
  }
  for (const side of ['from', 'to'] as const) {
    if (options[side] === undefined || options[side] === '') {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `a bridge needs '${side}': the ${side === 'from' ? 'source' : 'target'} broker's URL (e.g. kafka://host:9092)`,
      );
    }
  }
  const patterns = parsePatternList(options.types ?? '**');
  if (patterns.length === 0) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      'types names no type: give names or patterns, e.g. orders,billing.*',
    );
  }
  const offset = options.offset ?? 'earliest';
  if (offset !== 'earliest' && offset !== 'latest') {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `offset must be 'earliest' or 'latest', not ${JSON.stringify(offset)}`,
    );
  }
  const group = checkTypeName(options.group ?? DEFAULT_BRIDGE_GROUP, 'consumer group');
  const pairs = Array.isArray(options.rename)
    ? (options.rename as ReadonlyArray<readonly [string, string]>)
    : Object.entries(options.rename ?? {});
  return Object.freeze({
    patterns,
    group,
    consumerId: options.consumerId ?? `bridge-${hostname()}-${process.pid}`,
    renames: pairs.map(([from, to]) => makeRename(from, to)),
    offset,
    ackTimeoutMs: ackTimeout(options.ackTimeoutMs ?? DEFAULT_BRIDGE_ACK_TIMEOUT_MS),
    prefetch: wholeNumber(options.prefetch ?? DEFAULT_BRIDGE_PREFETCH, 'prefetch'),
    maxBatch: wholeNumber(options.maxBatch ?? DEFAULT_BRIDGE_BATCH, 'maxBatch'),
    discoverIntervalMs: interval(options.discoverIntervalMs, DEFAULT_DISCOVER_INTERVAL_MS, 'discoverIntervalMs'),
    lagIntervalMs: interval(options.lagIntervalMs, DEFAULT_LAG_INTERVAL_MS, 'lagIntervalMs'),
    drainTimeoutMs: wholeNumber(options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS, 'drainTimeoutMs'),
  });
}
