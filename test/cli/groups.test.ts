import assert from 'node:assert/strict';
import { test } from 'node:test';
import { busbar, EMBEDDED, lines } from './process.ts';

test('groups create: a group made before its first consumer receives what was sent meanwhile', async (t) => {
  const url = EMBEDDED.url(t);
  const created = await busbar(['groups', 'create', 'audits', 'auditors', '--broker', url]);
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stdout.toString(), /consumer group 'auditors' on 'audits' keeps every message/);
  const sent = await busbar(['send', 'audits', 'one', 'two', '--broker', url]);
  assert.equal(sent.code, 0, sent.stderr);
  // --offset latest would start a new group after both: they arrive because the group existed first.
  const got = await busbar([
    'receive',
    'audits',
    '--group',
    'auditors',
    '--offset',
    'latest',
    '--count',
    '2',
    '--broker',
    url,
  ]);
  assert.equal(got.code, 0, got.stderr);
  assert.deepEqual(lines(got), ['one', 'two']);
  const bad = await busbar(['groups', 'create', 'audits', '--broker', url]);
  assert.equal(bad.code, 2, bad.stderr);
  const offset = await busbar(['groups', 'create', 'audits', 'g2', '--offset', 'middle', '--broker', url]);
  assert.equal(offset.code, 2);
  assert.match(offset.stderr, /--offset takes earliest or latest/);
});
