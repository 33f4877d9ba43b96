/**
 * Benchmark runner: every case runs beside its baseline (the raw client library doing the same work at the same
 * durability) in the same process, alternating rounds after one warm-up each, and reports the medians, the range
 * over the rounds, and the ratio. Never a timed test. Cases are built with bench/lib/case.ts.
 */

/** What a case's setup learns about the run, e.g. how many rounds a consume reservoir must hold. */
export interface RunContext {
  /** Timed rounds per side; each side also runs one warm-up round before them. */
  readonly rounds: number;
}

export interface BenchCase {
  /** e.g. `publish 100B x100`. */
  readonly name: string;
  readonly transport: string;
  /** Messages processed by one round of subject() or baseline(). */
  readonly messages: number;
  setup?(context: RunContext): Promise<void>;
  teardown?(): Promise<void>;
  /** busbar doing the work; may return per-batch or per-message latencies in ms for p50/p99. */
  subject(): Promise<number[] | undefined>;
  /** The raw client doing the same work. Omit only for cases with no raw counterpart (then ratio is null). */
  baseline?(): Promise<number[] | undefined>;
}

/** The smallest and the largest value over the timed rounds. */
export type Range = [min: number, max: number];

/** DESIGN section 12's JSON line, plus the ranges over the rounds (a ratio's range pairs round i with round i). */
export interface BenchResult {
  name: string;
  transport: string;
  msgsPerSec: number;
  baselineMsgsPerSec: number | null;
  ratio: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  msgsPerSecRange: Range;
  baselineMsgsPerSecRange: Range | null;
  ratioRange: Range | null;
  rounds: number;
}

/** A module under bench/ named after its transport default-exports a function returning its cases. */
export type BenchModule = { default: () => Promise<BenchCase[]> };

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function timed(fn: () => Promise<number[] | undefined>): Promise<{ ms: number; latencies: number[] }> {
  const start = performance.now();
  const latencies = (await fn()) ?? [];
  return { ms: performance.now() - start, latencies };
}

export async function runCase(bench: BenchCase, rounds: number): Promise<BenchResult> {
  await bench.setup?.({ rounds });
  try {
    const subjectRates: number[] = [];
    const baselineRates: number[] = [];
    const latencies: number[] = [];
    const rate = (ms: number) => bench.messages / (ms / 1000);
    // One warm-up round each, then alternate so drift on a shared machine hits both sides alike.
    await bench.subject();
    await bench.baseline?.();
    for (let round = 0; round < rounds; round++) {
      const s = await timed(() => bench.subject());
      subjectRates.push(rate(s.ms));
      latencies.push(...s.latencies);
      if (bench.baseline) baselineRates.push(rate((await timed(() => bench.baseline!())).ms));
    }
    const msgsPerSec = median(subjectRates);
    const baselineMsgsPerSec = baselineRates.length ? median(baselineRates) : null;
    const ratios = baselineRates.map((b, i) => subjectRates[i]! / b);
    return {
      name: bench.name,
      transport: bench.transport,
      msgsPerSec: Math.round(msgsPerSec),
      baselineMsgsPerSec: baselineMsgsPerSec === null ? null : Math.round(baselineMsgsPerSec),
      ratio: baselineMsgsPerSec === null ? null : roundRatio(msgsPerSec / baselineMsgsPerSec),
      p50Ms: roundMs(percentile(latencies, 50)),
      p99Ms: roundMs(percentile(latencies, 99)),
      msgsPerSecRange: rangeOf(subjectRates, Math.round),
      baselineMsgsPerSecRange: baselineRates.length ? rangeOf(baselineRates, Math.round) : null,
      ratioRange: ratios.length ? rangeOf(ratios, roundRatio) : null,
      rounds,
    };
  } finally {
    await bench.teardown?.();
  }
}

function rangeOf(values: readonly number[], round: (value: number) => number): Range {
  return [round(Math.min(...values)), round(Math.max(...values))];
}

function roundRatio(value: number): number {
  return Math.round(value * 100) / 100;
}

function roundMs(value: number | null): number | null {
  return value === null ? null : Math.round(value * 1000) / 1000;
}
