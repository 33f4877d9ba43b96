/**
 * The redis transport's delivery path without a Redis: a subscription over scripted connections, so the tests can
 * count and fail commands. Acks of one turn share one XACK, a failed XACK leaves each ack retryable, a read asks for
 * every slot freed in a turn, close() returns what it holds in one RELEASE per stream; plus the wire
 * decoding's string reuse.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isBusError } from '../../src/errors.ts';
import type { ConsumeOptions, Delivery } from '../../src/transport/contract.ts';
import { FORGET_CONSUMER, RELEASE } from '../../src/transports/redis/scripts.ts';
import { RedisSubscription, type SubscriptionHost } from '../../src/transports/redis/subscription.ts';
import { decodeEntry, encodeFields, Keys } from '../../src/transports/redis/wire.ts';

type Command = readonly (string | Buffer)[];
type Entry = [Buffer, Buffer[]];

/** Connections that answer from a script: reads hand out what the test queued, every command is recorded. */
class Scripted {
  readonly keys = new Keys('busbar');
  readonly sent: Command[] = [];
  readonly reads: number[] = [];
  /** Answers one XACK: resolves to the count unless the test says otherwise. */
  xack: (ids: readonly string[]) => Promise<number> = async (ids) => ids.length;
  readonly #queued = new Map<string, Entry[]>();
  #sequence = 0;
  #wakeReader: (() => void) | undefined;

  /** Adds `count` entries to `type`'s stream, as busbar would have written them. */
  add(type: string, count: number): void {
    const stream = this.keys.stream(type);
    const entries = this.#queued.get(stream) ?? [];
    for (let i = 0; i < count; i++) {
      const id = `1700000000000-${this.#sequence++}`;
      const fields = encodeFields({
        id: `m-${id}`,
        type,
        source: 'test',
        time: new Date(1_700_000_000_000).toISOString(),
        contentType: 'text/plain',
        headers: {},
        body: Buffer.from(id),
      }).map((f) => Buffer.from(f));
      entries.push([Buffer.from(id), fields]);
    }
    this.#queued.set(stream, entries);
    this.#wakeReader?.();
  }

  host(): SubscriptionHost {
    const reader = {
      send: async (args: Command) => (args[0] === 'CLIENT' ? 42 : 'OK'),
      sendBinary: (args: Command) => this.#read(args),
      run: async () => [],
      close: async () => undefined,
      destroy: () => undefined,
    };
    const connection = {
      duplicate: async () => reader,
      send: async (args: Command) => {
        this.sent.push(args);
        if (args[0] === 'XACK') return this.xack(args.slice(3).map(String));
        return 'OK';
      },
      run: async (script: { sha: string }, keys: readonly string[], args: Command) => {
        this.sent.push(['EVALSHA', script.sha, String(keys.length), ...keys, ...args]);
        return 0;
      },
    };
    return {
      connection: connection as unknown as SubscriptionHost['connection'],
      keys: this.keys,
      ensureType: async () => undefined,
      wakeGroup: () => undefined,
      forget: () => undefined,
    };
  }

  /** XREADGROUP GROUP g c COUNT n [BLOCK ms] STREAMS s... >...: up to n per stream, else waits like BLOCK. */
  async #read(args: Command): Promise<unknown> {
    const count = Number(args[5]);
    const at = args.indexOf('STREAMS');
    const streams = args.slice(at + 1, at + 1 + (args.length - at - 1) / 2).map(String);
    const blocking = args.includes('BLOCK');
    for (;;) {
      const reply = streams
        .map((stream) => [Buffer.from(stream), (this.#queued.get(stream) ?? []).splice(0, count)] as const)
        .filter(([, entries]) => entries.length > 0);
      if (reply.length > 0) {
        this.reads.push(count);
        return reply;
      }
      if (!blocking) return null;
      const woken = await Promise.race([
        new Promise<boolean>((resolve) => {
          this.#wakeReader = () => resolve(true);
        }),
        sleep(50).then(() => false),
      ]);
      if (!woken) return null;
    }
  }

  commands(name: string, sha?: string): Command[] {
    return this.sent.filter((c) => c[0] === name && (sha === undefined || c[1] === sha));
  }
}

function options(types: string[], extra: Partial<ConsumeOptions> = {}): ConsumeOptions {
  return { types, group: 'g', consumerId: 'c', offset: 'earliest', prefetch: 8, ackTimeoutMs: 30_000, ...extra };
}

async function take(iterator: AsyncIterator<Delivery>, count: number): Promise<Delivery[]> {
  const got: Delivery[] = [];
  while (got.length < count) {
    const next = await iterator.next();
    if (next.done) break;
    got.push(next.value);
  }
  return got;
}

describe('redis delivery path (scripted connections)', () => {
  it('acks made in one turn go out as one XACK; a failed XACK fails those acks retryably, and each may be retried', async (t) => {
    const redis = new Scripted();
    const sub = new RedisSubscription(redis.host(), options(['orders']));
    t.after(() => sub.close());
    redis.add('orders', 4);
    const deliveries = await take(sub[Symbol.asyncIterator](), 4);

    let fail = true;
    redis.xack = async (ids) => {
      if (fail) throw new Error('connection lost');
      return ids.length;
    };
    const first = deliveries.map((d) => d.ack());
    assert.equal(new Set(first).size, 1, 'acks of one turn share one promise');
    assert.strictEqual(deliveries[0]!.ack(), first[0], 'ack is idempotent while it is pending');
    const failure = await first[0]!.then(
      () => undefined,
      (error: unknown) => error,
    );
    assert.ok(isBusError(failure) && failure.code === 'BUSBAR_ERR_ACK' && failure.retryable, String(failure));
    assert.equal(redis.commands('XACK').length, 1);
    assert.deepEqual(redis.commands('XACK')[0]!.slice(3).map(String), [
      '1700000000000-0',
      '1700000000000-1',
      '1700000000000-2',
      '1700000000000-3',
    ]);

    fail = false;
    await Promise.all(deliveries.slice(0, 2).map((d) => d.ack()));
    assert.equal(redis.commands('XACK').length, 2, 'the retried acks went out again, together');
    assert.deepEqual(redis.commands('XACK')[1]!.slice(3).map(String), ['1700000000000-0', '1700000000000-1']);
    await Promise.all(deliveries.map((d) => d.ack()));
    assert.equal(redis.commands('XACK').length, 3);
  });

  it('a failed ack nobody awaits is no unhandled rejection', async (t) => {
    const redis = new Scripted();
    const sub = new RedisSubscription(redis.host(), options(['orders']));
    t.after(() => sub.close());
    redis.add('orders', 2);
    const deliveries = await take(sub[Symbol.asyncIterator](), 2);
    redis.xack = async () => {
      throw new Error('connection lost');
    };
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    t.after(() => process.off('unhandledRejection', onUnhandled));
    for (const delivery of deliveries) void delivery.ack();
    await sleep(20);
    assert.deepEqual(unhandled, []);
  });

  it('the next read asks for every slot freed in a turn, not one read per ack', async (t) => {
    const redis = new Scripted();
    const sub = new RedisSubscription(redis.host(), options(['orders'], { prefetch: 8 }));
    t.after(() => sub.close());
    redis.add('orders', 24);
    let received = 0;
    for await (const delivery of sub) {
      void delivery.ack();
      if (++received === 24) break;
    }
    assert.deepEqual(redis.reads, [8, 8, 8]);
  });

  it('prefetch holds: no read while the application holds every slot', async (t) => {
    const redis = new Scripted();
    const sub = new RedisSubscription(redis.host(), options(['orders'], { prefetch: 4 }));
    t.after(() => sub.close());
    redis.add('orders', 10);
    const iterator = sub[Symbol.asyncIterator]();
    const held = await take(iterator, 4);
    await sleep(30);
    assert.deepEqual(redis.reads, [4]);
    await held[0]!.ack();
    await held[1]!.ack();
    const next = await take(iterator, 2);
    assert.equal(next.length, 2);
    await sleep(30);
    assert.equal(
      redis.reads.reduce((a, b) => a + b),
      6,
    );
  });

  it('close() returns everything held in one RELEASE per stream, with each delivery count, then forgets the consumer', async (t) => {
    const redis = new Scripted();
    const sub = new RedisSubscription(redis.host(), options(['orders', 'refunds'], { prefetch: 8 }));
    t.after(() => sub.close());
    redis.add('orders', 3);
    redis.add('refunds', 3);
    const held = await take(sub[Symbol.asyncIterator](), 6);
    await held[0]!.ack();
    await sub.close();

    const releases = redis.commands('EVALSHA', RELEASE.sha);
    assert.equal(releases.length, 2, 'one release per stream');
    const released = new Map<string, string[]>();
    for (const command of releases) {
      const [, , , stream, delayed, group, consumer, delayMs, ...pairs] = command.map(String);
      assert.equal(delayed, `${stream}:delayed:g`);
      assert.equal(group, 'g');
      assert.match(consumer!, /^c~/);
      assert.equal(delayMs, '0');
      released.set(stream!, pairs);
    }
    const ackedId = held[0]!.message.id.slice(2);
    const expected = (type: string) =>
      held
        .filter((d) => (d as unknown as { type: string }).type === type && d.message.id.slice(2) !== ackedId)
        .flatMap((d) => [d.message.id.slice(2), '1']);
    assert.deepEqual(released.get('busbar:{orders}'), expected('orders'));
    assert.deepEqual(released.get('busbar:{refunds}'), expected('refunds'));
    const forget = redis.commands('EVALSHA', FORGET_CONSUMER.sha);
    assert.equal(forget.length, 2);
    assert.ok(redis.sent.indexOf(forget[0]!) > redis.sent.indexOf(releases[1]!), 'forgotten after the releases');
  });
});

describe('redis wire decoding reuses strings only when the bytes match', () => {
  it('gives what Buffer.toString() gives for repeated, changing, non-ASCII and invalid UTF-8 values', () => {
    const entry = (source: Buffer, time: Buffer, contentType: Buffer, ceType: Buffer) => [
      Buffer.from('ce_source'),
      source,
      Buffer.from('ce_time'),
      time,
      Buffer.from('content-type'),
      contentType,
      Buffer.from('ce_type'),
      ceType,
      Buffer.from('data'),
      Buffer.from('x'),
    ];
    const values = [
      'shop',
      'shop',
      'shoq',
      'shöp',
      'sh\u00f6',
      '',
      'application/json',
      '2026-12-01T00:00:00.000Z',
      '2026-12-01T00:00:00.001Z',
    ].map((v) => Buffer.from(v));
    values.push(Buffer.from([0x73, 0x68, 0xff, 0x70]), Buffer.from([0x73, 0x68, 0xff, 0x70]), Buffer.from([0xc3]));
    for (const a of values) {
      for (const b of values) {
        for (const fields of [entry(a, b, a, b), entry(b, a, b, a)]) {
          const message = decodeEntry('orders', '1700000000000-0', fields);
          assert.equal(message.source, fields[1]!.toString() || 'unknown');
          // (An empty ce_time is filled in with the time of receipt; one that is no RFC 3339 time too, and kept.)
          const time = fields[3]!.toString();
          if (time.startsWith('2026')) assert.equal(message.time, time);
          else if (time) assert.equal(message.headers['busbar-invalid-time'], time);
          assert.equal(message.contentType, fields[5]!.toString() || 'application/octet-stream');
          assert.equal(message.type, fields[7]!.toString() || 'orders');
        }
      }
    }
  });
});
