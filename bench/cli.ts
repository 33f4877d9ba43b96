/**
 * The `busbar` command on the embedded broker, as a user runs it: whole processes, start-up included.
 * - `receive --count N (ack) to a pipe` vs `send N stdin lines`: the subject is `busbar receive --count N` printing
 *   into a pipe that the bench drains; the baseline is `busbar send` of N lines (like `seq 1 N`) into the same file.
 *   A ratio >= 1 means receiving is at least as fast as sending. Each send stores the messages the next receive
 *   takes, so every receive finds exactly N waiting.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchCase } from './harness.ts';

const MESSAGES = 200_000;
const bin = new URL('../bin/busbar.js', import.meta.url).pathname;

/** Runs busbar to its end, feeding `input`; resolves with the number of lines it printed. */
function busbar(args: string[], input?: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    let lines = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++;
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(lines) : reject(new Error(`busbar ${args[0]} exited ${code}`))));
    child.stdin.end(input);
  });
}

export default async function cases(): Promise<BenchCase[]> {
  const dir = mkdtempSync(join(tmpdir(), 'busbar-bench-cli-'));
  const broker = ['--broker', `embedded:${join(dir, 'bus.db')}`];
  const input = Buffer.from(`${Array.from({ length: MESSAGES }, (_, i) => i + 1).join('\n')}\n`);
  const send = () => busbar(['send', 'numbers', ...broker], input);
  return [
    {
      name: `receive --count ${MESSAGES / 1000}k (ack) to a pipe vs send ${MESSAGES / 1000}k lines`,
      transport: 'cli (embedded)',
      messages: MESSAGES,
      setup: async () => {
        await send();
      },
      teardown: async () => rmSync(dir, { recursive: true, force: true }),
      subject: async () => {
        const printed = await busbar([
          'receive',
          'numbers',
          '--group',
          'bench',
          '--count',
          String(MESSAGES),
          ...broker,
        ]);
        if (printed !== MESSAGES) throw new Error(`busbar receive printed ${printed} lines, not ${MESSAGES}`);
        return undefined;
      },
      baseline: async () => {
        await send();
        return undefined;
      },
    },
  ];
}
