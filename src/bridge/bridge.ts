/**
 * A bridge moves every message of the chosen types from one broker to another: `busbar bridge` and the library call
 * `Bridge.start()`. It sits above the bus layer and uses nothing but two MessageBus instances, so any pair of
 * transports works, a new transport included, without a line here.
 *
 * Guarantees (docs/bridge.md): a message is acked at the source only after the target confirmed it; id, key,
 * source, time, content type, headers and body travel unchanged (only the type, with a rename); per type, messages
 * are published in the order the source delivered them, so order per key holds where the source keeps it; the
 * source's durable consumer group is the bridge's place, so a restarted bridge goes on where the last one stopped.
 * A crash between the target's confirm and the source's ack sends those messages again, with the same ids.
 */
import { EventEmitter } from 'node:events';
import { MessageBus } from '../bus/bus.ts';
import { BusError, toBusError } from '../errors.ts';
import { Lane, type LaneHost, type LaneStats } from './lane.ts';
import {
  BEHIND_SAMPLES,
  type BridgeOptions,
  type Endpoint,
  type ResolvedBridgeOptions,
  resolveBridgeOptions,
} from './options.ts';
import { targetTypeOf } from './patterns.ts';

/** The throughput reported is over this window. */
const RATE_WINDOW_MS = 10_000;
const RATE_SAMPLE_MS = 1000;

export interface BridgeStats {
  /** The transports' names, e.g. `kafka` and `rabbitmq`. */
  readonly from: string;
  readonly to: string;
  readonly group: string;
  readonly startedAt: string;
  readonly uptimeMs: number;
  /** Sums over the types (see LaneStats). */
  readonly received: number;
  readonly forwarded: number;
  readonly pending: number;
  readonly publishRetries: number;
  readonly ackFailures: number;
  readonly consumerRestarts: number;
  /** Messages per second the target confirmed, over the last 10 s. */
  readonly ratePerSec: number;
  /** The source's unread count for the bridge's group, summed over the types; null where it is not known. */
  readonly lag: number | null;
  /** The lag grew at each of the last BEHIND_SAMPLES samples: the source gets messages faster than the bridge moves them. */
  readonly behind: boolean;
  readonly types: readonly LaneStats[];
}

export interface BridgeEvents {
  /** Something went wrong and is being retried (a publish, a consumer, an ack, a type listing). */
  warning: [error: BusError];
  /** A type is now being moved. */
  type: [lane: LaneStats];
  /** The bridge started to fall behind (see BridgeStats.behind). */
  behind: [stats: BridgeStats];
  /** It no longer falls behind. */
  'caught-up': [stats: BridgeStats];
}

interface Side {
  readonly bus: MessageBus;
  /** The bridge opened it, so closes it. */
  readonly owned: boolean;
}

async function open(endpoint: Endpoint): Promise<Side> {
  if (endpoint instanceof MessageBus) return { bus: endpoint, owned: false };
  return { bus: await MessageBus.connect(endpoint), owned: true };
}

export class Bridge extends EventEmitter<BridgeEvents> {
  readonly options: ResolvedBridgeOptions;
  /** Resolves when the bridge was closed; rejects with the error that stopped it (a message the target refuses). */
  readonly done: Promise<void>;
  readonly #source: Side;
  readonly #target: Side;
  readonly #lanes = new Map<string, Lane>();
  readonly #startedAt = Date.now();
  readonly #timers: NodeJS.Timeout[] = [];
  /** [time, forwarded] once a second, RATE_WINDOW_MS of them. */
  readonly #rate: Array<readonly [number, number]> = [];
  readonly #lagHistory: number[] = [];
  #lag: number | null = null;
  #behind = false;
  /** The lag when it started to grow, while behind: caught up once the lag is back there. */
  #behindFrom = 0;
  #discovering: Promise<void> | undefined;
  #failure: BusError | undefined;
  #closing: Promise<void> | undefined;
  #settle: (() => void) | undefined;
  /** Source and target are the same broker: a type may not be published to itself, nor to one the bridge reads. */
  readonly #loopback: boolean;

  /** Connects to both brokers, starts moving the types named exactly and those the source lists now. */
  static async start(options: BridgeOptions): Promise<Bridge> {
    const resolved = resolveBridgeOptions(options);
    const source = await open(options.from);
    let target: Side;
    try {
      target = await open(options.to);
    } catch (error) {
      if (source.owned) await source.bus.close().catch(() => {});
      throw error;
    }
    const bridge = new Bridge(resolved, source, target, sameBroker(options.from, options.to));
    try {
      await bridge.#begin();
    } catch (error) {
      await bridge.close().catch(() => {});
      throw error;
    }
    return bridge;
  }

  private constructor(options: ResolvedBridgeOptions, source: Side, target: Side, loopback: boolean) {
    super();
    this.options = options;
    this.#loopback = loopback;
    this.#source = source;
    this.#target = target;
    this.done = new Promise((resolve, reject) => {
      this.#settle = () => (this.#failure ? reject(this.#failure) : resolve());
    });
    this.done.catch(() => {});
  }

  async #begin(): Promise<void> {
    for (const pattern of this.options.patterns) if (pattern.exact) this.#add(pattern.text, 1);
    if (this.options.patterns.some((p) => !p.exact)) await this.#discover(true);
    this.#every(this.options.discoverIntervalMs, () => void this.#discover(false));
    this.#every(RATE_SAMPLE_MS, () => this.#sampleRate());
    if (this.#source.bus.capabilities.lag) this.#every(this.options.lagIntervalMs, () => void this.#sampleLag());
  }

  #every(ms: number, run: () => void): void {
    if (ms <= 0) return;
    const timer = setInterval(run, ms);
    timer.unref();
    this.#timers.push(timer);
  }

  /** Resolves once every type found so far has its consumer attached at the source. */
  async ready(): Promise<void> {
    await Promise.all([...this.#lanes.values()].map((lane) => lane.ready));
  }

  /** The types being moved, as source -> target. */
  get types(): ReadonlyMap<string, string> {
    return new Map([...this.#lanes.values()].map((lane) => [lane.type, lane.target]));
  }

  /**
   * Matches the patterns against the source's types now (it also runs every discoverIntervalMs); resolves once the
   * new types' consumers are attached. At start a failed listing throws; later it is a warning and the next round
   * tries again.
   */
  async discover(): Promise<void> {
    await this.#discover(false);
  }

  #discover(initial: boolean): Promise<void> {
    this.#discovering ??= (async () => {
      try {
        const found = await this.#source.bus.admin().listMessageTypes();
        const added: Lane[] = [];
        for (const info of found) {
          if (this.#lanes.has(info.type) || this.#closing) continue;
          if (!this.options.patterns.some((p) => !p.exact && p.match(info.type))) continue;
          const lane = this.#add(info.type, info.partitions);
          if (lane) added.push(lane);
        }
        await Promise.all(added.map((lane) => lane.ready));
      } catch (error) {
        const failure = toBusError(error, 'BUSBAR_ERR_CONNECTION', 'listing the source types');
        if (initial) throw failure;
        this.emit('warning', failure);
      } finally {
        this.#discovering = undefined;
      }
    })();
    return this.#discovering;
  }

  #add(type: string, partitions: number): Lane | undefined {
    if (this.#lanes.has(type) || this.#closing) return undefined;
    const target = targetTypeOf(type, this.options.renames);
    if (this.#loopback && this.#loops(type, target)) return undefined;
    const lane = new Lane(this.#host, type, target);
    this.#lanes.set(type, lane);
    void this.#prepareTarget(target, partitions);
    this.emit('type', lane.stats());
    return lane;
  }

  /**
   * On one broker, moving a type onto itself, or reading a type this bridge writes (or writing one it reads), would
   * send every message round for ever: an exact name that would is an error, a type a pattern found is skipped.
   */
  #loops(type: string, target: string): boolean {
    const lanes = [...this.#lanes.values()];
    const loops = target === type || lanes.some((l) => l.target === type || l.type === target);
    if (!loops) return false;
    const why = `'${type}' -> '${target}' on the same broker would send messages round in a loop`;
    if (this.options.patterns.some((p) => p.exact && p.text === type)) {
      throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', `${why}: rename it to a type the bridge does not read`);
    }
    this.emit('warning', new BusError('BUSBAR_ERR_INVALID_ARGUMENT', `${why}: skipped`));
    return true;
  }

  /** A target type made before the first publish gets the source's partitions, so keys spread as at the source. */
  async #prepareTarget(type: string, partitions: number): Promise<void> {
    if (partitions <= 1 || !this.#target.bus.capabilities.partitions) return;
    try {
      const admin = this.#target.bus.admin();
      if (!(await admin.hasMessageType(type))) await admin.registerMessageType(type, { partitions });
    } catch (error) {
      this.emit('warning', toBusError(error, 'BUSBAR_ERR_BROKER', `creating '${type}' at the target`));
    }
  }

  get #host(): LaneHost {
    const o = this.options;
    return {
      source: this.#source.bus,
      target: this.#target.bus,
      group: o.group,
      consumerId: o.consumerId,
      offset: o.offset,
      ackTimeoutMs: o.ackTimeoutMs,
      prefetch: o.prefetch,
      maxBatch: o.maxBatch,
      warn: (error) => this.emit('warning', error),
      fail: (error) => {
        this.#failure ??= error;
        void this.close().catch(() => {});
      },
    };
  }

  #sampleRate(): void {
    const forwarded = this.#sum((s) => s.forwarded);
    this.#rate.push([Date.now(), forwarded]);
    while (this.#rate.length > RATE_WINDOW_MS / RATE_SAMPLE_MS + 1) this.#rate.shift();
  }

  #ratePerSec(): number {
    const first = this.#rate[0];
    if (!first) return 0;
    const now = Date.now();
    const seconds = (now - first[0]) / 1000;
    return seconds > 0 ? Math.round((this.#sum((s) => s.forwarded) - first[1]) / seconds) : 0;
  }

  async #sampleLag(): Promise<void> {
    const admin = this.#source.bus.admin();
    let total = 0;
    let known = true;
    await Promise.all(
      [...this.#lanes.values()].map(async (lane) => {
        try {
          const [stats] = await admin.stats(lane.type);
          const unread = stats?.groups.find((g) => g.group === this.options.group)?.unread;
          lane.lag = unread ?? null;
          if (unread === undefined || unread < 0) known = false;
          else total += unread;
        } catch {
          lane.lag = null;
          known = false;
        }
      }),
    );
    if (this.#closing) return;
    this.#lag = known ? total : null;
    if (!known) return;
    this.#lagHistory.push(total);
    while (this.#lagHistory.length > BEHIND_SAMPLES + 1) this.#lagHistory.shift();
    const h = this.#lagHistory;
    const growing = h.length === BEHIND_SAMPLES + 1 && h.every((v, i) => i === 0 || v > h[i - 1]!);
    if (growing && !this.#behind) {
      this.#behind = true;
      this.#behindFrom = h[0]!;
      this.emit('behind', this.stats());
    } else if (this.#behind && !growing && total <= this.#behindFrom) {
      this.#behind = false;
      this.emit('caught-up', this.stats());
    }
  }

  #sum(pick: (s: LaneStats) => number): number {
    let n = 0;
    for (const lane of this.#lanes.values()) n += pick(lane.stats());
    return n;
  }

  stats(): BridgeStats {
    const types = [...this.#lanes.values()].map((lane) => lane.stats());
    const sum = (pick: (s: LaneStats) => number) => types.reduce((n, s) => n + pick(s), 0);
    return {
      from: this.#source.bus.transportName,
      to: this.#target.bus.transportName,
      group: this.options.group,
      startedAt: new Date(this.#startedAt).toISOString(),
      uptimeMs: Date.now() - this.#startedAt,
      received: sum((s) => s.received),
      forwarded: sum((s) => s.forwarded),
      pending: sum((s) => s.pending),
      publishRetries: sum((s) => s.publishRetries),
      ackFailures: sum((s) => s.ackFailures),
      consumerRestarts: sum((s) => s.consumerRestarts),
      ratePerSec: this.#ratePerSec(),
      lag: this.#lag,
      behind: this.#behind,
      types,
    };
  }

  /**
   * Idempotent. Stops reading, publishes and acks what was read (for at most drainTimeoutMs; the rest stays
   * unacked and returns to the source's group), then closes the brokers the bridge connected to.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const timer of this.#timers) clearInterval(timer);
      const lanes = [...this.#lanes.values()];
      for (const lane of lanes) this.#failure ? lane.abandon() : lane.stop();
      const drained = Promise.all(lanes.map((lane) => lane.done));
      if (!(await within(drained, this.options.drainTimeoutMs))) {
        for (const lane of lanes) lane.abandon();
        await within(drained, this.options.drainTimeoutMs);
      }
      await this.#discovering?.catch(() => {});
      const owned = [this.#source, this.#target].filter((side) => side.owned);
      await Promise.allSettled(owned.map((side) => side.bus.close()));
      this.#settle?.();
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Both ends name the same broker (the same bus, URL, or options' broker URL). */
function sameBroker(from: Endpoint, to: Endpoint): boolean {
  if (from === to) return true;
  const url = (e: Endpoint) => (typeof e === 'string' ? e : e instanceof MessageBus ? undefined : e.broker);
  return url(from) !== undefined && url(from) === url(to);
}

/** True when `work` settled within `ms`. */
async function within(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([work.then(() => true), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Starts a bridge: `await bridge({ from: 'kafka://...', to: 'amqp://...', types: ['orders.*'] })`. */
export function bridge(options: BridgeOptions): Promise<Bridge> {
  return Bridge.start(options);
}
