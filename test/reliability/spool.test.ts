/**
 * The spool's edges: full (backpressure, then a clear error), the sync producer's fallback when the broker does not
 * answer, one owner per file, a stable name, and `busbar spool status|flush`. Faults through the fault proxy in
 * front of the machine's Redis.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type BusError, isBusError, MessageBus, message } from '../../src/index.ts';
import { buildMessage } from '../../src/message/envelope.ts';
import { SpoolFile } from '../../src/reliability/spool.ts';
import { busbar, lines } from '../cli/process.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { FaultProxy } from '../helpers/fault-proxy.ts';

const url = BROKERS.redis;
const dir = mkdtempSync(join(tmpdir(), 'busbar-spool-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function drain(bus: MessageBus, type: string, expected: number): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  const consumer = bus.consumer({ consumerGroup: 'g', messageTypes: [type], offset: 'earliest' });
  try {
    const deadline = Date.now() + 60_000;
    while (seen.size < expected && Date.now() < deadline) {
      const m = await consumer.receive({ timeout: 2000 });
      if (!m) continue;
      seen.set(m.id, (seen.get(m.id) ?? 0) + 1);
      await m.ack();
    }
  } finally {
    await consumer.close();
  }
  return seen;
}

describe('spool through a fault proxy (redis)', () => {
  let skip: string | undefined;
  let proxy: FaultProxy | undefined;
  let direct: MessageBus | undefined;
  const types: string[] = [];

  before(async () => {
    const { host, port } = hostPort(url, 6379);
    skip = await brokerSkipReason('redis', () => tcpReachable(host, port));
    if (skip) return;
    proxy = await FaultProxy.start({ host, port });
    direct = await MessageBus.connect(url);
  });

  after(async () => {
    if (direct) {
      for (const type of types)
        await direct
          .admin()
          .deregisterMessageType(type)
          .catch(() => {});
      await direct.close();
    }
    await proxy?.close();
  });

  test('full spool: send() waits for room, then fails with BUSBAR_ERR_SPOOL_FULL; nothing accepted is lost', {
    timeout: 120_000,
  }, async (t) => {
    if (skip) return t.skip(skip);
    const p = proxy!;
    const type = `spool-full-${randomUUID().slice(0, 8)}`;
    types.push(type);
    await direct!.admin().registerMessageType(type);
    const bus = await MessageBus.connect(p.url(url));
    t.after(() => bus.close());
    p.refuse(true);
    p.cut();
    const producer = bus.producer({
      messageType: type,
      method: 'async',
      spool: { path: join(dir, `${type}.db`), maxBytes: 20_000, fullWaitMs: 300, drainOnCloseMs: 30_000 },
    });
    const accepted: string[] = [];
    let failure: BusError | undefined;
    for (let n = 0; n < 10_000 && !failure; n++) {
      const id = randomUUID();
      try {
        await producer.send([message({ n }, { id })]);
        accepted.push(id);
      } catch (error) {
        assert.ok(isBusError(error, 'BUSBAR_ERR_SPOOL_FULL'), String(error));
        failure = error as BusError;
      }
    }
    assert.ok(failure, 'the spool filled up');
    assert.match(failure.message, /is full \(\d+ of 20000 bytes\).*restore the broker, raise spool.maxBytes/);
    assert.equal(failure.retryable, true);
    const stats = producer.stats().spool!;
    assert.equal(stats.messages, accepted.length);
    assert.ok(stats.bytes <= 20_000);
    assert.ok(stats.lastError, 'the last broker error is visible in stats');
    p.refuse(false);
    await producer.flush();
    assert.equal(producer.stats().spool!.messages, 0);
    const seen = await drain(direct!, type, accepted.length);
    t.diagnostic(`accepted ${accepted.length} before full; delivered ${seen.size}`);
    for (const id of accepted) assert.ok(seen.has(id), `accepted ${id} delivered`);
    await producer.close();
  });

  test('sync producer: straight to the broker; into the spool when the broker stalls; replayed after', {
    timeout: 120_000,
  }, async (t) => {
    if (skip) return t.skip(skip);
    const p = proxy!;
    const type = `spool-sync-${randomUUID().slice(0, 8)}`;
    types.push(type);
    await direct!.admin().registerMessageType(type);
    const bus = await MessageBus.connect(p.url(url));
    t.after(() => bus.close());
    const producer = bus.producer({
      messageType: type,
      producerId: 'sync-test',
      spool: { path: join(dir, `${type}.db`), publishTimeoutMs: 2000 },
    });
    await producer.send(['direct']);
    assert.equal(producer.stats().spool!.replayed, 0);
    assert.equal(producer.stats().spool!.messages, 0, 'a confirmed send leaves nothing in the spool');
    p.stall(true);
    await producer.send(['stalled-1']);
    await producer.send(['stalled-2']);
    assert.equal(producer.stats().spool!.messages, 2, 'unconfirmed sends are in the spool');
    p.stall(false);
    await producer.flush();
    const seen = await drain(direct!, type, 3);
    assert.equal(seen.size, 3);
    t.diagnostic(`deliveries per id: ${JSON.stringify([...seen.values()])} (a stalled send may arrive twice)`);
    await producer.close();
  });
});

describe('spool: ownership, names, CLI', () => {
  test('one producer per spool file; a spool needs a stable name', async (t) => {
    const bus = await MessageBus.connect('memory:');
    t.after(() => bus.close());
    const path = join(dir, 'owned.db');
    const first = bus.producer({ messageType: 'a', method: 'async', spool: path });
    assert.throws(
      () => bus.producer({ messageType: 'a', method: 'async', spool: path }),
      (e: unknown) => isBusError(e, 'BUSBAR_ERR_SPOOL') && /already used by another producer/.test(e.message),
    );
    await first.close();
    const again = bus.producer({ messageType: 'a', method: 'async', spool: path });
    await again.close();
    const unnamed = await MessageBus.connect('memory:');
    t.after(() => unnamed.close());
    assert.throws(
      () => unnamed.producer({ messageType: 'a', method: 'async', spool: true }),
      (e: unknown) => isBusError(e, 'BUSBAR_ERR_INVALID_ARGUMENT') && /producerId/.test(e.message),
    );
  });

  test('busbar spool status and flush', { timeout: 60_000 }, async (t) => {
    const path = join(dir, 'cli.db');
    const broker = `embedded:${join(dir, 'cli-bus.db')}`;
    const file = SpoolFile.open(path);
    const messages = Array.from({ length: 30 }, (_, n) =>
      buildMessage('cli-spooled', 'test', { n }, { key: `k${n % 3}`, headers: { h: String(n) } }),
    );
    file.append(messages);
    file.close();
    const status = await busbar(['spool', 'status', '--spool', path, '--json']);
    assert.equal(status.code, 0, status.stderr);
    const parsed = JSON.parse(lines(status)[0]!);
    assert.equal(parsed.messages, 30);
    assert.equal(parsed.owner, null);
    const text = await busbar(['spool', 'status', '--spool', path]);
    assert.match(text.stdout.toString(), /waiting: 30 message\(s\)/);
    const flush = await busbar(['spool', 'flush', '--spool', path, '--broker', broker, '--timeout', '30000']);
    assert.equal(flush.code, 0, flush.stderr);
    assert.match(flush.stdout.toString(), /sent 30 of 30 message\(s\)/);
    const bus = await MessageBus.connect(broker);
    t.after(() => bus.close());
    const consumer = bus.consumer({ consumerGroup: 'g', messageTypes: ['cli-spooled'], offset: 'earliest' });
    const got = [];
    for (let i = 0; i < 30; i++) {
      const m = await consumer.receive({ timeout: 30_000 });
      assert.ok(m);
      got.push(m);
      await m.ack();
    }
    await consumer.close();
    assert.deepEqual(
      got.map((m) => m.id),
      messages.map((m) => m.id),
      'same ids, same order',
    );
    assert.deepEqual(got[4]!.headers, { h: '4' });
    assert.equal(got[4]!.key, 'k1');
    const usage = await busbar(['spool', 'status']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--spool FILE or --producer ID/);
    // A mistyped path is an error, not an empty spool, and creates nothing.
    const typo = `${path}.typo`;
    const missing = await busbar(['spool', 'status', '--spool', typo]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no spool file at .*\.typo/);
    assert.equal(existsSync(typo), false);
  });
});
