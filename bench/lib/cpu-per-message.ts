/**
 * CPU time per message of one side of one bench case, for a machine too loaded for wall-clock ratios to show a
 * few microseconds: `node bench/lib/cpu-per-message.ts <bench> <case index> <raw|busbar> [rounds]`. Prints the
 * process's CPU (every thread: ZeroMQ's I/O threads too) and the main thread's, per message, after a warm-up round.
 * Run the two sides alternately, several times each, and compare medians.
 */
import type { BenchModule } from '../harness.ts';

const [bench, index, side, roundsArg] = process.argv.slice(2);
if (!bench || index === undefined || (side !== 'raw' && side !== 'busbar')) {
  console.error('usage: node bench/lib/cpu-per-message.ts <bench> <case index> <raw|busbar> [rounds]');
  process.exit(2);
}
const rounds = Number(roundsArg ?? 10);
const module = (await import(`../${bench}.ts`)) as BenchModule;
const benchCase = (await module.default())[Number(index)];
if (!benchCase?.baseline) throw new Error(`${bench} has no case ${index} with a raw side`);
const run = side === 'raw' ? () => benchCase.baseline!() : () => benchCase.subject();
await benchCase.setup?.({ rounds });
try {
  await run();
  const cpu = process.cpuUsage();
  const main = process.threadCpuUsage();
  const start = performance.now();
  for (let i = 0; i < rounds; i++) await run();
  const wall = performance.now() - start;
  const all = process.cpuUsage(cpu);
  const thread = process.threadCpuUsage(main);
  const n = benchCase.messages * rounds;
  const us = (v: number) => (v / n).toFixed(1);
  console.log(
    `${side} '${benchCase.name}': cpu ${us(all.user + all.system)} us/msg, main thread ${us(thread.user + thread.system)} us/msg, wall ${us(wall * 1000)} us/msg`,
  );
} finally {
  await benchCase.teardown?.();
}
process.exit(0);
