/**
 * How a long-running command (serve, receive, stats --watch, send from stdin) learns that it should stop: the first
 * SIGINT or SIGTERM asks it to stop cleanly (settle, release, close); a second one exits at once, for a close that
 * hangs on a broker that went away.
 *
 * `npx busbar` and `npm start` run busbar under `sh -c`, and on SIGTERM npm signals only that shell, which dies
 * without passing the signal on: busbar was left running, holding its port. So when npm started busbar, the end of
 * the process that started it counts as a stop signal too. (Without npm, a parent that exits is no reason to stop:
 * `nohup busbar serve &` must outlive its shell.)
 */

/** How often to look whether npm's shell is still there; cheap (one getppid), and only when npm started busbar. */
const PARENT_CHECK_MS = 500;

const EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;

export type StopReason = keyof typeof EXIT_CODES | 'parent exited';

/** The exit code of a process ended by `reason` before it had anything to release (the shell's 128 + signal). */
export function exitCodeOf(reason: StopReason): number {
  return reason === 'parent exited' ? EXIT_CODES.SIGTERM : EXIT_CODES[reason];
}

/** Calls `stop` once, on the first stop signal; returns a function that removes the handlers. */
export function onStop(stop: (reason: StopReason) => void): () => void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`busbar: ${signal} again: exiting without waiting for a clean stop\n`);
      process.exit(exitCodeOf(signal as StopReason));
    }
    stopping = true;
    stop(signal as StopReason);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let parentCheck: NodeJS.Timeout | undefined;
  if (startedByNpm()) {
    const parent = process.ppid;
    parentCheck = setInterval(() => {
      if (process.ppid === parent || stopping) return;
      stopping = true;
      clearInterval(parentCheck);
      stop('parent exited');
    }, PARENT_CHECK_MS);
    parentCheck.unref();
  }
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    clearInterval(parentCheck);
  };
}

/** npm sets npm_command for `npx` / `npm exec` (exec) and scripts such as `npm start` (start, run-script). */
function startedByNpm(): boolean {
  return process.env.npm_command !== undefined;
}
