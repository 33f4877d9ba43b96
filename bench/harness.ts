/**
 * Benchmark harness: every case runs beside its baseline (the raw client library doing the same work at the same
 * durability) in the same process, alternating rounds, and reports medians and the ratio. Never a timed test.
 */

export interface BenchCase {
  /** e.g. `publish 100B x100`. */
  readonly name: string;
  readonly transport: string;
  /** Messages processed by one round of subject() or baseline(). */
  readonly messages: number;
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
  /** busbar doing the work; may return per-batch or per-message latencies in ms for p50/p99. */
  subject(): Promise<number[] | undefined>;
  /** The raw client doing the same work. Omit only for cases with no raw counterpart (then ratio is null). */
  baseline?(): Promise<number[] | undefined>;
}

export interface BenchResult {
  name: string;
  transport: string;
  msgsPerSec: number;
  baselineMsgsPerSec: number | null;
  ratio: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
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
  await bench.setup?.();
  try {
    const subjectMs: number[] = [];
    const baselineMs: number[] = [];
    const latencies: number[] = [];
    // One warm-up round each, then alternate so drift on a shared machine hits both sides alike.
    await bench.subject();
    await bench.baseline?.();
    for (let round = 0; round < rounds; round++) {
      const s = await timed(() => bench.subject());
      subjectMs.push(s.ms);
      latencies.push(...s.latencies);
      if (bench.baseline) baselineMs.push((await timed(() => bench.baseline!())).ms);
    }
    const msgsPerSec = bench.messages / (median(subjectMs) / 1000);
    const baselineMsgsPerSec = baselineMs.length ? bench.messages / (median(baselineMs) / 1000) : null;
    return {
      name: bench.name,
      transport: bench.transport,
      msgsPerSec: Math.round(msgsPerSec),
      baselineMsgsPerSec: baselineMsgsPerSec === null ? null : Math.round(baselineMsgsPerSec),
      ratio: baselineMsgsPerSec === null ? null : Math.round((msgsPerSec / baselineMsgsPerSec) * 100) / 100,
      p50Ms: roundMs(percentile(latencies, 50)),
      p99Ms: roundMs(percentile(latencies, 99)),
      rounds,
    };
  } finally {
    await bench.teardown?.();
  }
}

function roundMs(value: number | null): number | null {
  return value === null ? null : Math.round(value * 1000) / 1000;
}
