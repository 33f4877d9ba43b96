/**
 * Conformance scenarios 12-16: offsets, a broker restart, purge / stats / retention, types and partitions,
 * dead-lettering.
 */
import assert from 'node:assert/strict';
import { before } from 'node:test';
import { type Capabilities, type MessageBus, message } from '../../src/index.ts';
import { collect, eventually, type SuiteContext, sendRetrying, sleep } from './context.ts';

export function adminScenarios(ctx: SuiteContext): void {
  const { newType, newGroup, patience, scenario, spec } = ctx;
  let bus: MessageBus;
  let caps: Capabilities;
  // Runs after the suite's own before hook, which connects the bus.
  before(() => {
    bus = ctx.bus();
    caps = ctx.caps();
  });

  scenario('12 offset earliest vs latest for a new group', async () => {
    const type = newType();
    const keeper = bus.consumer({ consumerGroup: newGroup(), messageTypes: [type] });
    await keeper.ready;
    await bus.send(type, 'before');
    const latest = bus.consumer({ consumerGroup: newGroup(), messageTypes: [type], offset: 'latest' });
    await latest.ready;
    await bus.send(type, 'after');
    const got = await latest.receive({ timeout: patience });
    assert.equal(got?.body, 'after');
    await got!.ack();
    assert.equal(await latest.receive({ timeout: 500 }), null, 'latest group saw an older message');
    if (caps.replay) {
      const earliest = bus.consumer({ consumerGroup: newGroup(), messageTypes: [type], offset: 'earliest' });
      const all = await collect(earliest, 2, patience);
      assert.deepEqual([...all.values()].map((m) => m.body).sort(), ['after', 'before']);
      await earliest.close();
    }
    await Promise.all([latest.close(), keeper.close()]);
  });

  scenario(
    '13 broker restarted mid-stream: everything published-and-confirmed arrives',
    async () => {
      const type = newType();
      const group = newGroup();
      const consumer = bus.consumer({ consumerGroup: group, messageTypes: [type], ackTimeoutMs: 5000 });
      await consumer.ready;
      const confirmed = new Set<number>();
      const received = new Set<number>();
      let stop = false;
      const reader = (async () => {
        while (!stop) {
          try {
            const m = await consumer.receive({ timeout: 200 });
            if (!m) continue;
            received.add(m.body as number);
            await m.ack().catch(() => {}); // an ack lost in the outage means a redelivery, not a loss
          } catch {
            await sleep(100);
          }
        }
      })();
      const publisher = (async () => {
        for (let i = 0; i < 300; i++) {
          await sendRetrying(() => bus.send(type, i), patience * 4);
          confirmed.add(i);
          await sleep(5);
        }
      })();
      await sleep(300);
      await spec.restart!();
      await publisher;
      const deadline = Date.now() + patience * 4;
      while ([...confirmed].some((i) => !received.has(i)) && Date.now() < deadline) await sleep(100);
      stop = true;
      await reader;
      const missing = [...confirmed].filter((i) => !received.has(i));
      assert.deepEqual(missing, [], `${missing.length} confirmed messages never arrived`);
      await consumer.close();
    },
    () =>
      !spec.restart
        ? 'no restart hook for this transport'
        : !caps.persistence
          ? 'transport declares persistence: false'
          : undefined,
    300_000,
  );

  scenario('14 purge empties; stats show depth and unread per group; retention trims', async () => {
    const type = newType();
    const admin = bus.admin();
    const groupA = newGroup();
    // prefetch 2: once it holds 2 unacked, the transport may lease it no more, so exactly 2 are in flight.
    const a = bus.consumer({ consumerGroup: groupA, messageTypes: [type], prefetch: 2, ackTimeoutMs: 600_000 });
    await a.ready;
    await bus.producer({ messageType: type }).send([...Array(10)].map((_, i) => `m${i}`));
    const read = await collect(a, 3, patience);
    assert.equal(read.size, 3);
    const held = await collect(a, 2, patience, { ack: false });
    assert.equal(held.size, 2);
    let stats = await admin.stats(type);
    assert.equal(stats.length, 1);
    if (caps.lag) {
      // Acked 3 of 10; the 2 in flight are still unread. Brokers report these figures a moment after the acks and
      // deliveries that change them (a Kafka commit, RabbitMQ's queue counts, a JetStream consumer's info; without a
      // broker, zeromq counts a send once it arrives): they must reach 7 unread and 2 in flight, and are read until
      // they do, on a loaded machine too.
      const groupStats = async () => (await admin.stats(type))[0]!.groups.find((x) => x.group === groupA);
      const g = await eventually(
        groupStats,
        (x) => x?.unread === 7 && (x.inflight === 2 || x.inflight === -1),
        patience,
      );
      assert.ok(g, `stats list no group ${groupA}`);
      assert.equal(g.unread, 7, `unread ${g.unread}, expected 7`);
      assert.ok(g.inflight === 2 || g.inflight === -1, `inflight ${g.inflight} with 2 unacked at prefetch 2`);
      assert.equal(await admin.unreadCount(type, groupA), 7);
      assert.ok(g.oldestAgeMs === null || g.oldestAgeMs >= 0);
      stats = await admin.stats(type);
      assert.ok(stats[0]!.depth >= 10 || stats[0]!.depth === -1);
    }
    await a.close();
    if (caps.purge) {
      await admin.purge(type);
      // Read until the counts show the purge (they may lag it, as above); a purge that kept messages never gets there.
      const unreadOf = (s: (typeof stats)[number]) => s.groups.find((x) => x.group === groupA)?.unread ?? 0;
      const purged = await eventually(
        async () => (await admin.stats(type))[0]!,
        (s) => (s.depth === 0 || s.depth === -1) && (!caps.lag || unreadOf(s) === 0),
        patience,
      );
      if (purged.depth !== -1) assert.equal(purged.depth, 0, 'depth after purge');
      if (caps.lag) assert.equal(unreadOf(purged), 0, 'unread after purge');
      const after = bus.consumer({ consumerGroup: groupA, messageTypes: [type] });
      assert.equal(await after.receive({ timeout: 1000 }), null, 'a purged message was delivered');
      await after.close();
    }
    if (caps.retention.bytes) {
      const small = newType();
      await admin.registerMessageType(small);
      await admin.setExpiry(small, { dataLimitBytes: 1000 });
      await bus.producer({ messageType: small }).send([...Array(50)].map(() => 'x'.repeat(100)));
      // 10 bodies of 100 bytes fit in 1000; a broker counting its own overhead keeps fewer, never none.
      const trimmed = (s: { depth: number; bytes: number }) => s.depth >= 1 && s.depth <= 10 && s.bytes <= 1000;
      const s = await eventually(async () => (await admin.stats(small))[0]!, trimmed, patience);
      assert.ok(trimmed(s), `retention by 1000 bytes kept ${s.depth} messages of 100 bytes (${s.bytes} bytes)`);
    }
    if (caps.retention.age) {
      const aging = newType();
      await admin.registerMessageType(aging);
      await bus.producer({ messageType: aging }).send([...Array(5)].map(() => 'old'));
      await admin.setExpiry(aging, { expireTimeMs: 1000 });
      await sleep(2500);
      await bus.send(aging, 'new');
      const deadline = Date.now() + patience * 4;
      let depth = Number.POSITIVE_INFINITY;
      while (Date.now() < deadline) {
        depth = (await admin.stats(aging))[0]!.depth;
        if (depth <= 1) break;
        await sleep(500);
      }
      assert.ok(depth <= 1, `retention by age kept ${depth} messages`);
    }
  });

  scenario('15 register / deregister / list; partitions grow', async () => {
    const admin = bus.admin();
    const type = newType('adm');
    await admin.registerMessageType(type, { partitions: caps.partitions ? 2 : undefined });
    let listed = await admin.listMessageTypes();
    const info = listed.find((t) => t.type === type);
    assert.ok(info, `${type} not listed after register`);
    assert.ok(!listed.some((t) => t.type.startsWith('__')), 'internal types are listed');
    if (caps.partitions) {
      assert.equal(info.partitions, 2);
      await admin.addConcurrency(type, 4);
      listed = await admin.listMessageTypes();
      assert.equal(listed.find((t) => t.type === type)?.partitions, 4);
      await assert.rejects(admin.addConcurrency(type, 1), { code: 'BUSBAR_ERR_PARTITIONS' });
    }
    await admin.deregisterMessageType(type);
    listed = await admin.listMessageTypes();
    assert.ok(!listed.some((t) => t.type === type), `${type} still listed after deregister`);
    await assert.rejects(admin.registerMessageType('bad name!'), { code: 'BUSBAR_ERR_INVALID_TYPE_NAME' });
  });

  scenario('15b registering again grows or refuses; deleting, purging or stats of an unknown type reject', async () => {
    const admin = bus.admin();
    const type = newType('adm');
    const created = await admin.registerMessageType(type, { partitions: caps.partitions ? 2 : undefined });
    assert.equal(created.outcome, 'created');
    const again = await admin.registerMessageType(type);
    assert.equal(again.outcome, 'unchanged');
    if (caps.partitions) {
      const grown = await admin.registerMessageType(type, { partitions: 3 });
      assert.deepEqual([grown.outcome, grown.previousPartitions, grown.partitions], ['grown', 2, 3]);
      assert.equal((await admin.listMessageTypes()).find((t) => t.type === type)?.partitions, 3);
      await assert.rejects(admin.registerMessageType(type, { partitions: 1 }), { code: 'BUSBAR_ERR_PARTITIONS' });
    }
    const ghost = newType('ghost');
    await assert.rejects(admin.deregisterMessageType(ghost), { code: 'BUSBAR_ERR_UNKNOWN_TYPE' });
    await assert.rejects(admin.purge(ghost), { code: 'BUSBAR_ERR_UNKNOWN_TYPE' });
    await assert.rejects(admin.stats(ghost), { code: 'BUSBAR_ERR_UNKNOWN_TYPE' });
    assert.ok(!(await admin.listMessageTypes()).some((t) => t.type === ghost), `${ghost} was created`);
  });

  scenario('16 dead-letter after maxAttempts with the reason', async () => {
    const type = newType();
    const group = newGroup();
    const dlqConsumer = bus.consumer({ consumerGroup: newGroup(), messageTypes: [`${type}.dlq`] });
    await dlqConsumer.ready;
    const attempts: number[] = [];
    const handler = bus.handle(
      type,
      { group, maxAttempts: 3, retry: { initialDelayMs: 10, maxDelayMs: 50 } },
      async (m) => {
        attempts.push(m.attempt);
        if (m.body === 'poison') throw new Error('cannot digest poison');
      },
    );
    await handler.ready;
    await bus.producer({ messageType: type }).send(['poison', 'fine']);
    const dead = await dlqConsumer.receive({ timeout: patience });
    assert.ok(dead, 'nothing reached the dead-letter type');
    assert.equal(dead.body, 'poison');
    assert.match(dead.headers['busbar-dlq-reason'] ?? '', /cannot digest poison/);
    assert.equal(dead.headers['busbar-dlq-type'], type);
    assert.equal(dead.headers['busbar-dlq-attempts'], '3');
    await dead.ack();
    assert.ok(attempts.filter((a) => a <= 3).length >= 4, `attempts seen: ${attempts}`);
    await handler.close();
    assert.equal(await dlqConsumer.receive({ timeout: 500 }), null, 'more than one dead letter');
    await dlqConsumer.close();
  });
}

/** Scenario P1: admin.peek shows stored messages, from a position and from a time, and consumes nothing. */
export function peekScenarios(ctx: SuiteContext): void {
  const { newType, newGroup, patience, scenario } = ctx;
  scenario(
    'P1 peek browses without consuming, from a position and from a time; a group still gets everything',
    async () => {
      const bus = ctx.bus();
      const caps = ctx.caps();
      const can = caps.peek!;
      const admin = bus.admin();
      const type = newType();
      const group = newGroup();
      // Two partitions where the transport has them: a peek merges them oldest first.
      await admin.registerMessageType(type, caps.partitions ? { partitions: 2 } : {});
      let early: ReturnType<typeof bus.consumer> | undefined;
      if (caps.createGroup) await admin.createConsumerGroup(type, group, { offset: 'earliest' });
      else {
        early = bus.consumer({ consumerGroup: group, messageTypes: [type] });
        await early.ready;
      }
      const ids: string[] = [];
      // One at a time, so the broker stores them in this order (each send resolves once stored).
      for (const [i, body] of ['a', 'b'].entries()) {
        ids.push(...(await bus.sendBatch(type, [message(body, { key: `k${i}` })])));
      }
      // The clock moves past the first two before the third is sent: a peek from `since` shows only the third.
      const passed = Date.now() + 2;
      while (Date.now() <= passed) await sleep(1);
      const since = Date.now();
      ids.push(...(await bus.sendBatch(type, [message('c', { key: 'k2' })])));

      const all = await admin.peek(type, { count: 10 });
      assert.deepEqual(
        all.map((p) => p.message.id),
        ids,
        'peek shows the stored messages, oldest first',
      );
      for (const p of all) assert.equal(typeof p.position, 'string');
      // Nothing moved: the same peek again shows the same.
      assert.deepEqual(
        (await admin.peek(type, { count: 10 })).map((p) => p.position),
        all.map((p) => p.position),
      );
      assert.deepEqual(
        (await admin.peek(type, { count: 2 })).map((p) => p.message.id),
        ids.slice(0, 2),
        'count limits a peek',
      );
      if (can.position) {
        const fromSecond = await admin.peek(type, { from: all[1]!.position, count: 10 });
        assert.deepEqual(
          fromSecond.map((p) => p.message.id),
          ids.slice(1),
          'a peek from a position starts at that message',
        );
      }
      if (can.time) {
        const fromTime = await admin.peek(type, { fromTime: since, count: 10 });
        assert.deepEqual(
          fromTime.map((p) => p.message.id),
          ids.slice(2),
          'a peek from a time starts at the first message stored at or after it',
        );
        assert.deepEqual(await admin.peek(type, { fromTime: Date.now() + 3_600_000, count: 10 }), []);
      }
      // A group still gets every message: the peeks consumed nothing.
      const consumer = early ?? bus.consumer({ consumerGroup: group, messageTypes: [type] });
      const got = await collect(consumer, 3, patience);
      assert.deepEqual([...got.keys()].sort(), [...ids].sort());
      await consumer.close();
    },
    () => (ctx.caps().peek ? undefined : 'the transport declares no peek'),
  );
}
