/**
 * Running the real `busbar` command in tests: one call that waits for the exit, and one that hands back the live
 * process so a test can read its output as it comes and signal it.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { MessageBus } from '../../src/index.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const bin = new URL('../../bin/busbar.js', import.meta.url).pathname;
const env = { ...process.env, BUSBAR_BROKER: '', BUSBAR_CONFIG: '' };

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface Running {
  child: ChildProcessWithoutNullStreams;
  /** Resolves once stdout holds `pattern` (or the process ended without it: then it rejects). */
  printed(pattern: RegExp | string): Promise<string>;
  exit: Promise<Exit>;
}

export function start(args: string[], input?: string | Uint8Array): Running {
  const child = spawn(process.execPath, [bin, ...args], { env });
  const out: Buffer[] = [];
  let stderr = '';
  const watchers: Array<() => void> = [];
  child.stdout.on('data', (d: Buffer) => {
    out.push(d);
    for (const watch of [...watchers]) watch();
  });
  child.stderr.on('data', (d) => (stderr += d));
  const exit = new Promise<Exit>((resolve) => {
    child.on('close', (code, signal) => {
      resolve({ code, signal, stdout: Buffer.concat(out), stderr });
      for (const watch of watchers.splice(0)) watch();
    });
  });
  if (input !== undefined) child.stdin.end(input);
  else child.stdin.end();
  const printed = (pattern: RegExp | string) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const text = Buffer.concat(out).toString();
        if (typeof pattern === 'string' ? text.includes(pattern) : pattern.test(text)) {
          watchers.splice(watchers.indexOf(check), 1);
          resolve(text);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          watchers.splice(watchers.indexOf(check), 1);
          reject(new Error(`busbar exited without printing ${pattern}: ${text}\n${stderr}`));
        }
      };
      watchers.push(check);
      check();
    });
  return { child, printed, exit };
}

export function busbar(args: string[], input?: string | Uint8Array): Promise<Exit> {
  return start(args, input).exit;
}

/** Lines of stdout, without the last newline. */
export function lines(exit: Exit): string[] {
  const text = exit.stdout.toString();
  return text === '' ? [] : text.replace(/\n$/, '').split('\n');
}

export function fresh(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

export interface CliBroker {
  name: string;
  /** A broker URL for one test (a fresh embedded file each time); its types are deleted after the test. */
  url(t: TestContext, ...types: string[]): string;
  skip(): Promise<string | undefined>;
}

function network(name: 'redis' | 'rabbitmq', defaultPort: number): CliBroker {
  const url = BROKERS[name];
  return {
    name,
    url(t, ...types) {
      t.after(async () => {
        const bus = await MessageBus.connect(url);
        try {
          for (const type of types) await bus.admin().deregisterMessageType(type);
        } finally {
          await bus.close();
        }
      });
      return url;
    },
    skip: () =>
      brokerSkipReason(name, () => {
        const { host, port } = hostPort(url, defaultPort);
        return tcpReachable(host, port);
      }),
  };
}

export const EMBEDDED: CliBroker = {
  name: 'embedded',
  url(t) {
    const dir = mkdtempSync(join(tmpdir(), 'busbar-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    return `embedded:${join(dir, 'bus.db')}`;
  },
  skip: async () => undefined,
};

export const CLI_BROKERS: readonly CliBroker[] = [EMBEDDED, network('redis', 6379), network('rabbitmq', 5672)];
