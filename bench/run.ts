/**
 * `npm run bench [-- <transport>...] [--json] [--rounds N] [--case TEXT]`: runs bench/<transport>.ts cases (only
 * those whose name contains TEXT with --case), prints a table (or one JSON object per case with --json).
 */
import { readdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { type BenchModule, type BenchResult, type Range, runCase } from './harness.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    json: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '5' },
    case: { type: 'string' },
  },
});

const available = readdirSync(new URL('.', import.meta.url))
  .filter((f) => f.endsWith('.ts') && !['harness.ts', 'run.ts'].includes(f))
  .map((f) => f.slice(0, -3));
const chosen = positionals.length ? positionals : available;
for (const name of chosen) {
  if (!available.includes(name)) {
    console.error(`busbar bench: no benchmark '${name}': choose from ${available.join(', ')}`);
    process.exit(2);
  }
}

const results: BenchResult[] = [];
for (const name of chosen) {
  const module = (await import(`./${name}.ts`)) as BenchModule;
  for (const bench of await module.default()) {
    if (values.case !== undefined && !bench.name.includes(values.case)) continue;
    // A case that fails (a miscount, a broker gone) is reported and the run goes on; the exit code says so.
    const result = await runCase(bench, Number(values.rounds)).catch((error: unknown) => {
      console.error(`busbar bench: ${bench.transport} '${bench.name}' failed: ${(error as Error)?.message ?? error}`);
      process.exitCode = 1;
    });
    if (!result) continue;
    // A case may add details of its own (bench/latency.ts: percentiles of each side) to its line.
    Object.assign(result, (bench as { details?: () => object }).details?.());
    results.push(result);
    if (values.json) console.log(JSON.stringify(result));
    else process.stderr.write(`  done: ${result.transport} ${result.name}\n`);
  }
}

if (!values.json) {
  const rows = results.map((r) => [
    r.transport,
    r.name,
    `${r.msgsPerSec.toLocaleString('en-US')} (${spread(r.msgsPerSecRange, (v) => v.toLocaleString('en-US'))})`,
    r.baselineMsgsPerSec === null
      ? '-'
      : `${r.baselineMsgsPerSec.toLocaleString('en-US')} (${spread(r.baselineMsgsPerSecRange, (v) => v.toLocaleString('en-US'))})`,
    r.ratio === null ? '-' : `${r.ratio.toFixed(2)} (${spread(r.ratioRange, (v) => v.toFixed(2))})`,
    r.p50Ms?.toFixed(3) ?? '-',
    r.p99Ms?.toFixed(3) ?? '-',
  ]);
  const header = ['transport', 'case', 'msg/s (range)', 'baseline msg/s (range)', 'ratio (range)', 'p50 ms', 'p99 ms'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(line(header));
  for (const row of rows) console.log(line(row));
  for (const r of results) {
    const { name, transport, msgsPerSec, baselineMsgsPerSec, ratio, p50Ms, p99Ms, rounds, ...details } = r;
    const rest = Object.entries(details).filter(([key]) => !key.endsWith('Range'));
    if (rest.length > 0) console.log(`${transport} ${name}: ${JSON.stringify(Object.fromEntries(rest))}`);
  }
}

function spread(range: Range | null, format: (value: number) => string): string {
  return range ? `${format(range[0])}–${format(range[1])}` : '-';
}
