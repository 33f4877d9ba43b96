/**
 * Runs test files while CPU burners keep every core busy, to show that a verdict does not depend on how fast the
 * machine is (tests decide by events, never by wall-clock speed).
 *   npm run test:busy -- test/cli/cli.test.ts [more files]      (one file at a time, in order)
 *   BUSBAR_BUSY_BURNERS=4 npm run test:busy -- FILE             (burners: default one per core)
 * Exits with the first failing file's status. The burners are child processes at normal priority; they are
 * killed when the tests end, fail, or this script is interrupted.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';

const files = process.argv.slice(2).filter((arg) => arg !== '--');
if (files.length === 0) {
  console.error('usage: npm run test:busy -- <test file> [more test files]');
  process.exit(2);
}
const count = Number(process.env.BUSBAR_BUSY_BURNERS ?? availableParallelism());
if (!Number.isInteger(count) || count < 1) {
  console.error(`BUSBAR_BUSY_BURNERS must be a whole number >= 1, not ${process.env.BUSBAR_BUSY_BURNERS}`);
  process.exit(2);
}

const burners: ChildProcess[] = [];
function stopBurners(): void {
  for (const burner of burners.splice(0)) burner.kill('SIGKILL');
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    stopBurners();
    process.exit(130);
  });
}
process.on('exit', stopBurners);

// Each burner spins until killed, and stops by itself within a moment once this script is gone (kill -9 of it
// leaves the burners orphaned: their parent pid changes), or after an hour at the most.
const SPIN = [
  'const parent = process.ppid; const end = Date.now() + 3_600_000; let x = 0;',
  'for (let n = 0; Date.now() < end; n++) {',
  '  x = (x + Math.sqrt(x + 1)) % 1e9;',
  '  if (n % 100_000 === 0 && process.ppid !== parent) break;',
  '}',
].join(' ');
for (let i = 0; i < count; i++) {
  burners.push(spawn(process.execPath, ['-e', SPIN], { stdio: 'ignore' }));
}
console.log(`test:busy: ${count} CPU burner(s) running`);

function run(file: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=300000', file], {
      stdio: 'inherit',
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

let status = 0;
try {
  for (const file of files) {
    console.log(`test:busy: ${file}`);
    status = await run(file);
    if (status !== 0) break;
  }
} finally {
  stopBurners();
}
console.log(`test:busy: ${status === 0 ? 'passed' : `failed (exit ${status})`} with ${count} burner(s)`);
process.exit(status);
