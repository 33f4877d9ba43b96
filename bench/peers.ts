/**
 * `npm run bench -- peers`: busbar beside the TypeScript libraries users pick instead, on the same brokers, each
 * beside the raw client (bench/peers/*.ts say what each library can and cannot do). The peers' dependencies live in
 * bench/peers/package.json, not in busbar's: this installs them on first use.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { BenchCase } from './harness.ts';

const dir = fileURLToPath(new URL('./peers/', import.meta.url));

export default async function cases(): Promise<BenchCase[]> {
  if (!existsSync(`${dir}node_modules`)) {
    process.stderr.write('busbar bench: installing the peers into bench/peers/node_modules\n');
    const npm = spawnSync('npm', ['install', '--prefix', dir, '--no-audit', '--no-fund'], {
      stdio: 'inherit',
      timeout: 600_000,
    });
    if (npm.status !== 0) {
      throw new Error(`npm install --prefix bench/peers failed (${npm.error?.message ?? `exit ${npm.status}`})`);
    }
  }
  const all: BenchCase[] = [];
  // No NATS file: @nestjs/microservices' NATS transport is core NATS (no JetStream, no ack), so it cannot do the
  // same work at equal durability (BENCHMARKS.md says so).
  for (const broker of ['rabbitmq', 'kafka']) {
    const module = (await import(`./peers/${broker}.ts`)) as { default: () => BenchCase[] };
    all.push(...module.default());
  }
  return all;
}
