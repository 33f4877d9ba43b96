/**
 * Prometheus metrics for a library user, no gateway needed: counters fed by the tracing channels (src/bus/tracing.ts)
 * of every bus in the process, plus the broker's queue stats when a bus is given.
 *
 *   const metrics = new BusMetrics({ bus });
 *   http.createServer(async (_, res) => res.end(await metrics.render())).listen(9464);
 */
import type { TracingChannelSubscribers } from 'node:diagnostics_channel';
import { brokerStatsFamilies, Exposition, labels } from '../server/prometheus.ts';
import type { MessageBus } from './bus.ts';
import {
  ackChannel,
  deliverChannel,
  type MessageContext,
  nackChannel,
  type PublishContext,
  publishChannel,
} from './tracing.ts';

/** The content type of render()'s text. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

interface HandlerTimes {
  count: number;
  sum: number;
}

export class BusMetrics {
  readonly #bus: MessageBus | undefined;
  readonly published = new Map<string, number>();
  readonly publishErrors = new Map<string, number>();
  /** `type \0 group` keyed. */
  readonly delivered = new Map<string, number>();
  readonly acked = new Map<string, number>();
  readonly nacked = new Map<string, number>();
  readonly failed = new Map<string, number>();
  readonly handled = new Map<string, HandlerTimes>();
  readonly #started = new WeakMap<object, bigint>();
  readonly #unsubscribe: () => void;

  /** Starts counting at once; `bus` adds its broker's depth, bytes, unread, in-flight and oldest age. */
  constructor(options: { bus?: MessageBus } = {}) {
    this.#bus = options.bus;
    const bump = (map: Map<string, number>, key: string, n = 1) => map.set(key, (map.get(key) ?? 0) + n);
    const key = (ctx: MessageContext) => `${ctx.type}\0${ctx.group ?? ''}`;
    const publish: TracingChannelSubscribers<PublishContext> = {
      start() {},
      end() {},
      asyncStart() {},
      asyncEnd: (ctx) => bump(this.published, ctx.type, ctx.messages.length),
      error: (ctx) => bump(this.publishErrors, ctx.type, ctx.messages.length),
    };
    const deliver: TracingChannelSubscribers<MessageContext> = {
      start: (ctx) => {
        bump(this.delivered, key(ctx));
        if (!ctx.sync) this.#started.set(ctx, process.hrtime.bigint());
      },
      end() {},
      asyncStart() {},
      asyncEnd: (ctx) => this.#handled(ctx, key(ctx)),
      error: (ctx) => {
        bump(this.failed, key(ctx));
        this.#handled(ctx, key(ctx));
      },
    };
    const settled = (map: Map<string, number>): TracingChannelSubscribers<MessageContext> => ({
      start() {},
      end() {},
      asyncStart() {},
      asyncEnd: (ctx) => bump(map, key(ctx)),
      error() {},
    });
    const ack = settled(this.acked);
    const nack = settled(this.nacked);
    publishChannel.subscribe(publish);
    deliverChannel.subscribe(deliver);
    ackChannel.subscribe(ack);
    nackChannel.subscribe(nack);
    this.#unsubscribe = () => {
      publishChannel.unsubscribe(publish);
      deliverChannel.unsubscribe(deliver);
      ackChannel.unsubscribe(ack);
      nackChannel.unsubscribe(nack);
    };
  }

  #handled(ctx: object, key: string): void {
    const start = this.#started.get(ctx);
    if (start === undefined) return;
    this.#started.delete(ctx);
    const times = this.handled.get(key) ?? { count: 0, sum: 0 };
    times.count++;
    times.sum += Number(process.hrtime.bigint() - start) / 1e9;
    this.handled.set(key, times);
  }

  /** Prometheus text exposition (0.0.4). Broker stats are left out (busbar_broker_up 0) when the broker fails. */
  async render(): Promise<string> {
    const out = new Exposition();
    const byType = (map: Map<string, number>) =>
      [...map].map(([type, n]): [Record<string, string>, number] => [{ type }, n]);
    const byGroup = (map: Map<string, number>) =>
      [...map].map(([k, n]): [Record<string, string>, number] => {
        const [type = '', group = ''] = k.split('\0');
        return [{ type, group }, n];
      });
    out.family(
      'busbar_published_total',
      'counter',
      'Messages the broker accepted from this process.',
      byType(this.published),
    );
    out.family('busbar_publish_failed_total', 'counter', 'Messages whose publish failed.', byType(this.publishErrors));
    out.family(
      'busbar_delivered_total',
      'counter',
      'Messages handed to a handler or receive().',
      byGroup(this.delivered),
    );
    out.family('busbar_acked_total', 'counter', 'Messages acked.', byGroup(this.acked));
    out.family('busbar_nacked_total', 'counter', 'Messages nacked (returned for a retry).', byGroup(this.nacked));
    out.family('busbar_handler_failed_total', 'counter', 'Handler runs that threw.', byGroup(this.failed));
    const times = [...this.handled].map(([k, t]) => ({
      labels: { type: k.split('\0')[0]!, group: k.split('\0')[1]! },
      ...t,
    }));
    out.lines.push(
      '# HELP busbar_handler_seconds Time handlers took per message.',
      '# TYPE busbar_handler_seconds summary',
    );
    for (const t of times) {
      const l = labels(t.labels);
      out.lines.push(`busbar_handler_seconds_sum${l} ${t.sum}`, `busbar_handler_seconds_count${l} ${t.count}`);
    }
    if (this.#bus) {
      let stats: Awaited<ReturnType<ReturnType<MessageBus['admin']>['stats']>> | undefined;
      try {
        stats = await this.#bus.admin().stats();
      } catch {
        stats = undefined;
      }
      out.family('busbar_broker_up', 'gauge', 'Whether the broker answered the stats request.', [[{}, stats ? 1 : 0]]);
      if (stats) brokerStatsFamilies(out, stats);
    }
    return `${out.lines.join('\n')}\n`;
  }

  /** Stops counting. */
  close(): void {
    this.#unsubscribe();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
