/** `busbar bridge` as a user runs it: help, usage errors (exit 2), and a run between two embedded brokers. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MessageBus } from '../../src/index.ts';
import { busbar, start } from '../cli/process.ts';

describe('busbar bridge (CLI)', { timeout: 120_000 }, () => {
  it('--help says how to call it', async () => {
    const exit = await busbar(['bridge', '--help']);
    assert.equal(exit.code, 0);
    assert.match(exit.stdout.toString(), /busbar bridge --from URL --to URL/);
    assert.match((await busbar(['--help'])).stdout.toString(), /bridge --from URL --to URL/);
  });

  for (const [args, pattern] of [
    [['--from', 'memory:'], /missing --to URL/],
    [['--to', 'memory:'], /missing --from URL/],
    [['--from', 'memory:', '--to', 'memory:', '--broker', 'memory:'], /--from and --to instead of --broker/],
    [['--from', 'memory:', '--to', 'memory:', '--types', 'a b'], /invalid type pattern "a b"/],
    [['--from', 'memory:', '--to', 'memory:', '--rename', 'orders'], /a rename is from=to/],
    [['--from', 'memory:', '--to', 'memory:', '--rename', 'a=b.*'], /more wildcards/],
    [['--from', 'memory:', '--to', 'memory:', '--offset', 'middle'], /--offset takes earliest or latest/],
    [['--from', 'memory:', '--to', 'memory:', '--prefetch', '0'], /--prefetch must be a whole number >= 1/],
  ] as const) {
    it(`usage error: ${args.join(' ')}`, async () => {
      const exit = await busbar(['bridge', ...args]);
      assert.equal(exit.code, 2, exit.stderr);
      assert.match(exit.stderr, pattern);
      assert.match(exit.stderr, /BUSBAR_ERR_USAGE/);
    });
  }

  it('moves messages between two embedded brokers, prints stats with --json and exits 0 on SIGTERM', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'busbar-bridge-cli-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const from = `embedded:${join(dir, 'a.db')}`;
    const to = `embedded:${join(dir, 'b.db')}`;
    const source = await MessageBus.connect(from);
    await source.sendBatch('orders.eu', ['one', 'two', 'three']);
    await source.close();
    const running = start([
      'bridge',
      '--from',
      from,
      '--to',
      to,
      '--types',
      'orders.*',
      '--rename',
      'orders.*=shop.*',
      '--json',
    ]);
    t.after(() => running.child.kill('SIGKILL'));
    await running.printed(/"forwarded":3/);
    running.child.kill('SIGTERM');
    const exit = await running.exit;
    assert.equal(exit.code, 0, exit.stderr);
    assert.match(exit.stderr, /bridge embedded -> embedded running, group 'busbar-bridge'/);
    assert.match(exit.stderr, /bridge stopped: 3 message\(s\) forwarded/);
    const last = JSON.parse(exit.stdout.toString().trim().split('\n').at(-1)!);
    assert.equal(last.types[0].target, 'shop.eu');
    const target = await MessageBus.connect(to);
    t.after(() => target.close());
    const consumer = target.consumer({ consumerGroup: 'check', messageTypes: ['shop.eu'] });
    const bodies = [];
    // The three within a patience only a lost message exhausts; then a moment for a fourth, which must not come.
    for (let i = 0; i < 3; i++) {
      const m = await consumer.receive({ timeout: 30_000 });
      if (!m) break;
      bodies.push(m.body);
      await m.ack();
    }
    const extra = await consumer.receive({ timeout: 500 });
    if (extra) bodies.push(extra.body);
    await consumer.close();
    assert.deepEqual(bodies, ['one', 'two', 'three']);
  });
});
