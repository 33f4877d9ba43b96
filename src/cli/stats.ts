import { setTimeout as sleep } from 'node:timers/promises';
import type { TypeStats } from '../transport/contract.ts';
import { integer, parse } from './args.ts';
import { type CommandContext, connect, stopOnSignals } from './common.ts';

export const STATS_HELP = `Usage: busbar stats [type] [--json] [--watch [MS]]

Shows depth and bytes per type and unread, in-flight and oldest age per consumer group.

  --json           one JSON object per refresh: { time, types: [...] }
  --watch [MS]     refresh every MS milliseconds (default 2000) until Ctrl-C or SIGTERM (exit 0). On a terminal
                   each refresh redraws the screen; into a pipe or file each one is a new block after a blank line`;

const DEFAULT_INTERVAL_MS = 2000;

export async function stats(argv: string[], ctx: CommandContext): Promise<void> {
  const { rest, watch } = takeWatch(argv);
  const { values, positionals } = parse('stats', rest, { json: { type: 'boolean' } });
  const intervalMs = watch === '' ? DEFAULT_INTERVAL_MS : integer(watch, 'watch', 100);
  const redraw = ctx.out.isTTY === true;
  const bus = await connect(values);
  const stop = stopOnSignals();
  try {
    for (let refresh = 0; !stop.signal.aborted; refresh++) {
      const result = await bus.admin().stats(positionals[0]);
      if (values.json) ctx.out.write(`${JSON.stringify({ time: new Date().toISOString(), types: result })}\n`);
      else if (intervalMs === undefined) ctx.out.write(`${formatStats(result)}\n`);
      else ctx.out.write(`${redraw ? '\x1b[2J\x1b[H' : refresh > 0 ? '\n' : ''}${formatStats(result)}\n`);
      if (intervalMs === undefined) break;
      await sleep(intervalMs, undefined, { signal: stop.signal }).catch(() => {});
    }
  } finally {
    stop.dispose();
    await bus.close();
  }
}

/**
 * `--watch` takes an optional interval, which node:util parseArgs cannot express: a whole number right after it
 * (or `--watch=MS`) is the interval, anything else is left for parseArgs.
 */
function takeWatch(argv: string[]): { rest: string[]; watch: string | undefined } {
  const rest: string[] = [];
  let watch: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (arg === '--watch') {
      const next = argv[i + 1];
      watch = next !== undefined && /^\d+$/.test(next) ? argv[++i]! : '';
    } else if (arg.startsWith('--watch=')) {
      watch = arg.slice('--watch='.length);
    } else {
      rest.push(arg);
    }
  }
  return { rest, watch };
}

function formatStats(stats: TypeStats[]): string {
  const rows = [['type', 'group', 'depth', 'bytes', 'unread', 'inflight', 'oldest age']];
  const n = (v: number) => (v < 0 ? '?' : String(v));
  for (const t of stats) {
    rows.push([t.type, '-', n(t.depth), n(t.bytes), '', '', '']);
    for (const g of t.groups) {
      const age = g.oldestAgeMs === null ? '-' : `${(g.oldestAgeMs / 1000).toFixed(1)}s`;
      rows.push(['', g.group, '', '', n(g.unread), n(g.inflight), age]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
