/**
 * What the gateway counts: HTTP answers, and messages published, delivered, acked, nacked and expired per type and
 * group, with per-second rates over the last minute. Rendered as Prometheus text by prometheus.ts.
 */

const WINDOW_SECONDS = 60;

/** Events per second over the last minute, from one-second buckets. */
class RateWindow {
  readonly #buckets = new Float64Array(WINDOW_SECONDS);
  readonly #stamps = new Float64Array(WINDOW_SECONDS);

  add(n: number, nowMs: number): void {
    const second = Math.floor(nowMs / 1000);
    const slot = second % WINDOW_SECONDS;
    if (this.#stamps[slot] !== second) {
      this.#stamps[slot] = second;
      this.#buckets[slot] = 0;
    }
    this.#buckets[slot]! += n;
  }

  perSecond(nowMs: number): number {
    const second = Math.floor(nowMs / 1000);
    let sum = 0;
    for (let i = 0; i < WINDOW_SECONDS; i++) {
      if (second - this.#stamps[i]! < WINDOW_SECONDS) sum += this.#buckets[i]!;
    }
    return Math.round((sum / WINDOW_SECONDS) * 1000) / 1000;
  }
}

export type GroupEvent = 'delivered' | 'acked' | 'nacked' | 'expired';
export const GROUP_EVENTS: readonly GroupEvent[] = ['delivered', 'acked', 'nacked', 'expired'];

interface Series {
  total: number;
  rate: RateWindow;
}

function series(): Series {
  return { total: 0, rate: new RateWindow() };
}

export interface GroupRates {
  deliveredPerSec: number;
  ackedPerSec: number;
  nackedPerSec: number;
  expiredPerSec: number;
}

export class Metrics {
  readonly started = Date.now();
  readonly http = new Map<string, number>();
  readonly published = new Map<string, Series>();
  /** `type \0 group` -> event -> series. */
  readonly groups = new Map<string, Record<GroupEvent, Series>>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  httpAnswer(method: string, route: string, status: number): void {
    const key = `${method} ${route} ${status}`;
    this.http.set(key, (this.http.get(key) ?? 0) + 1);
  }

  publish(type: string, n: number): void {
    let s = this.published.get(type);
    if (!s) {
      s = series();
      this.published.set(type, s);
    }
    s.total += n;
    s.rate.add(n, this.#now());
  }

  group(event: GroupEvent, type: string, group: string, n = 1): void {
    const key = `${type}\0${group}`;
    let entry = this.groups.get(key);
    if (!entry) {
      entry = { delivered: series(), acked: series(), nacked: series(), expired: series() };
      this.groups.set(key, entry);
    }
    entry[event].total += n;
    entry[event].rate.add(n, this.#now());
  }

  publishedPerSec(type: string): number {
    return this.published.get(type)?.rate.perSecond(this.#now()) ?? 0;
  }

  groupRates(type: string, group: string): GroupRates {
    const entry = this.groups.get(`${type}\0${group}`);
    const now = this.#now();
    const rate = (e: GroupEvent) => entry?.[e].rate.perSecond(now) ?? 0;
    return {
      deliveredPerSec: rate('delivered'),
      ackedPerSec: rate('acked'),
      nackedPerSec: rate('nacked'),
      expiredPerSec: rate('expired'),
    };
  }
}
