/**
 * The CLI's promises about mistakes and endings, through the real `busbar` process: typos fail with a code instead of
 * succeeding silently, every error is one line, an unreachable broker fails a one-shot command in bounded time, the
 * gateway stops on the first SIGINT / SIGTERM (also through `npx`), and its banner says where the messages live.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const root = new URL('../..', import.meta.url).pathname;
const bin = join(root, 'bin/busbar.js');
const dir = mkdtempSync(join(tmpdir(), 'busbar-cli-errors-'));
process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
const env = { ...process.env, BUSBAR_BROKER: '', BUSBAR_CONFIG: '' };

/** A generous upper bound for a one-shot command: only a hang reaches it. */
const HANG_MS = 60_000;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env, cwd: dir, timeout: HANG_MS });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Exactly one stderr line `busbar: ... (<code>)`, no stack, the given exit code. */
function assertOneLine(result: Result, exit: number, code: string, pattern?: RegExp): string {
  assert.equal(result.code, exit, result.stderr);
  const lines = result.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${result.stderr}`);
  assert.match(lines[0]!, new RegExp(`^busbar: .* \\(${code}\\)$`));
  if (pattern) assert.match(lines[0]!, pattern);
  return lines[0]!;
}

test('types create grows an existing type and refuses a shrink; delete, purge and stats of an unknown type fail', async () => {
  const broker = ['--broker', `embedded:${join(dir, 'types.db')}`];
  const type = `t-${randomUUID()}`;
  const create = (partitions: string) => run(['types', 'create', type, '--partitions', partitions, ...broker]);

  let result = await create('4');
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /created message type '.*' with 4 partitions/);
  result = await create('8');
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /grew message type '.*' from 4 partitions to 8/);
  result = await create('8');
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /already exists with 8 partitions/);
  assertOneLine(await create('2'), 1, 'BUSBAR_ERR_PARTITIONS', /has 8 partitions and cannot shrink to 2/);
  const list = await run(['types', 'list', '--json', ...broker]);
  assert.equal(
    list.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .find((t) => t.type === type)?.partitions,
    8,
  );

  const ghost = `ghost-${randomUUID()}`;
  assertOneLine(await run(['types', 'delete', ghost, ...broker]), 1, 'BUSBAR_ERR_UNKNOWN_TYPE', /no message type/);
  assertOneLine(await run(['purge', ghost, ...broker]), 1, 'BUSBAR_ERR_UNKNOWN_TYPE', /no message type/);
  assertOneLine(await run(['stats', ghost, ...broker]), 1, 'BUSBAR_ERR_UNKNOWN_TYPE', /no message type/);
  assertOneLine(
    await run(['receive', ghost, '--group', 'g', '--count', '1', ...broker]),
    1,
    'BUSBAR_ERR_UNKNOWN_TYPE',
    /no message type '.*' to receive from: .*busbar types create/,
  );
  assert.doesNotMatch((await run(['types', 'list', ...broker])).stdout, /ghost-/, 'receive created the type');
  // The dead-letter type of an existing type is there to read before its first message makes it.
  result = await run(['receive', `${type}.dlq`, '--group', 'g', '--timeout', '1', ...broker]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal((await run(['types', 'delete', type, ...broker])).code, 0);
});

test('usage mistakes are one line that names the culprit', async () => {
  const broker = ['--broker', 'memory:'];
  assertOneLine(
    await run(['receive', 't', '--group', 'g', '--count', '-1', ...broker]),
    2,
    'BUSBAR_ERR_USAGE',
    /--count is followed by '-1'.*write --count=-1/,
  );
  assertOneLine(
    await run(['receive', 't', '--group', 'g', '-n', '-5', ...broker]),
    2,
    'BUSBAR_ERR_USAGE',
    /write -n-5/,
  );
  assertOneLine(
    await run(['receive', 't', '--group', 'bad group', '--count', '1', ...broker]),
    2,
    'BUSBAR_ERR_INVALID_GROUP_NAME',
    /invalid consumer group "bad group"/,
  );
  const port = assertOneLine(await run(['serve', '--port', '99999', ...broker]), 2, 'BUSBAR_ERR_USAGE', /--port/);
  assert.doesNotMatch(port, /startServer/);
});

/** A loopback port nothing listens on: bound once by the OS, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test('a one-shot command against an unreachable broker fails with one line naming it, on every network transport', async () => {
  const port = await closedPort();
  const schemes = ['amqp', 'redis', 'nats', 'mqtt', 'kafka'];
  const results = await Promise.all(
    schemes.flatMap((scheme) =>
      [
        ['types', 'list'],
        ['send', 't', 'x'],
      ].map(async (command) => ({
        what: `${scheme}: ${command.join(' ')}`,
        result: await run([...command, '--broker', `${scheme}://127.0.0.1:${port}`]),
      })),
    ),
  );
  for (const { what, result } of results) {
    assert.notEqual(result.code, null, `${what} still ran after ${HANG_MS} ms`);
    const line = assertOneLine(result, 1, 'BUSBAR_ERR_CONNECTION');
    assert.ok(line.includes(`127.0.0.1:${port}`), `${what} does not name the address: ${line}`);
    assert.doesNotMatch(line, /keeps reconnecting/, what);
  }
});

interface Serving {
  child: ChildProcess;
  url: string;
  banner: string;
  /** Resolves once no process holds busbar's stdout any more: the gateway's process is gone. */
  ended: Promise<void>;
}

/** Starts `busbar serve` (through `command`) and waits for its banner. */
function serve(command: string, args: string[], options: { cwd: string; detached?: boolean }): Promise<Serving> {
  const child = spawn(command, args, { env, cwd: options.cwd, detached: options.detached });
  const ended = new Promise<void>((resolve) => child.stdout!.on('close', resolve));
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    child.on('error', reject);
    child.stdout!.on('data', (d) => {
      out += d;
      const url = /listening on (http:\/\/\S+)/.exec(out)?.[1];
      if (url && out.includes('reference:')) resolve({ child, url, banner: out, ended });
    });
    child.on('exit', (code) => reject(new Error(`serve exited ${code} before listening: ${err}`)));
  });
}

function refused(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = tcpConnect(Number(port), hostname);
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

/** Fails the test if `ended` does not come within HANG_MS: only a gateway left running reaches it. */
async function within(ended: Promise<void>, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: the gateway still runs after ${HANG_MS} ms`)), HANG_MS);
  });
  try {
    await Promise.race([ended, hang]);
  } finally {
    clearTimeout(timer);
  }
}

test('serve prints the embedded database file and stops on the first SIGTERM or SIGINT, releasing its port', async (t) => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const running = await serve(process.execPath, [bin, 'serve', '--port', '0', '--broker', 'embedded:./gw.db'], {
      cwd: dir,
    });
    t.after(() => running.child.kill('SIGKILL'));
    assert.match(running.banner, new RegExp(`database file ${join(dir, 'gw.db').replace(/[.]/g, '\\.')}`));
    const exit = new Promise<number | null>((resolve) => running.child.once('exit', resolve));
    running.child.kill(signal);
    await within(running.ended, signal);
    assert.equal(await exit, 0, `exit after ${signal}`);
    assert.ok(await refused(running.url), `${running.url} is still served after ${signal}`);
  }
});

test('SIGTERM to `npx busbar serve` stops the gateway behind it and frees its port', async (t) => {
  // npx runs busbar under `sh -c`; on SIGTERM npm signals only that shell, which dies without passing it on.
  const running = await serve('npx', ['--yes', 'busbar', 'serve', '--port', '0', '--broker', 'memory:'], {
    cwd: root,
    detached: true,
  }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (!running) return t.skip('npx is not on PATH');
  // The whole process group: npx, its shell and busbar, whatever the test's outcome.
  t.after(() => {
    try {
      process.kill(-running.child.pid!, 'SIGKILL');
    } catch {}
  });
  running.child.kill('SIGTERM');
  await within(running.ended, 'SIGTERM to npx');
  assert.ok(await refused(running.url), `${running.url} is still served after npx ended`);
});
