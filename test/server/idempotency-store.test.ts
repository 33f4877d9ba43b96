/**
 * The shared Idempotency-Key stores on their real backends (a SQLite file; Redis): one claim wins, a concurrent
 * claim sees it pending, the answer is kept, a failed attempt's release lets a retry claim, a pending claim of a
 * replica that died lapses, and a stale token can neither complete nor release another's claim.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openSharedStore, type SharedIdempotencyStore } from '../../src/server/idempotency-store.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const dir = mkdtempSync(join(tmpdir(), 'busbar-idem-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const redisSkip = await brokerSkipReason('redis', () => {
  const { host, port } = hostPort(BROKERS.redis, 6379);
  return tcpReachable(host, port);
});

const CASES: { name: string; open(): Promise<SharedIdempotencyStore | undefined>; skip?: string | undefined }[] = [
  {
    name: 'sqlite file',
    open: () =>
      openSharedStore(`sqlite:${join(dir, 'keys.db')}`, {
        transportName: 'rabbitmq',
        transport: { url: 'amqp://x', endpoints: [], options: {} },
      }),
  },
  {
    name: 'embedded default (beside the database)',
    open: () =>
      openSharedStore(undefined, {
        transportName: 'embedded',
        transport: { url: `embedded:${join(dir, 'bus.db')}`, endpoints: [], options: {} },
      }),
  },
  {
    name: 'redis broker',
    open: () =>
      openSharedStore('broker', {
        transportName: 'redis',
        transport: { url: BROKERS.redis, endpoints: [], options: {} },
      }),
    skip: redisSkip,
  },
];

for (const c of CASES) {
  describe(`idempotency store: ${c.name}`, { skip: c.skip, timeout: 60_000 }, () => {
    test('claim, pending, done, release, lapse, stale tokens', async () => {
      const a = (await c.open())!;
      const b = (await c.open())!; // a second replica's handle on the same store
      try {
        const id = randomUUID();
        assert.deepEqual(await a.claim(id, 't1', 'print', 60_000), { state: 'claimed' });
        assert.deepEqual(await b.claim(id, 't2', 'print', 60_000), { state: 'pending', fingerprint: 'print' });
        await b.complete(id, 't2', 'print', { status: 200, body: { ids: ['wrong'] } }, 60_000);
        await b.release(id, 't2');
        assert.equal((await a.claim(id, 't3', 'print', 60_000)).state, 'pending', 'a stale token changes nothing');
        await a.complete(id, 't1', 'print', { status: 200, body: { ids: ['x'] } }, 60_000);
        assert.deepEqual(await b.claim(id, 't4', 'print', 60_000), {
          state: 'done',
          fingerprint: 'print',
          answer: { status: 200, body: { ids: ['x'] } },
        });
        await a.release(id, 't1');
        assert.equal((await b.claim(id, 't5', 'print', 60_000)).state, 'done', 'a done answer is never released');

        const failed = randomUUID();
        assert.equal((await a.claim(failed, 't1', 'p', 60_000)).state, 'claimed');
        await a.release(failed, 't1');
        assert.equal((await b.claim(failed, 't2', 'p', 60_000)).state, 'claimed', 'a failed attempt is forgotten');

        const lapsed = randomUUID();
        assert.equal((await a.claim(lapsed, 't1', 'p', 200)).state, 'claimed');
        // The claimant "died": after its pending time another replica claims the key.
        let state = 'pending';
        for (let i = 0; i < 100 && state === 'pending'; i++) {
          await sleep(50);
          state = (await b.claim(lapsed, 't2', 'p', 60_000)).state;
        }
        assert.equal(state, 'claimed');
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
}

test('a broker that cannot keep keys asks for a named store', async () => {
  await assert.rejects(
    openSharedStore('broker', { transportName: 'kafka', transport: { url: 'kafka://x', endpoints: [], options: {} } }),
    /sqlite:<path>.*redis:\/\/ URL/,
  );
  assert.equal(
    await openSharedStore(undefined, {
      transportName: 'kafka',
      transport: { url: 'kafka://x', endpoints: [], options: {} },
    }),
    undefined,
  );
});
