/**
 * `busbar dlq list|peek|redrive|purge` and `busbar peek` as a user runs them: the real command against real brokers.
 * Dead letters are made by a failing handler in the test; the CLI lists, shows, redrives (one, then --all) and purges.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MessageBus, message } from '../../src/index.ts';
import { busbar, CLI_BROKERS, fresh, lines } from './process.ts';

/** Dead-letters `bodies` of `type` through a handler that always throws; resolves once all are dead letters. */
async function deadLetter(url: string, type: string, bodies: string[]): Promise<string[]> {
  const bus = await MessageBus.connect(url);
  try {
    const handler = bus.handle(type, { group: 'cli-g', maxAttempts: 1 }, async () => {
      throw new Error('cli handler refuses <b>');
    });
    await handler.ready;
    const ids = await bus.sendBatch(
      type,
      bodies.map((b, i) => message(b, { key: `k${i}` })),
    );
    const deadline = Date.now() + 30_000;
    while ((await bus.admin().deadLetters(type, { idleMs: 500 })).length < bodies.length && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await handler.close();
    return ids;
  } finally {
    await bus.close();
  }
}

for (const broker of CLI_BROKERS) {
  describe(`busbar dlq on ${broker.name}`, { timeout: 120_000 }, () => {
    it('lists, peeks, redrives one and then all, purges', async (t) => {
      const skip = await broker.skip();
      if (skip) return t.skip(skip);
      const type = fresh('cli-dlq');
      const url = broker.url(t, type, `${type}.dlq`);
      const ids = await deadLetter(url, type, ['one', 'two', 'three']);

      const list = await busbar(['dlq', 'list', type, '--broker', url]);
      assert.equal(list.code, 0, list.stderr);
      const rows = lines(list);
      assert.equal(rows.length, 3, list.stdout.toString());
      for (const row of rows) assert.match(row, /attempts=1\tgroup=cli-g\t.*cli handler refuses <b>/);

      const peek = await busbar(['dlq', 'peek', type, '--id', ids[1]!, '--broker', url]);
      assert.equal(peek.code, 0, peek.stderr);
      const shown = JSON.parse(lines(peek)[0]!);
      assert.equal(shown.body, 'two');
      assert.equal(shown.originalType, type);
      assert.equal(shown.key, 'k1');

      const none = await busbar(['dlq', 'redrive', type, '--broker', url]);
      assert.equal(none.code, 2, 'redrive without --id or --all is a usage error');
      assert.match(none.stderr, /--id ID .* or --all/);

      const one = await busbar(['dlq', 'redrive', type, '--id', ids[0]!, '--broker', url]);
      assert.equal(one.code, 0, one.stderr);
      assert.deepEqual(lines(one), [`redriven ${ids[0]}`]);
      const rest = await busbar(['dlq', 'redrive', type, '--all', '--broker', url]);
      assert.equal(rest.code, 0, rest.stderr);
      assert.deepEqual(
        lines(rest).sort(),
        ids
          .slice(1)
          .map((id) => `redriven ${id}`)
          .sort(),
      );

      // The redriven messages are on the original type again: the group that failed them gets them once more.
      const bus = await MessageBus.connect(url);
      try {
        const consumer = bus.consumer({ consumerGroup: 'cli-g', messageTypes: type });
        const back = new Set<string>();
        const deadline = Date.now() + 30_000;
        while (back.size < 3 && Date.now() < deadline) {
          const m = await consumer.receive({ timeout: 1000 });
          if (!m) continue;
          back.add(m.headers['busbar-redriven-from'] ?? '');
          await m.ack();
        }
        await consumer.close();
        assert.deepEqual([...back].sort(), [...ids].sort());
        const dead = await busbar(['dlq', 'list', type, '--broker', url]);
        assert.deepEqual(lines(dead), [], 'no dead letters left');
        // Dead-letter one more and purge it.
        await deadLetter(url, type, ['four']);
        const purge = await busbar(['dlq', 'purge', type, '--broker', url]);
        assert.equal(purge.code, 0, purge.stderr);
        assert.deepEqual(await bus.admin().deadLetters(type, { idleMs: 500 }), []);
      } finally {
        await bus.close();
      }

      const ghost = await busbar(['dlq', 'list', `${type}-ghost`, '--broker', url]);
      assert.equal(ghost.code, 1);
      assert.match(ghost.stderr, /BUSBAR_ERR_UNKNOWN_TYPE/);
    });

    it('busbar peek: browses without consuming where the transport can, and says so where it cannot', async (t) => {
      const skip = await broker.skip();
      if (skip) return t.skip(skip);
      const type = fresh('cli-peek');
      const url = broker.url(t, type);
      const bus = await MessageBus.connect(url);
      let peekable = false;
      try {
        await bus.admin().registerMessageType(type);
        await bus.sendBatch(type, ['a', 'b', 'c', new Uint8Array([0, 255, 60])]);
        peekable = bus.capabilities.peek !== undefined;
      } finally {
        await bus.close();
      }
      const exit = await busbar(['peek', type, '--count', '2', '--broker', url]);
      if (!peekable) {
        assert.equal(exit.code, 1);
        assert.match(exit.stderr, /cannot browse messages .* \(BUSBAR_ERR_UNSUPPORTED\)/);
        return;
      }
      assert.equal(exit.code, 0, exit.stderr);
      const first = lines(exit).map((l) => JSON.parse(l));
      assert.deepEqual(
        first.map((m) => m.body),
        ['a', 'b'],
      );
      const next = await busbar(['peek', type, '--from', first[1].position, '--count', '10', '--broker', url]);
      const rest = lines(next).map((l) => JSON.parse(l));
      assert.deepEqual(
        rest.map((m) => m.body),
        ['b', 'c', 'AP88'],
      );
      assert.equal(rest[2].encoding, 'base64', 'binary is shown as base64');
      const since = await busbar(['peek', type, '--from', '2999-01-01T00:00:00Z', '--broker', url]);
      assert.deepEqual(lines(since), [], 'nothing stored after a future time');
      // Peeking consumed nothing: a new group still reads all four from the start.
      const again = await busbar(['peek', type, '--count', '10', '--broker', url]);
      assert.equal(lines(again).length, 4);
    });
  });
}
