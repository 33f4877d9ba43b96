/**
 * A TypeScript child process for fault tests: its stdout read line by line as it comes, waits on a line matching a
 * pattern (rejecting if the process ends first or the wait times out), and kill -9. Every child a test starts is
 * killed by killAll() in its after hook.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

/** Resolves once `condition()` holds, checking every `everyMs` (for states no event reports); bounded. */
export async function until(condition: () => boolean, timeoutMs: number, what: string, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export interface Child {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly lines: string[];
  readonly stderr: () => string;
  /** Resolves with the first line (from `fromLine` on) matching `pattern`. */
  waitFor(pattern: RegExp, timeoutMs: number, fromLine?: number): Promise<string>;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill9(): Promise<void>;
}

const running = new Set<ChildProcessWithoutNullStreams>();

export function startChild(script: string, args: string[], onLine?: (line: string) => void): Child {
  const proc = spawn(process.execPath, [script, ...args], {
    env: { ...process.env, BUSBAR_BROKER: '', BUSBAR_CONFIG: '' },
  });
  running.add(proc);
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  const watchers = new Set<() => void>();
  proc.stdout.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      onLine?.(line);
    }
    for (const watch of [...watchers]) watch();
  });
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => {
      running.delete(proc);
      resolve({ code, signal });
      for (const watch of [...watchers]) watch();
    }),
  );
  return {
    proc,
    lines,
    stderr: () => stderr,
    exit,
    waitFor(pattern, timeoutMs, fromLine = 0) {
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          watchers.delete(check);
          reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`));
        }, timeoutMs);
        function check(): void {
          const found = lines.slice(fromLine).find((l) => pattern.test(l));
          if (found !== undefined || proc.exitCode !== null || proc.signalCode !== null) {
            clearTimeout(timer);
            watchers.delete(check);
            if (found !== undefined) resolve(found);
            else reject(new Error(`process ended (${proc.exitCode ?? proc.signalCode}) before ${pattern}: ${stderr}`));
          }
        }
        watchers.add(check);
        check();
      });
    },
    async kill9() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exit;
    },
  };
}

/** Kills every child still running (after hooks). */
export async function killAll(): Promise<void> {
  await Promise.all(
    [...running].map(
      (proc) =>
        new Promise<void>((resolve) => {
          proc.once('exit', () => resolve());
          proc.kill('SIGKILL');
        }),
    ),
  );
}
