import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { MessageBus } from '../../src/index.ts';
import { busbar, EMBEDDED, type Exit, fresh, lines } from './process.ts';

/** Every message of the type, read by a fresh group (nothing is waited for: the store is read as it is). */
async function stored(url: string, type: string): Promise<string[]> {
  const bus = await MessageBus.connect(url);
  try {
    const stats = (await bus.admin().stats()).find((s) => s.type === type);
    const consumer = bus.consumer({ consumerGroup: fresh('read'), messageTypes: type });
    const bodies: string[] = [];
    for (let i = 0; i < (stats?.depth ?? 0); i++) bodies.push(Buffer.from((await consumer.receive())!.raw).toString());
    return bodies;
  } finally {
    await bus.close();
  }
}

function assertUsage(exit: Exit, pattern: RegExp): void {
  assert.equal(exit.code, 2, exit.stderr);
  assert.equal(exit.stderr.trim().split('\n').length, 1, exit.stderr);
  assert.match(exit.stderr, pattern);
  assert.match(exit.stderr, /\(BUSBAR_ERR_USAGE\)\n$/);
}

test('send --file PATH and --file - send one message byte for byte, with --id and --source', async (t) => {
  const url = EMBEDDED.url(t);
  const bytes = Buffer.concat([Buffer.from([0, 0xff, 0xfe, 0xc3, 0x28, 10, 13, 0]), Buffer.from('tail\n')]);
  const path = `${url.slice('embedded:'.length)}.bin`;
  writeFileSync(path, bytes);
  const fromFile = await busbar([
    'send',
    'blobs',
    '--file',
    path,
    '--id',
    'blob-1',
    '--source',
    'app://scanner/7',
    '--time',
    '2026-01-02T04:04:05.5+01:00',
    '--broker',
    url,
  ]);
  assert.equal(fromFile.code, 0, fromFile.stderr);
  const fromStdin = await busbar(['send', 'blobs', '--file', '-', '--key', 'k', '--broker', url], bytes);
  assert.equal(fromStdin.code, 0, fromStdin.stderr);
  const empty = await busbar(['send', 'blobs', '--file', '-', '--broker', url], '');
  assert.equal(empty.code, 0, empty.stderr);

  const received = await busbar(['receive', 'blobs', '--group', 'g', '--count', '3', '--json', '--broker', url]);
  assert.equal(received.code, 0, received.stderr);
  const [first, second, third] = lines(received).map((l) => JSON.parse(l));
  for (const m of [first, second]) {
    assert.equal(m.contentType, 'application/octet-stream');
    assert.equal(m.encoding, 'base64');
    assert.deepEqual(Buffer.from(m.body, 'base64'), bytes);
  }
  assert.deepEqual([first.id, first.source, first.time], ['blob-1', 'app://scanner/7', '2026-01-02T03:04:05.5Z']);
  assert.equal(second.key, 'k');
  assert.deepEqual([third.body, third.encoding], ['', 'base64']);
});

test('send --content-type application/json refuses what is not JSON before sending it', async (t) => {
  const url = EMBEDDED.url(t);
  const json = ['--content-type', 'application/json', '--broker', url];
  assertUsage(await busbar(['send', 'orders', 'not json', ...json]), /body 1 is not valid JSON.*--content-type/);
  assertUsage(await busbar(['send', 'orders', '--file', '-', ...json], '{"a":'), /the file is not valid JSON/);
  const stdin = await busbar(['send', 'orders', ...json], '{"n":1}\nnope\n{"n":3}\n');
  assertUsage(stdin, /line 2 is not valid JSON.*the lines before it were sent/);
  // The escape hatch: the same bytes as text or as bytes.
  assert.equal((await busbar(['send', 'orders', 'not json', '--content-type', 'text/plain', '--broker', url])).code, 0);

  assert.deepEqual(await stored(url, 'orders'), ['{"n":1}', 'not json']);
});

test('send checks --id, --source and --file and says what to do', async (t) => {
  const url = EMBEDDED.url(t);
  const to = ['--broker', url];
  assertUsage(await busbar(['send', 't', 'a', 'b', '--id', 'x', ...to]), /--id names one message/);
  assertUsage(await busbar(['send', 't', '--id', 'x', ...to], 'a\nb\n'), /--id names one message/);
  assertUsage(await busbar(['send', 't', 'a', '--id', '', ...to]), /--id must be 1 to 255 bytes/);
  assertUsage(await busbar(['send', 't', 'a', '--source', 'a\nb', ...to]), /--source must be 1 to 255 bytes/);
  assertUsage(await busbar(['send', 't', 'a', '--id', 'x'.repeat(256), ...to]), /--id must be 1 to 255 bytes/);
  assertUsage(await busbar(['send', 't', 'a', '--file', '-', ...to]), /either body arguments or --file/);
  assertUsage(await busbar(['send', 't', '--file', '/nonexistent/busbar', ...to]), /cannot read --file .*no such file/);
  assertUsage(await busbar(['send', 't', 'a', '--time', 'yesterday', ...to]), /--time takes an RFC 3339 timestamp/);
  assert.deepEqual(await stored(url, 't'), [], 'a refused send sent something');
});
