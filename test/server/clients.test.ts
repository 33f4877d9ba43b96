/**
 * Plain clients, following docs/rest.md alone: a Python script using only its standard library, and curl.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { EMBEDDED, fresh, gateway } from './helpers.ts';

const run = promisify(execFile);
const fixture = new URL('./fixtures/client.py', import.meta.url).pathname;

test('a Python standard-library client sends, receives and acks', async (t) => {
  const { url } = await gateway(t, EMBEDDED);
  const { stdout } = await run('python3', [fixture, url, fresh('py'), 'python-readers'], { timeout: 60_000 });
  const summary = JSON.parse(stdout);
  assert.equal(summary.acked, 3);
  assert.deepEqual(
    summary.received.map((b: unknown) => JSON.stringify(b)).sort(),
    [{ order: 1, item: 'café' }, [0, 1, 255], 'plain text'].map((b) => JSON.stringify(b)).sort(),
  );
});

test('curl sends, receives and acks with the commands of docs/rest.md', async (t) => {
  const { url } = await gateway(t, EMBEDDED);
  const type = fresh('curl');
  const curl = async (...args: string[]) => (await run('curl', ['-sS', ...args], { timeout: 30_000 })).stdout;
  const sent = JSON.parse(
    await curl('-X', 'POST', `${url}/v1/types/${type}/messages`, '-H', 'Content-Type: text/plain', '-d', 'hello'),
  );
  assert.equal(sent.ids.length, 1);
  const pulled = JSON.parse(await curl(`${url}/v1/types/${type}/messages?group=g1&wait=2000`));
  assert.equal(pulled.messages[0].body, 'hello');
  const receipt = pulled.messages[0].receipt;
  const acked = JSON.parse(
    await curl(
      '-X',
      'POST',
      `${url}/v1/acks`,
      '-H',
      'Content-Type: application/json',
      '-d',
      JSON.stringify({ receipts: [receipt] }),
    ),
  );
  assert.deepEqual(acked, { acked: 1 });
});
