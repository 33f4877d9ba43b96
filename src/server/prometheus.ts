/** Prometheus text exposition (format 0.0.4) of the gateway's counters and the broker's queue stats. */
import type { TypeStats } from '../transport/contract.ts';
import { GROUP_EVENTS, type Metrics } from './metrics.ts';

export interface Gauges {
  leases: number;
  consumers: number;
  streams: number;
  longPolls: number;
  queuedPulls: number;
}

export function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function labels(pairs: Record<string, string | number>): string {
  const parts = Object.entries(pairs).map(([k, v]) => `${k}="${escapeLabel(String(v))}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

export class Exposition {
  readonly lines: string[] = [];

  family(name: string, type: 'counter' | 'gauge', help: string, samples: [Record<string, string | number>, number][]) {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [l, value] of samples) this.lines.push(`${name}${labels(l)} ${value}`);
  }
}

/** `stats` is undefined when the broker could not be asked (then busbar_broker_up is 0). */
export function renderMetrics(metrics: Metrics, gauges: Gauges, stats: readonly TypeStats[] | undefined): string {
  const out = new Exposition();
  out.family('busbar_broker_up', 'gauge', 'Whether the broker answered the last stats request.', [[{}, stats ? 1 : 0]]);
  out.family(
    'busbar_gateway_http_requests_total',
    'counter',
    'HTTP answers by method, route and status.',
    [...metrics.http].map(([key, n]) => {
      const [method = '', route = '', status = ''] = key.split(' ');
      return [{ method, route, status }, n];
    }),
  );
  out.family(
    'busbar_gateway_published_total',
    'counter',
    'Messages published through the gateway.',
    [...metrics.published].map(([type, s]) => [{ type }, s.total]),
  );
  for (const event of GROUP_EVENTS) {
    out.family(
      `busbar_gateway_${event}_total`,
      'counter',
      `Messages ${event} through the gateway, per type and group.`,
      [...metrics.groups].map(([key, series]) => {
        const [type = '', group = ''] = key.split('\0');
        return [{ type, group }, series[event].total];
      }),
    );
  }
  out.family('busbar_gateway_leases', 'gauge', 'Messages leased to HTTP clients now.', [[{}, gauges.leases]]);
  out.family('busbar_gateway_consumers', 'gauge', 'Consumers the gateway holds open.', [[{}, gauges.consumers]]);
  out.family('busbar_gateway_streams', 'gauge', 'Server-Sent Event streams open.', [[{}, gauges.streams]]);
  out.family('busbar_gateway_long_polls', 'gauge', 'Long polls waiting.', [[{}, gauges.longPolls]]);
  out.family(
    'busbar_gateway_queued_pulls',
    'gauge',
    'Pulls waiting for a lease of their group to end (at server.prefetch).',
    [[{}, gauges.queuedPulls]],
  );
  if (stats) brokerStatsFamilies(out, stats);
  return `${out.lines.join('\n')}\n`;
}

/** The broker's queue stats as gauges: depth and bytes per type; unread, in flight, oldest age per group. */
export function brokerStatsFamilies(out: Exposition, stats: readonly TypeStats[]): void {
  out.family(
    'busbar_type_depth',
    'gauge',
    'Messages the broker holds per type.',
    stats.map((s) => [{ type: s.type }, s.depth]),
  );
  out.family(
    'busbar_type_bytes',
    'gauge',
    'Payload bytes the broker holds per type (-1: unknown).',
    stats.map((s) => [{ type: s.type }, s.bytes]),
  );
  const groups = stats.flatMap((s) => s.groups.map((g) => ({ type: s.type, ...g })));
  out.family(
    'busbar_group_unread',
    'gauge',
    'Messages a group has not acked.',
    groups.map((g) => [{ type: g.type, group: g.group }, g.unread]),
  );
  out.family(
    'busbar_group_inflight',
    'gauge',
    'Messages delivered to a group and not yet acked (-1: unknown).',
    groups.map((g) => [{ type: g.type, group: g.group }, g.inflight]),
  );
  out.family(
    'busbar_group_oldest_unacked_age_seconds',
    'gauge',
    'Age of the oldest message a group has not acked.',
    groups
      .filter((g) => g.oldestAgeMs !== null)
      .map((g) => [{ type: g.type, group: g.group }, (g.oldestAgeMs ?? 0) / 1000]),
  );
  const dropping = groups.filter((g) => g.dropped !== undefined);
  if (dropping.length > 0) {
    out.family(
      'busbar_group_dropped_total',
      'counter',
      'Messages a group lost to its bounded buffer (transports without a broker: zeromq).',
      dropping.map((g) => [{ type: g.type, group: g.group }, g.dropped ?? 0]),
    );
  }
}
