import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageBus, message } from '../../src/index.ts';
import { busbar, CLI_BROKERS, EMBEDDED, fresh, lines, start } from './process.ts';

for (const broker of CLI_BROKERS) {
  test(`${broker.name}: receive --no-ack prints more than a prefetch, exits, and gives the messages back`, async (t) => {
    const skip = await broker.skip();
    if (skip) return t.skip(skip);
    const type = fresh('noack');
    const url = broker.url(t, type);
    const bodies = Array.from({ length: 20 }, (_, i) => `m${i + 1}`);
    assert.equal((await busbar(['send', type, '--broker', url], `${bodies.join('\n')}\n`)).code, 0);
    // 17 is beyond the consumer's usual prefetch of 16, which --no-ack never frees.
    const peek = await busbar(['receive', type, '--group', 'g', '--count', '17', '--no-ack', '--broker', url]);
    assert.equal(peek.code, 0, peek.stderr);
    assert.equal(lines(peek).length, 17);
    // The ack timeout is 30 s: only messages given back at exit arrive within this receive's 20 s of idleness.
    const all = await busbar([
      'receive',
      type,
      '--group',
      'g',
      '--count',
      '20',
      '--timeout',
      '20000',
      '--json',
      '--broker',
      url,
    ]);
    assert.equal(all.code, 0, all.stderr);
    const received = lines(all).map((l) => JSON.parse(l) as { body: string; attempt: number });
    assert.deepEqual(received.map((m) => m.body).sort(), [...bodies].sort());
    const peeked = new Set(lines(peek));
    for (const m of received) assert.equal(m.attempt, peeked.has(m.body) ? 2 : 1, m.body);
  });

  test(`${broker.name}: the first SIGTERM ends a waiting receive with exit 0, printed messages acked`, async (t) => {
    const skip = await broker.skip();
    if (skip) return t.skip(skip);
    const type = fresh('sigterm');
    const url = broker.url(t, type);
    assert.equal((await busbar(['send', type, 'a', 'b', '--broker', url])).code, 0);
    for (const noAck of [false, true]) {
      const group = noAck ? 'peek' : 'work';
      const receiver = start(['receive', type, '--group', group, '--broker', url, ...(noAck ? ['--no-ack'] : [])]);
      await receiver.printed('a\nb\n');
      receiver.child.kill('SIGTERM');
      const exit = await receiver.exit;
      assert.equal(exit.code, 0, `${group}: ${exit.stderr}`);
    }
    const bus = await MessageBus.connect(url);
    t.after(() => bus.close());
    assert.equal(await bus.admin().unreadCount(type, 'work'), 0, 'the printed messages were not acked');
    const peek = (await bus.admin().stats(type))[0]!.groups.find((g) => g.group === 'peek')!;
    assert.equal(peek.unread, 2, '--no-ack acked something');
    if (peek.inflight >= 0) assert.equal(peek.inflight, 0, '--no-ack left its messages leased');
  });
}

test('--no-ack --ack-timeout: a message not acked comes back while receive runs, attempt 2', async (t) => {
  const url = EMBEDDED.url(t);
  assert.equal((await busbar(['send', 'jobs', 'job-1', '--broker', url])).code, 0);
  const twice = await busbar([
    ...['receive', 'jobs', '--group', 'w', '--count', '2', '--no-ack', '--ack-timeout', '1000', '--json'],
    ...['--broker', url],
  ]);
  assert.equal(twice.code, 0, twice.stderr);
  const seen = lines(twice).map((l) => JSON.parse(l) as { body: string; attempt: number });
  assert.deepEqual(
    seen.map((m) => [m.body, m.attempt]),
    [
      ['job-1', 1],
      ['job-1', 2],
    ],
  );
});

test('a body that does not match its content type is printed, marked and acked: the group goes on', async (t) => {
  const url = EMBEDDED.url(t);
  const bus = await MessageBus.connect(url);
  t.after(() => bus.close());
  const notUtf8 = new Uint8Array([0x22, 0xff, 0x22]);
  await bus
    .producer({ messageType: 'poison' })
    .send([
      message('not json', { contentType: 'application/json' }),
      'after',
      message(notUtf8, { contentType: 'application/json' }),
    ]);
  const plain = await busbar(['receive', 'poison', '--group', 'plain', '--count', '3', '--broker', url]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.deepEqual(plain.stdout, Buffer.concat([Buffer.from('not json\nafter\n'), notUtf8, Buffer.from('\n')]));
  const notes = plain.stderr.trim().split('\n');
  assert.equal(notes.length, 2, plain.stderr);
  assert.match(notes[0]!, /^busbar: message \S+: the body is not valid JSON although its content type is/);
  assert.match(notes[1]!, /not valid UTF-8/);
  assert.equal(await bus.admin().unreadCount('poison', 'plain'), 0);

  const json = await busbar(['receive', 'poison', '--group', 'json', '--count', '3', '--json', '--broker', url]);
  assert.equal(json.code, 0, json.stderr);
  const [bad, after, binary] = lines(json).map((l) => JSON.parse(l));
  assert.deepEqual([bad.body, bad.encoding], [Buffer.from('not json').toString('base64'), 'base64']);
  assert.match(bad.decodeError, /not valid JSON/);
  assert.deepEqual([after.body, after.encoding, after.decodeError], ['after', undefined, undefined]);
  assert.deepEqual(Buffer.from(binary.body, 'base64'), Buffer.from(notUtf8));
  assert.equal(await bus.admin().unreadCount('poison', 'json'), 0);
});

test('JSON bodies are printed as their exact text, in --json too', async (t) => {
  const url = EMBEDDED.url(t);
  const exact = '{"id": 12345678901234567890, "x": 1e400, "d": 1, "d": 2}';
  const pretty = '{\r\n  "pretty": [1,\n 2],\n  "s": "line\\nbreak"\n}';
  for (const body of [exact, pretty]) {
    const sent = await busbar(
      ['send', 'exact', '--file', '-', '--content-type', 'application/json', '--broker', url],
      body,
    );
    assert.equal(sent.code, 0, sent.stderr);
  }
  const plain = await busbar(['receive', 'exact', '--group', 'plain', '--count', '2', '--broker', url]);
  assert.equal(plain.stdout.toString(), `${exact}\n${pretty}\n`);

  const json = await busbar(['receive', 'exact', '--group', 'json', '--count', '2', '--json', '--broker', url]);
  const [first, second] = lines(json);
  assert.ok(first!.endsWith(`,"body":${exact}}`), first);
  assert.ok(second!.endsWith(`,"body":{   "pretty": [1,  2],   "s": "line\\nbreak" }}`), second);
  const object = JSON.parse(first!);
  assert.deepEqual(Object.keys(object), [
    ...['id', 'type', 'source', 'time', 'contentType', 'headers', 'attempt', 'body'],
  ]);
  assert.equal(object.contentType, 'application/json');
  assert.deepEqual(JSON.parse(second!).body, { pretty: [1, 2], s: 'line\nbreak' });
});

test('receive --help documents every field --json prints', async () => {
  const help = (await busbar(['receive', '--help'])).stdout.toString();
  const fields = ['id', 'type', 'source', 'time', 'contentType', 'key', 'headers', 'attempt', 'body', 'encoding'];
  for (const field of [...fields, 'decodeError']) assert.match(help, new RegExp(`\\b${field}\\b`), field);
});

test('a reader that closes the pipe ends receive with exit 0; what it could not print goes back to the group', async (t) => {
  const url = EMBEDDED.url(t);
  // 2 MB: far more than a pipe holds, so receive is still writing when the reader goes.
  const bodies = Array.from({ length: 2000 }, (_, i) => String(i).padEnd(1000, '.')).join('\n');
  assert.equal((await busbar(['send', 'many', '--broker', url], `${bodies}\n`)).code, 0);
  const receiver = start(['receive', 'many', '--group', 'g', '--broker', url]);
  await receiver.printed('\n');
  receiver.child.stdout.destroy();
  const exit = await receiver.exit;
  assert.equal(exit.code, 0, exit.stderr);
  assert.equal(exit.stderr, '');
  const bus = await MessageBus.connect(url);
  t.after(() => bus.close());
  const [group] = (await bus.admin().stats('many'))[0]!.groups;
  assert.ok(group!.unread > 0, 'every message was acked although the reader left');
  assert.equal(group!.inflight, 0);
});

test('receive --no-ack without --count waits at its limit for a signal instead of exiting 13', async (t) => {
  const url = EMBEDDED.url(t);
  const numbers = Array.from({ length: 1001 }, (_, i) => i + 1).join('\n');
  assert.equal((await busbar(['send', 'held', '--broker', url], `${numbers}\n`)).code, 0);
  const receiver = start(['receive', 'held', '--group', 'g', '--no-ack', '--broker', url]);
  await receiver.printed(/(?:^|\n)1000\n/);
  receiver.child.kill('SIGTERM');
  const exit = await receiver.exit;
  assert.equal(exit.code, 0, exit.stderr);
  assert.equal(lines(exit).length, 1000);
});
