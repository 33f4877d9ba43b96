import assert from 'node:assert/strict';
import { test } from 'node:test';
import { busbar, EMBEDDED, start } from './process.ts';

const BLOCK = /type\s+group\s+depth[^\n]*\nwatched\s+-\s+1\b[^\n]*\n/;

test('stats --watch [MS] into a pipe: one block per refresh, no escape codes, SIGTERM ends it with exit 0', async (t) => {
  const url = EMBEDDED.url(t);
  assert.equal((await busbar(['send', 'watched', 'x', '--broker', url])).code, 0);
  for (const watch of [['--watch'], ['--watch', '100'], ['--watch=100']]) {
    const watcher = start(['stats', 'watched', ...watch, '--broker', url]);
    // The default interval is 2 s: the first refresh is enough to prove that a bare --watch runs.
    const twoBlocks = new RegExp(`${BLOCK.source}\\n${BLOCK.source}`);
    await watcher.printed(watch.length === 1 ? BLOCK : twoBlocks);
    watcher.child.kill('SIGTERM');
    const exit = await watcher.exit;
    assert.equal(exit.code, 0, `${watch.join(' ')}: ${exit.stderr}`);
    assert.equal(exit.stderr, '');
    assert.ok(!exit.stdout.includes(0x1b), 'escape codes in a pipe');
  }
});
