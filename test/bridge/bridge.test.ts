/**
 * The bridge as a library, between two embedded brokers (SQLite files of their own): what it moves and under which
 * name, what it keeps of each message, its stats, and how it meets a target that fails. A target that fails on
 * purpose is the real embedded transport behind a gate (the bus takes any transport); the broker pairs with real
 * network brokers, crashes and restarts are in the other files here.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Bridge, BusError, bridge, MessageBus, message, resolveConfig } from '../../src/index.ts';
import type { Transport, TransportMessage } from '../../src/transport/contract.ts';
import { loadTransport } from '../../src/transport/registry.ts';

async function embedded(t: TestContext, name: string): Promise<{ bus: MessageBus; transport: Transport; url: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'busbar-bridge-'));
  const url = `embedded:${join(dir, `${name}.db`)}`;
  const config = resolveConfig(url);
  const transport = await (await loadTransport(config.scheme))(config.transport);
  const bus = new MessageBus(transport, config);
  t.after(async () => {
    await bus.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { bus, transport, url };
}

/** The real transport, whose publish first runs `gate` (which may wait or throw). */
function gated(transport: Transport, gate: (batch: readonly TransportMessage[]) => Promise<void>): Transport {
  return new Proxy(transport, {
    get(target, key) {
      if (key === 'publish') {
        return async (type: string, batch: readonly TransportMessage[]) => {
          await gate(batch);
          return target.publish(type, batch);
        };
      }
      const value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/**
 * Receives `count` messages of `type` in a fresh group, acking each, giving up after `ms` (the caller checks what
 * came); then, if `quietMs`, waits that long for one more, which the caller sees as an extra message.
 */
async function take(bus: MessageBus, type: string, count: number, ms = 60_000, quietMs = 0) {
  const consumer = bus.consumer({
    consumerGroup: `check-${Math.random().toString(36).slice(2)}`,
    messageTypes: [type],
  });
  const got = [];
  const deadline = Date.now() + ms;
  try {
    while (got.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const m = await consumer.receive({ timeout: left });
      if (!m) break;
      got.push(m);
      await m.ack();
    }
    const extra = quietMs > 0 && got.length === count ? await consumer.receive({ timeout: quietMs }) : null;
    if (extra) got.push(extra);
    return got;
  } finally {
    await consumer.close();
  }
}

async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('bridge (library, embedded -> embedded)', { timeout: 120_000 }, () => {
  it('keeps id, source, time, content type, key, headers and the body bytes; acks at the source', async (t) => {
    const a = await embedded(t, 'a');
    const b = await embedded(t, 'b');
    const bytes = new Uint8Array([0, 255, 1, 254, 10, 13]);
    await a.bus.sendBatch('orders', [
      message(bytes, { key: 'k1', headers: { traceparent: '00-abc-def-01', 'x-user': 'ü' }, source: 'svc://a' }),
      message({ n: 1 }, { key: 'k1', time: '2020-01-02T03:04:05.678Z', id: 'fixed-id-1' }),
      message('', { contentType: 'text/plain' }),
    ]);
    const sent = await take(a.bus, 'orders', 3);
    const running = await bridge({ from: a.bus, to: b.bus, types: 'orders', lagIntervalMs: 50 });
    t.after(() => running.close());
    const got = await take(b.bus, 'orders', 3);
    assert.equal(got.length, 3);
    for (const [i, m] of got.entries()) {
      const s = sent[i]!;
      assert.deepEqual(
        { id: m.id, source: m.source, time: m.time, contentType: m.contentType, key: m.key, headers: m.headers },
        { id: s.id, source: s.source, time: s.time, contentType: s.contentType, key: s.key, headers: s.headers },
      );
      assert.deepEqual(Buffer.from(m.raw), Buffer.from(s.raw));
    }
    await until(() => running.stats().lag === 0, 10_000, 'lag 0 at the source');
    const stats = running.stats();
    assert.equal(stats.forwarded, 3);
    assert.equal(stats.types[0]!.type, 'orders');
    assert.equal(stats.from, 'embedded');
    assert.equal(await a.bus.admin().unreadCount('orders', 'busbar-bridge'), 0);
  });

  it('patterns and renames: * is one dotted part, ** any run; a type made later is found by discover()', async (t) => {
    const a = await embedded(t, 'a');
    const b = await embedded(t, 'b');
    await a.bus.send('legacy.orders', 'one');
    await a.bus.send('legacy.eu.orders', 'deep');
    await a.bus.send('other', 'not bridged');
    const running = await bridge({
      from: a.bus,
      to: b.bus,
      types: ['legacy.*', 'audit.**', 'exact-one'],
      rename: { 'legacy.*': 'shop.*', 'audit.**': 'log.**' },
      discoverIntervalMs: 0,
    });
    t.after(() => running.close());
    await running.ready();
    assert.deepEqual([...running.types].sort(), [
      ['exact-one', 'exact-one'],
      ['legacy.orders', 'shop.orders'],
    ]);
    await a.bus.send('audit.x.y', 'later');
    await running.discover();
    assert.equal(running.types.get('audit.x.y'), 'log.x.y');
    assert.equal((await take(b.bus, 'shop.orders', 1))[0]?.body, 'one');
    assert.equal((await take(b.bus, 'log.x.y', 1))[0]?.body, 'later');
    await a.bus.send('exact-one', 'e');
    assert.equal((await take(b.bus, 'exact-one', 1))[0]?.body, 'e');
    assert.equal(await b.bus.admin().hasMessageType('legacy.eu.orders'), false);
    assert.equal(await b.bus.admin().hasMessageType('other'), false);
  });

  it('a target that fails for a while: the same batch is retried, nothing lost or doubled, order kept', async (t) => {
    const a = await embedded(t, 'a');
    const real = await embedded(t, 'b');
    let failures = 5;
    const target = new MessageBus(
      gated(real.transport, async () => {
        if (failures-- > 0) throw new BusError('BUSBAR_ERR_CONNECTION', 'target down (test)', { retryable: true });
      }),
    );
    await a.bus.sendBatch(
      'seq',
      Array.from({ length: 200 }, (_, i) => message({ i }, { key: `k${i % 3}` })),
    );
    const running = await bridge({ from: a.bus, to: target, types: 'seq', maxBatch: 50 });
    t.after(() => running.close());
    const warnings: BusError[] = [];
    running.on('warning', (w) => warnings.push(w));
    const got = await take(real.bus, 'seq', 200, 60_000, 1000);
    assert.deepEqual(
      got.map((m) => (m.body as { i: number }).i),
      Array.from({ length: 200 }, (_, i) => i),
    );
    assert.ok(running.stats().publishRetries >= 5);
    assert.ok(warnings.some((w) => w.code === 'BUSBAR_ERR_CONNECTION'));
  });

  it('a message whose lease ran out while the target was down joins its waiting copy: published once', async (t) => {
    const a = await embedded(t, 'a');
    const real = await embedded(t, 'b');
    let open!: () => void;
    const opened = new Promise<void>((resolve) => {
      open = resolve;
    });
    const target = new MessageBus(gated(real.transport, () => opened));
    await a.bus.sendBatch('slow', ['x', 'y', 'z']);
    const running = await bridge({ from: a.bus, to: target, types: 'slow', ackTimeoutMs: 200, maxBatch: 1 });
    t.after(() => running.close());
    await until(() => running.stats().types[0]!.joined >= 2, 20_000, 'redeliveries joined to waiting copies');
    open();
    await until(() => running.stats().forwarded === 3, 20_000, 'three forwarded');
    const got = await take(real.bus, 'slow', 3, 60_000, 1000);
    assert.deepEqual(
      got.map((m) => m.body),
      ['x', 'y', 'z'],
    );
  });

  it('falls behind while the target stalls and says so; catches up once it flows', async (t) => {
    const a = await embedded(t, 'a');
    const real = await embedded(t, 'b');
    let open!: () => void;
    const opened = new Promise<void>((resolve) => {
      open = resolve;
    });
    const target = new MessageBus(gated(real.transport, () => opened));
    const running = await bridge({ from: a.bus, to: target, types: 'busy', lagIntervalMs: 50, prefetch: 5 });
    t.after(() => running.close());
    const behind = new Promise((resolve) => running.once('behind', resolve));
    const caughtUp = new Promise((resolve) => running.once('caught-up', resolve));
    let sending = true;
    const producer = (async () => {
      while (sending) {
        await a.bus.sendBatch('busy', ['a', 'b', 'c']);
        await sleep(10);
      }
    })();
    await behind;
    assert.equal(running.stats().behind, true);
    sending = false;
    await producer;
    open();
    await caughtUp;
    await until(() => running.stats().lag === 0, 20_000, 'lag 0');
    assert.equal(running.stats().behind, false);
  });

  it('a message the target refuses stops the bridge with that error and stays unacked at the source', async (t) => {
    const a = await embedded(t, 'a');
    const real = await embedded(t, 'b');
    const target = new MessageBus(
      gated(real.transport, async () => {
        throw new BusError('BUSBAR_ERR_MESSAGE_TOO_LARGE', 'too large for the target (test)');
      }),
    );
    await a.bus.send('big', 'payload');
    const running = await bridge({ from: a.bus, to: target, types: 'big' });
    await assert.rejects(running.done, (e: BusError) => e.code === 'BUSBAR_ERR_MESSAGE_TOO_LARGE');
    assert.equal(await a.bus.admin().unreadCount('big', 'busbar-bridge'), 1);
  });

  it('on one broker, a type is never published to itself or to a type the bridge reads', async (t) => {
    const a = await embedded(t, 'a');
    await assert.rejects(
      bridge({ from: a.bus, to: a.bus, types: 'orders' }),
      (e: BusError) => e.code === 'BUSBAR_ERR_INVALID_ARGUMENT' && /loop/.test(e.message),
    );
    await a.bus.send('in.x', 'one');
    await a.bus.send('out.x', 'old');
    const running = await bridge({ from: a.bus, to: a.bus, types: ['in.*', 'out.*'], rename: { 'in.*': 'out.*' } });
    t.after(() => running.close());
    assert.deepEqual([...running.types], [['in.x', 'out.x']]);
    assert.deepEqual(
      (await take(a.bus, 'out.x', 2)).map((m) => m.body),
      ['old', 'one'],
    );
  });

  it('checks its options: bad patterns, renames and missing ends are errors that say what to write', async () => {
    const bad = async (options: Record<string, unknown>, pattern: RegExp) =>
      assert.rejects(
        Bridge.start(options as never),
        (e: BusError) => e.code === 'BUSBAR_ERR_INVALID_ARGUMENT' && pattern.test(e.message),
      );
    await bad({ to: 'memory:' }, /needs 'from'/);
    await bad({ from: 'memory:', to: 'memory:', types: 'a b' }, /invalid type pattern/);
    await bad({ from: 'memory:', to: 'memory:', types: ' , ' }, /names no type/);
    await bad({ from: 'memory:', to: 'memory:', rename: { a: 'b.*' } }, /more wildcards/);
    await bad({ from: 'memory:', to: 'memory:', prefetch: 0 }, /prefetch/);
  });
});
