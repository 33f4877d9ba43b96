/**
 * Conformance scenario for the dead-letter operations (admin.deadLetters, redriveDeadLetters, purgeDeadLetters):
 * the same on every transport. Messages are dead-lettered by a failing handler, listed with their reason, attempts,
 * original type and group, redriven one and then all back to the original type (where a handler now takes them),
 * and purged.
 */
import assert from 'node:assert/strict';
import { type DeadLetter, message } from '../../src/index.ts';
import { eventually, sleep } from './context.ts';
import type { RuleContext } from './rules.ts';

/** How long a redrive waits for one more dead letter before it decides there are none (see D1). */
const REDRIVE_IDLE_MS = 10_000;

export function dlqScenarios(ctx: RuleContext): void {
  const { newType, newGroup, patience, scenario } = ctx;

  /** Lists until `done` holds or patience runs out; returns the last list (the caller asserts on it). */
  async function listUntil(type: string, done: (list: DeadLetter[]) => boolean): Promise<DeadLetter[]> {
    const deadline = Date.now() + patience * 2;
    for (;;) {
      const list = await ctx.bus().admin().deadLetters(type, { idleMs: 1500 });
      if (done(list) || Date.now() > deadline) return list;
      await sleep(200);
    }
  }

  scenario(
    'D1 dead letters: list with reason, attempts, original type and group; redrive one, then all; purge',
    async () => {
      const bus = ctx.bus();
      const admin = bus.admin();
      const type = newType('dlq');
      const group = newGroup();
      await admin.registerMessageType(type);
      assert.deepEqual(await admin.deadLetters(type), [], 'a type without dead letters lists none');
      await assert.rejects(admin.deadLetters(`${type}-ghost`), { code: 'BUSBAR_ERR_UNKNOWN_TYPE' });

      const failing = bus.handle(
        type,
        { group, maxAttempts: 2, retry: { initialDelayMs: 10, maxDelayMs: 20 } },
        async () => {
          throw new Error('handler refuses');
        },
      );
      await failing.ready;
      const ids = await bus.sendBatch(
        type,
        ['one', 'two', 'three'].map((body, i) => message(body, { key: `k${i}` })),
      );
      const dead = await listUntil(type, (list) => list.length >= 3);
      await failing.close();
      assert.deepEqual(dead.map((d) => d.id).sort(), [...ids].sort(), 'every failed message is listed once');
      for (const d of dead) {
        assert.equal(d.originalType, type);
        assert.equal(d.group, group);
        assert.equal(d.attempts, 2);
        assert.match(d.reason ?? '', /handler refuses/);
        assert.ok(d.deadLetteredAt && !Number.isNaN(Date.parse(d.deadLetteredAt)));
        assert.equal(d.message.type, type);
        assert.ok(!Object.keys(d.message.headers).some((h) => h.startsWith('busbar-dlq')), 'dlq headers are stripped');
      }
      // Listing consumed nothing: the same three are there again, and the dead-letter group still counts them (the
      // web console shows that count; a listing that moved the group made it show 0).
      assert.equal((await listUntil(type, (list) => list.length >= 3)).length, 3);
      assert.equal((await listUntil(type, (list) => list.length >= 3)).length, 3);
      const unread = async () =>
        (await admin.stats(`${type}.dlq`))[0]?.groups.find((g) => g.group === 'busbar-dlq')?.unread;
      if (ctx.caps().lag) {
        const counted = await eventually(unread, (n) => n === 3, patience);
        assert.equal(counted, 3, `the dead-letter group counts ${counted} unread after listing three dead letters`);
      }

      const received = new Map<string, { body: unknown; key: string | undefined; headers: Record<string, string> }>();
      const fixed = bus.handle(type, { group }, async (m) => {
        received.set(m.headers['busbar-redriven-from'] ?? m.id, {
          body: m.body,
          key: m.key,
          headers: { ...m.headers },
        });
      });
      await fixed.ready;
      const first = ids[0]!;
      // A redrive reads the dead letters once (no second try as listUntil has): where the broker cannot count them
      // (lag: false) the read ends after idleMs without one more, so that wait must outlast a loaded machine's pause.
      const one = await admin.redriveDeadLetters(type, { ids: [first, 'no-such-id'], idleMs: REDRIVE_IDLE_MS });
      assert.deepEqual(one.redriven, [first]);
      assert.deepEqual(one.missing, ['no-such-id']);
      assert.equal(one.newIds.length, 1);
      assert.notEqual(one.newIds[0], first, 'a redrive is a new send with a new id');
      const deadline = Date.now() + patience * 2;
      while (!received.has(first) && Date.now() < deadline) await sleep(50);
      assert.ok(received.has(first), 'the redriven message did not reach the original type');
      assert.equal(received.get(first)!.body, 'one');
      assert.equal(received.get(first)!.key, 'k0', 'redrive restores the key');
      assert.ok(!Object.keys(received.get(first)!.headers).some((h) => h.startsWith('busbar-dlq')));
      const left = await listUntil(type, (list) => list.length === 2);
      assert.deepEqual(left.map((d) => d.id).sort(), ids.slice(1).sort());

      const all = await admin.redriveDeadLetters(type, { idleMs: REDRIVE_IDLE_MS });
      assert.deepEqual([...all.redriven].sort(), ids.slice(1).sort());
      while (ids.some((id) => !received.has(id)) && Date.now() < deadline + patience) await sleep(50);
      assert.deepEqual([...received.keys()].sort(), [...ids].sort(), 'every redriven message was consumed');
      assert.deepEqual(await listUntil(type, (list) => list.length === 0), []);
      if (ctx.caps().lag) assert.equal(await eventually(unread, (n) => n === 0, patience), 0, 'unread after redrive');
      await fixed.close();

      // Purge: dead-letter one more, then remove it.
      const again = bus.handle(type, { group, maxAttempts: 1 }, async () => {
        throw new Error('refuses again');
      });
      await again.ready;
      await bus.send(type, 'four');
      assert.equal((await listUntil(type, (list) => list.length >= 1)).length, 1);
      await again.close();
      await admin.purgeDeadLetters(type);
      assert.deepEqual(await listUntil(type, (list) => list.length === 0), []);
    },
  );
}
