import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const bin = new URL('../../bin/busbar.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'busbar-cli-'));
const env = { ...process.env, BUSBAR_BROKER: '', BUSBAR_CONFIG: '' };

function run(args: string[], input?: string) {
  const result = spawnSync(process.execPath, [bin, ...args], {
    input,
    encoding: 'utf8',
    env,
    cwd: dir,
    timeout: 120_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

function runAsync(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env, cwd: dir });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function assertUsageError(result: { code: number | null; stderr: string }, pattern: RegExp) {
  assert.equal(result.code, 2, result.stderr);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${result.stderr}`);
  assert.match(lines[0]!, /^busbar: .* \(BUSBAR_ERR_[A-Z_]+\)$/);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /, 'a stack trace was printed');
}

test('a wrong URL, an unknown option, a missing file and a malformed config: one line, exit 2', () => {
  assertUsageError(run(['send', 't', 'a', '--broker', 'foo://x']), /no transport for URL scheme 'foo:'/);
  assertUsageError(run(['send', 't', 'a', '--broker', 'not a url']), /invalid broker URL/);
  assertUsageError(
    run(['receive', 't', '--group', 'g', '--colour']),
    /Unknown option '--colour'.*busbar receive --help/,
  );
  assertUsageError(
    run(['send', 't', 'a', '--config', join(dir, 'missing.json')]),
    /cannot read config file .*missing\.json: no such file/,
  );
  const malformed = join(dir, 'malformed.yaml');
  writeFileSync(malformed, 'broker: [unclosed\n');
  assertUsageError(run(['send', 't', 'a', '--config', malformed]), /is not valid YAML/);
  const wrongKey = join(dir, 'wrong.json');
  writeFileSync(wrongKey, '{"broker": "memory:", "ackTimeoutMs": "soon"}');
  assertUsageError(
    run(['stats', '--config', wrongKey]),
    /ackTimeoutMs: expected a whole number of milliseconds from 1 to 2147483647; got string "soon"/,
  );
  assertUsageError(run(['receive', 't']), /missing --group/);
  assertUsageError(run(['receive', 't', '--group', 'g', '--count', 'many']), /--count must be a whole number/);
  assertUsageError(run(['frobnicate']), /unknown command 'frobnicate'/);
});

test('a Node.js that cannot run busbar gets one line saying what to do, exit 2', (t) => {
  // A clone runs the TypeScript sources; without type stripping Node would fail with a stack trace about '.ts'.
  if (existsSync(new URL('../../dist/cli/main.js', import.meta.url))) return t.skip('dist/ is built: bin runs it');
  const result = spawnSync(process.execPath, ['--no-experimental-strip-types', bin, '--help'], {
    encoding: 'utf8',
    env,
    cwd: dir,
    timeout: 60_000,
  });
  assertUsageError({ code: result.status, stderr: result.stderr }, /runs TypeScript sources.*npx busbar/);
  assert.match(result.stderr, /BUSBAR_ERR_UNSUPPORTED/);
});

test('--help works everywhere and exits 0', () => {
  for (const args of [['--help'], ['send', '--help'], ['receive', '-h'], ['stats', '--help']]) {
    const result = run(args);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /Usage: busbar/);
  }
});

test('send and receive across two processes through one embedded file', async () => {
  const db = join(dir, 'shared.db');
  const sent = run(['send', 'greetings', 'a', 'b', 'c', '--broker', `embedded:${db}`]);
  assert.equal(sent.code, 0, sent.stderr);
  const received = await runAsync([
    'receive',
    'greetings',
    '--group',
    'g',
    '--count',
    '3',
    '--broker',
    `embedded:${db}`,
  ]);
  assert.equal(received.code, 0, received.stderr);
  assert.deepEqual(received.stdout.trim().split('\n'), ['a', 'b', 'c']);

  // stdin, one message per line, with --json output
  assert.equal(run(['send', 'lines', '--broker', `embedded:${db}`, '--key', 'k'], 'one\ntwo\n').code, 0);
  const json = run(['receive', 'lines', '--group', 'g', '--count', '2', '--json', '--broker', `embedded:${db}`]);
  const objects = json.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    objects.map((o) => o.body),
    ['one', 'two'],
  );
  assert.equal(objects[0].key, 'k');
  assert.equal(objects[0].attempt, 1);
  assert.match(objects[0].id, /^[0-9a-f-]{36}$/);
});

test('a receiver killed with SIGKILL does not lose its unacked messages', async () => {
  const db = join(dir, 'kill.db');
  assert.equal(run(['send', 'work', 'w1', 'w2', '--broker', `embedded:${db}`]).code, 0);
  const victim = spawn(
    process.execPath,
    [
      bin,
      'receive',
      'work',
      '--group',
      'g',
      '--count',
      '2',
      '--no-ack',
      // Its leases must not run out while it prints (it would get w1 again and exit without printing w2): long
      // against a pause of a loaded machine; the survivor below waits this long once for them to come back.
      '--ack-timeout',
      '5000',
      '--broker',
      `embedded:${db}`,
    ],
    { env, cwd: dir },
  );
  // Kill it once it printed what it holds, before it can exit by itself.
  await new Promise<void>((resolve, reject) => {
    let out = '';
    victim.stdout.on('data', (d) => {
      out += d;
      if (out.includes('w2')) {
        victim.kill('SIGKILL');
        resolve();
      }
    });
    victim.on('close', (code) => reject(new Error(`the receiver exited (${code}) before printing w2: ${out}`)));
  });
  const survivor = run([
    'receive',
    'work',
    '--group',
    'g',
    '--count',
    '2',
    // Idle time it waits for the next message: the leases of the killed receiver end within 5 s of its start.
    '--timeout',
    '40000',
    '--broker',
    `embedded:${db}`,
  ]);
  assert.deepEqual(survivor.stdout.trim().split('\n').sort(), ['w1', 'w2']);
});
