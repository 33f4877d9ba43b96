/**
 * Conformance scenarios 1-11: delivery through the bus (round trip, volume, isolation, nack, ack timeout, close,
 * reopen, failing consumers, per-key order, async producer, groups).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before } from 'node:test';
import type { Capabilities, MessageBus } from '../../src/index.ts';
import { collect, type SuiteContext, sleep } from './context.ts';

export function deliveryScenarios(ctx: SuiteContext): void {
  const { newType, newGroup, ackTimeoutMs, patience, scenario } = ctx;
  let bus: MessageBus;
  let caps: Capabilities;
  // Runs after the suite's own before hook, which connects the bus.
  before(() => {
    bus = ctx.bus();
    caps = ctx.caps();
  });

  scenario('1 round trip: ids, headers, key, body byte-exact (binary, unicode, empty, 1 MiB)', async () => {
    const type = newType();
    // Leases outlast the scenario: a delivery that waited in the prefetch past the suite's 1 s ack timeout (a loaded
    // machine, a 1 MiB body) would come as attempt 2, and attempt 1 is asserted below.
    const consumer = bus.consumer({
      consumerGroup: newGroup(),
      messageTypes: [type],
      offset: 'earliest',
      ackTimeoutMs: 600_000,
    });
    await consumer.ready;
    const binary = new Uint8Array(256).map((_, i) => i);
    const large = new Uint8Array(randomBytes(1024 * 1024));
    const producer = bus.producer({ producerId: 'conformance-producer', messageType: type });
    const { message: outgoing } = await import('../../src/index.ts');
    await producer.send([
      outgoing(binary, { key: 'k-binary', headers: { 'x-trace': 'abc', 'x-unicode': 'héllo wörld ✓' } }),
      outgoing('grüße, 世界, 🚌', { key: 'k-unicode' }),
      outgoing(new Uint8Array(0), { key: 'k-empty' }),
      outgoing(large, { key: 'k-large' }),
      outgoing({ nested: { list: [1, 2, 3] }, ok: true }),
    ]);
    const got = [...(await collect(consumer, 5, patience)).values()];
    assert.equal(got.length, 5, `expected 5 messages, got ${got.length}`);
    const byKey = new Map(got.map((m) => [m.key ?? 'json', m]));
    const bin = byKey.get('k-binary')!;
    assert.deepEqual(new Uint8Array(bin.raw), binary);
    assert.equal(bin.headers['x-trace'], 'abc');
    assert.equal(bin.headers['x-unicode'], 'héllo wörld ✓');
    assert.equal(bin.source, 'conformance-producer');
    assert.equal(bin.type, type);
    assert.equal(bin.attempt, 1);
    assert.match(bin.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.ok(!Number.isNaN(Date.parse(bin.time)), `time ${bin.time} is not a timestamp`);
    assert.equal(byKey.get('k-unicode')!.body, 'grüße, 世界, 🚌');
    assert.equal(byKey.get('k-empty')!.raw.byteLength, 0);
    assert.ok(Buffer.from(byKey.get('k-large')!.raw).equals(Buffer.from(large)), '1 MiB body differs');
    assert.deepEqual(byKey.get('json')!.body, { nested: { list: [1, 2, 3] }, ok: true });
    assert.equal(new Set(got.map((m) => m.id)).size, 5, 'ids are not unique');
    await consumer.close();
  });

  scenario('2 5,000 messages from 50 concurrent publishers to 10 consumers in a group: none missing', async () => {
    const type = newType();
    const group = newGroup();
    const consumers = Array.from({ length: 10 }, (_, i) =>
      bus.consumer({ consumerId: `c${i}`, consumerGroup: group, messageTypes: [type], prefetch: 20 }),
    );
    await Promise.all(consumers.map((c) => c.ready));
    const seen = new Set<string>();
    let stop = false;
    const readers = consumers.map(async (c) => {
      while (!stop) {
        const m = await c.receive({ timeout: 200 });
        if (!m) continue;
        seen.add(m.body as string);
        await m.ack();
      }
    });
    await Promise.all(
      Array.from({ length: 50 }, async (_, p) => {
        const producer = bus.producer({ producerId: `p${p}`, messageType: type });
        for (let batch = 0; batch < 10; batch++) {
          await producer.send(Array.from({ length: 10 }, (_, i) => `${p}-${batch * 10 + i}`));
        }
      }),
    );
    const deadline = Date.now() + patience * 4;
    while (seen.size < 5000 && Date.now() < deadline) await sleep(50);
    stop = true;
    await Promise.all(readers);
    assert.equal(seen.size, 5000, `${5000 - seen.size} messages missing`);
    await Promise.all(consumers.map((c) => c.close()));
  });

  scenario('3 20 types in parallel: no leakage', async () => {
    const types = Array.from({ length: 20 }, () => newType('leak'));
    const group = newGroup();
    // Leases outlast the scenario: on a loaded machine a delivery acked after the suite's 1 s ack timeout comes
    // again (attempt 2), which is a redelivery, not a leak.
    const consumers = types.map((type) =>
      bus.consumer({ consumerGroup: group, messageTypes: [type], ackTimeoutMs: 600_000 }),
    );
    await Promise.all(consumers.map((c) => c.ready));
    await Promise.all(
      types.map((type) => bus.producer({ messageType: type }).send([...Array(10)].map((_, i) => `${type}:${i}`))),
    );
    await Promise.all(
      consumers.map(async (consumer, i) => {
        const got = await collect(consumer, 10, patience);
        assert.equal(got.size, 10);
        for (const m of got.values()) {
          assert.equal(m.type, types[i]);
          assert.ok((m.body as string).startsWith(`${types[i]}:`), `type ${types[i]} received ${m.body}`);
        }
        const extra = await consumer.receive({ timeout: 300 });
        assert.ok(
          extra === null || (extra.type === types[i] && got.has(extra.id)),
          `type ${types[i]} received an extra message: ${extra?.type} ${extra?.body} (attempt ${extra?.attempt})`,
        );
      }),
    );
    await Promise.all(consumers.map((c) => c.close()));
  });

  scenario('4 nack -> redelivered, attempt increments', async () => {
    const type = newType();
    const consumer = bus.consumer({ consumerGroup: newGroup(), messageTypes: [type], ackTimeoutMs: 60_000 });
    await consumer.ready;
    await bus.send(type, 'retry-me');
    const first = await consumer.receive({ timeout: patience });
    assert.ok(first, 'no first delivery');
    assert.equal(first.attempt, 1);
    await first.nack();
    const second = await consumer.receive({ timeout: patience });
    assert.ok(second, 'not redelivered after nack');
    assert.equal(second.id, first.id);
    assert.equal(second.attempt, 2);
    await second.ack();
    assert.equal(await consumer.receive({ timeout: 500 }), null, 'acked message came back');
    await consumer.close();
  });

  scenario(
    '4b nack with delay waits at least the delay',
    async () => {
      const type = newType();
      const consumer = bus.consumer({ consumerGroup: newGroup(), messageTypes: [type], ackTimeoutMs: 60_000 });
      await consumer.ready;
      await bus.send(type, 'retry-me');
      const first = await consumer.receive({ timeout: patience });
      assert.ok(first, 'no first delivery');
      const delayMs = 1500;
      const nackedAt = Date.now();
      await first.nack({ delayMs });
      const again = await consumer.receive({ timeout: patience });
      assert.ok(again, 'not redelivered after a delayed nack');
      assert.ok(
        Date.now() - nackedAt >= delayMs - 50,
        `redelivered after ${Date.now() - nackedAt} ms, before the ${delayMs} ms delay`,
      );
      assert.equal(again.attempt, 2);
      await again.ack();
      assert.equal(await consumer.receive({ timeout: 500 }), null, 'acked message came back');
      await consumer.close();
    },
    () => (caps.nackDelay === 'none' ? 'transport declares nackDelay: none' : undefined),
  );

  scenario(
    '5 no ack -> redelivered after the ack timeout',
    async () => {
      const type = newType();
      const group = newGroup();
      const a = bus.consumer({ consumerGroup: group, messageTypes: [type], ackTimeoutMs });
      await a.ready;
      // Measured from before the send: the lease cannot start earlier, so the bound holds however late this process
      // gets to see the first delivery (the lease starts when the transport takes the message, not when receive()
      // returns it, which on a loaded machine can be most of the ack timeout later).
      const sentAt = Date.now();
      await bus.send(type, 'lease');
      const first = await a.receive({ timeout: patience });
      assert.ok(first);
      const again = await a.receive({ timeout: ackTimeoutMs * 10 + patience });
      assert.ok(again, 'not redelivered after the ack timeout');
      assert.equal(again.id, first.id);
      assert.ok(again.attempt >= 2);
      const after = Date.now() - sentAt;
      assert.ok(after >= ackTimeoutMs * 0.9, `redelivered ${after} ms after the send, before the ack timeout`);
      await again.ack();
      await a.close();
    },
    () => (caps.ackTimeout === 'none' ? 'transport declares ackTimeout: none' : undefined),
  );

  scenario('5b no ack -> redelivered at once when the consumer closes', async () => {
    const type = newType();
    const group = newGroup();
    const b = bus.consumer({ consumerGroup: group, messageTypes: [type], ackTimeoutMs: 120_000 });
    await b.ready;
    await bus.send(type, 'closing');
    const held = await b.receive({ timeout: patience });
    assert.ok(held);
    await b.close();
    const c = bus.consumer({ consumerGroup: group, messageTypes: [type], ackTimeoutMs: 120_000 });
    const back = await c.receive({ timeout: patience });
    assert.ok(back, 'an unacked message did not come back when its consumer closed');
    assert.equal(back.id, held.id);
    await back.ack();
    await c.close();
  });

  scenario('6 consumers closed and reopened repeatedly: none lost', async () => {
    const type = newType();
    const group = newGroup();
    const first = bus.consumer({ consumerGroup: group, messageTypes: [type] });
    await first.ready;
    await first.close();
    await bus.producer({ messageType: type }).send([...Array(200)].map((_, i) => i));
    const seen = new Set<number>();
    for (let round = 0; round < 40 && seen.size < 200; round++) {
      const consumer = bus.consumer({ consumerGroup: group, messageTypes: [type], prefetch: 8 });
      for (let i = 0; i < 10; i++) {
        const m = await consumer.receive({ timeout: 2000 });
        if (!m) break;
        // Ack some, leave some unacked: the unacked ones must come back to a later consumer.
        if (i % 3 !== 2) {
          await m.ack();
          seen.add(m.body as number);
        }
      }
      await consumer.close();
    }
    const last = bus.consumer({ consumerGroup: group, messageTypes: [type] });
    for (const m of (await collect(last, 200 - seen.size, patience)).values()) seen.add(m.body as number);
    await last.close();
    assert.equal(seen.size, 200, `${200 - seen.size} messages lost across consumer restarts`);
  });

  scenario('7 concurrent close is safe; close unblocks a pending receive', async () => {
    const type = newType();
    const consumer = bus.consumer({ consumerGroup: newGroup(), messageTypes: [type] });
    await consumer.ready;
    const pending = consumer.receive({ timeout: 0 });
    await sleep(100);
    await Promise.all([consumer.close(), consumer.close(), consumer.close()]);
    assert.equal(await pending, null);
    assert.equal(await consumer.receive({ timeout: 10 }), null);
    const other = await ctx.openBus();
    const iterating = (async () => {
      const got: unknown[] = [];
      for await (const m of other.consumer({ consumerGroup: newGroup(), messageTypes: [type] })) got.push(m.body);
      return got;
    })();
    await sleep(200);
    await Promise.all([other.close(), other.close()]);
    assert.ok(Array.isArray(await iterating), 'iteration did not end when the bus closed');
  });

  scenario('8 consumers that fail 100 times, then a healthy one gets all', async () => {
    const type = newType();
    const group = newGroup();
    const init = bus.consumer({ consumerGroup: group, messageTypes: [type] });
    await init.ready;
    await init.close();
    await bus.producer({ messageType: type }).send([...Array(20)].map((_, i) => i));
    for (let failure = 0; failure < 100; ) {
      const consumer = bus.consumer({ consumerGroup: group, messageTypes: [type], prefetch: 10 });
      for (let i = 0; i < 10 && failure < 100; i++, failure++) {
        const m = await consumer.receive({ timeout: patience });
        assert.ok(m, 'failing consumer got nothing');
        if (i % 2 === 0) continue; // crash-like: leave it unacked
        await m.nack();
      }
      await consumer.close(); // the unacked ones return now
    }
    const healthy = bus.consumer({ consumerGroup: group, messageTypes: [type] });
    const got = await collect(healthy, 20, patience * 2);
    assert.deepEqual(
      [...new Set([...got.values()].map((m) => m.body as number))].sort((a, b) => a - b),
      [...Array(20).keys()],
    );
    await healthy.close();
  });

  scenario(
    '9 per-key order',
    async () => {
      const type = newType();
      const group = newGroup();
      // A lease that ran out would legitimately let a second member take the key: leases outlast the scenario.
      const consumers = Array.from({ length: 3 }, () =>
        bus.consumer({ consumerGroup: group, messageTypes: [type], prefetch: 10, ackTimeoutMs: 600_000 }),
      );
      await Promise.all(consumers.map((c) => c.ready));
      const { message: outgoing } = await import('../../src/index.ts');
      const producer = bus.producer({ messageType: type });
      for (let batch = 0; batch < 10; batch++) {
        await producer.send(
          [...Array(50)].map((_, i) =>
            outgoing({ n: batch * 10 + (i % 10) }, { key: `key-${i % 5}-${Math.floor(i / 10)}` }),
          ),
        );
      }
      // Keys key-<k>-<j>: each carries n = 0..99 in publish order.
      const lastSeen = new Map<string, number>();
      const processed = new Set<string>();
      /** Keys handed out and not yet acked: per-key order means one message of a key in flight at a time. */
      const inFlight = new Set<string>();
      /** Recorded, not thrown: a throw would leave the other readers looping. */
      const violations: string[] = [];
      let stop = false;
      await Promise.all(
        consumers
          .map(async (c) => {
            while (!stop) {
              const m = await c.receive({ timeout: 200 });
              if (!m) continue;
              if (inFlight.has(m.key!)) violations.push(`key ${m.key}: handed out while another of it is unacked`);
              inFlight.add(m.key!);
              const n = (m.body as { n: number }).n;
              const previous = lastSeen.get(m.key!) ?? -1;
              if (!processed.has(`${m.key}:${n}`)) {
                if (n <= previous) violations.push(`key ${m.key}: ${n} processed after ${previous}`);
                lastSeen.set(m.key!, n);
                processed.add(`${m.key}:${n}`);
              }
              await sleep(Math.random() * 2);
              inFlight.delete(m.key!);
              await m.ack();
              if (processed.size === 500) stop = true;
            }
          })
          .concat([
            (async () => {
              const deadline = Date.now() + patience * 4;
              while (!stop && Date.now() < deadline) await sleep(50);
              stop = true;
            })(),
          ]),
      );
      assert.deepEqual(violations, []);
      assert.equal(processed.size, 500);
      await Promise.all(consumers.map((c) => c.close()));
    },
    () => (caps.ordering === 'none' ? 'transport declares ordering: none' : undefined),
  );

  scenario('10 async producer close flushes everything', async () => {
    const type = newType();
    const group = newGroup();
    const consumer = bus.consumer({ consumerGroup: group, messageTypes: [type] });
    await consumer.ready;
    const producer = bus.producer({ messageType: type, method: 'async', maxBatch: 100 });
    for (let i = 0; i < 20; i++) await producer.send([...Array(50)].map((_, j) => i * 50 + j));
    await producer.close();
    const got = await collect(consumer, 1000, patience * 2);
    assert.equal(got.size, 1000, `${1000 - got.size} async messages missing after close()`);
    await assert.rejects(producer.send([1]), { code: 'BUSBAR_ERR_CLOSED' });
    await consumer.close();
  });

  scenario('11 two groups each get all; within a group each once (redeliveries aside)', async () => {
    const type = newType();
    const groups = [newGroup(), newGroup()];
    const members = groups.map((group) =>
      [0, 1, 2].map(() => bus.consumer({ consumerGroup: group, messageTypes: [type] })),
    );
    await Promise.all(members.flat().map((c) => c.ready));
    await bus.producer({ messageType: type }).send([...Array(300)].map((_, i) => i));
    for (const groupMembers of members) {
      /** First deliveries per message; `seen` has every message in any attempt (a first delivery whose lease
       *  ran out before it was taken is dropped, and the message comes again as attempt 2). */
      const counts = new Map<number, number>();
      const seen = new Set<number>();
      let stop = false;
      const readers = groupMembers.map(async (c) => {
        while (!stop) {
          const m = await c.receive({ timeout: 200 });
          if (!m) continue;
          seen.add(m.body as number);
          if (m.attempt === 1) counts.set(m.body as number, (counts.get(m.body as number) ?? 0) + 1);
          await m.ack();
        }
      });
      const deadline = Date.now() + patience * 2;
      while (seen.size < 300 && Date.now() < deadline) await sleep(50);
      await sleep(300);
      stop = true;
      await Promise.all(readers);
      assert.equal(seen.size, 300, 'a group missed messages');
      assert.ok(
        [...counts.values()].every((n) => n === 1),
        'a message was delivered twice as a first attempt in one group',
      );
    }
    await Promise.all(members.flat().map((c) => c.close()));
  });
}
