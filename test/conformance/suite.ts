/**
 * The conformance suite (DESIGN §10): every transport runs these scenarios through the bus layer, gated by the
 * capabilities it declares. A scenario a capability rules out is skipped with the reason, never deleted or weakened.
 * A transport plugs in with one small file: test/conformance/<name>.test.ts calling runConformance().
 * The suite leaves nothing behind on the broker: it records every type it names (and that type's dead-letter type),
 * and after the scenarios deregisters those the transport lists through the bus's admin API, i.e. the transport's
 * deleteType, which also removes what the transport derives from a type (retry topics, streams, queues, helper keys).
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { resolveConfig } from '../../src/config/index.ts';
import {
  type BusOptions,
  type Capabilities,
  type Consumer,
  deadLetterTypeOf,
  type Message,
  MessageBus,
} from '../../src/index.ts';
import type { Transport } from '../../src/transport/contract.ts';
import { loadCapabilities, loadTransport } from '../../src/transport/registry.ts';
import { brokerSkipReason } from '../helpers/brokers.ts';
import { ruleScenarios } from './rules.ts';

export interface ConformanceSpec {
  /** Transport name, as in BUSBAR_REQUIRE_BROKERS and the registry. */
  name: string;
  /** Tells apart two runs of one transport in the report (e.g. `persistent, restarted`). */
  variant?: string;
  /** Options (or URL) for MessageBus.connect; called once per bus. */
  connect: () => string | BusOptions | Promise<string | BusOptions>;
  /** Throws when the broker is unreachable (the suite is then skipped, or fails when required). */
  check?: () => Promise<void>;
  /** Restarts the broker (stop, start, wait until it answers). Enables scenario 13. */
  restart?: () => Promise<void>;
  /** Ack timeout used by the redelivery scenarios (ms). Default 1000. */
  ackTimeoutMs?: number;
  /** How long to wait for messages that should arrive (ms). Default 15000. */
  patienceMs?: number;
  /** Runs once before / after the suite (e.g. start a private broker); `after` runs once the suite's types are deleted. */
  before?: () => Promise<void>;
  after?: () => Promise<void>;
  /**
   * Removes what the run left on the broker besides its types (which the suite deletes through the admin API), given
   * every type and consumer group it named: e.g. group state no admin call deletes. Runs after the types are deleted.
   */
  cleanup?: (created: { types: readonly string[]; groups: readonly string[] }) => Promise<void>;
}

const names = () => randomUUID().slice(0, 8);
export const uniqueType = (prefix = 'conf') => `${prefix}-${names()}`;
export const uniqueGroup = () => `g-${names()}`;

/** Receives until `count` distinct message ids arrived or `patienceMs` passed; acks each unless told not to. */
export async function collect(
  consumer: Consumer,
  count: number,
  patienceMs: number,
  options: { ack?: boolean; onMessage?: (m: Message) => void } = {},
): Promise<Map<string, Message>> {
  const seen = new Map<string, Message>();
  const deadline = Date.now() + patienceMs;
  while (seen.size < count && Date.now() < deadline) {
    const message = await consumer.receive({ timeout: Math.max(1, Math.min(1000, deadline - Date.now())) });
    if (!message) continue;
    options.onMessage?.(message);
    seen.set(message.id, message);
    if (options.ack !== false) await message.ack();
  }
  return seen;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Reads `read()` until `done` holds or `patienceMs` pass; returns the last value (the caller asserts on it). */
async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, patienceMs: number): Promise<T> {
  const deadline = Date.now() + patienceMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await sleep(200);
  }
}

/** Retries a publish that failed with a retryable BusError (a broker outage), as an application would. */
async function sendRetrying(send: () => Promise<void>, patienceMs: number): Promise<void> {
  const deadline = Date.now() + patienceMs;
  for (;;) {
    try {
      await send();
      return;
    } catch (error) {
      const retryable = (error as { retryable?: boolean }).retryable === true;
      if (!retryable || Date.now() > deadline) throw error;
      await sleep(200);
    }
  }
}

export function runConformance(spec: ConformanceSpec): void {
  const ackTimeoutMs = spec.ackTimeoutMs ?? 1000;
  const patience = spec.patienceMs ?? 15_000;
  let skip: string | undefined;
  let caps: Capabilities;
  const buses: MessageBus[] = [];
  const transports: Transport[] = [];
  /** Every type this run named, with its dead-letter type: what the suite deletes when it ends. */
  const created = new Set<string>();
  /** Every consumer group this run named, for spec.cleanup. */
  const groups = new Set<string>();

  /** A new type name for a scenario, recorded for deletion. */
  function newType(prefix?: string): string {
    const type = uniqueType(prefix);
    created.add(type);
    created.add(deadLetterTypeOf(type));
    return type;
  }

  function newGroup(): string {
    const group = uniqueGroup();
    groups.add(group);
    return group;
  }

  async function connectBus(): Promise<MessageBus> {
    const options = await spec.connect();
    const base: BusOptions = typeof options === 'string' ? { broker: options } : options;
    return MessageBus.connect({ ackTimeoutMs, ...base });
  }

  async function open(): Promise<MessageBus> {
    const bus = await connectBus();
    buses.push(bus);
    return bus;
  }

  /** The transport alone, as the bus would make it, for the scenarios about the contract itself. */
  async function openTransport(): Promise<Transport> {
    const options = await spec.connect();
    const config = resolveConfig(typeof options === 'string' ? { broker: options } : options);
    const transport = await (await loadTransport(config.scheme))(config.transport);
    transports.push(transport);
    return transport;
  }

  /**
   * Deregisters every recorded type the transport lists (deleting an unknown type is a no-op, but a slow one on some
   * brokers), on a fresh bus once the scenarios' buses closed; then checks that none is listed any more.
   */
  async function deleteCreatedTypes(): Promise<void> {
    if (created.size === 0) return;
    const bus = await connectBus();
    try {
      const admin = bus.admin();
      const remaining = async () => (await admin.listMessageTypes()).map((t) => t.type).filter((t) => created.has(t));
      const failures: unknown[] = [];
      for (const type of await remaining()) {
        await admin.deregisterMessageType(type).catch((error: unknown) => failures.push(error));
      }
      if (failures.length > 0) {
        throw new AggregateError(failures, `could not delete ${failures.length} of the types this run created`);
      }
      // deregisterMessageType resolves once the type is gone (the Kafka transport waits out its metadata lag).
      assert.deepEqual(await remaining(), [], 'types this run created are still listed after deleting them');
    } finally {
      await bus.close();
    }
  }

  describe(`conformance: ${spec.name}${spec.variant ? ` (${spec.variant})` : ''}`, { concurrency: 1 }, () => {
    let bus: MessageBus;

    before(async () => {
      if (spec.check) skip = await brokerSkipReason(spec.name, spec.check);
      if (skip) return;
      await spec.before?.();
      bus = await open();
      caps = bus.capabilities;
    });

    after(async () => {
      await Promise.allSettled([...buses, ...transports].map((b) => b.close()));
      if (skip) return;
      try {
        try {
          await deleteCreatedTypes();
        } finally {
          await spec.cleanup?.({ types: [...created], groups: [...groups] });
        }
      } finally {
        await spec.after?.();
      }
    });

    /** Declares a scenario; `needs` returns the reason to skip given the capabilities, if any. */
    function scenario(
      title: string,
      run: () => Promise<void>,
      needs?: () => string | undefined,
      timeout = 120_000,
    ): void {
      it(title, { timeout }, async (t) => {
        if (skip) return t.skip(skip);
        const reason = needs?.();
        if (reason) return t.skip(reason);
        await run();
      });
    }

    scenario('0 capabilities: every flag has a known value, as the transport module exports them', async () => {
      // The scenarios below skip by these flags, so a misspelt value would silently run or skip the wrong ones.
      const support = ['native', 'emulated', 'none'];
      assert.ok(['none', 'per-key', 'total'].includes(caps.ordering), `ordering ${caps.ordering}`);
      assert.ok(support.includes(caps.nackDelay), `nackDelay ${caps.nackDelay}`);
      assert.ok(support.includes(caps.ackTimeout), `ackTimeout ${caps.ackTimeout}`);
      for (const flag of ['replay', 'partitions', 'purge', 'lag', 'persistence'] as const) {
        assert.equal(typeof caps[flag], 'boolean', `${flag} is not a boolean`);
      }
      // Optional until every transport declares it (absent means false).
      assert.ok(caps.createGroup === undefined || typeof caps.createGroup === 'boolean', 'createGroup');
      assert.equal(typeof caps.retention.age, 'boolean');
      assert.equal(typeof caps.retention.bytes, 'boolean');
      assert.deepEqual(caps, await loadCapabilities(spec.name), 'the connected transport declares other capabilities');
    });

    scenario('1 round trip: ids, headers, key, body byte-exact (binary, unicode, empty, 1 MiB)', async () => {
      const type = newType();
      const consumer = bus.consumer({ consumerGroup: newGroup(), messageTypes: [type], offset: 'earliest' });
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
      const consumers = types.map((type) => bus.consumer({ consumerGroup: group, messageTypes: [type] }));
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
          assert.equal(await consumer.receive({ timeout: 300 }), null, `type ${types[i]} received an extra message`);
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
        await bus.send(type, 'lease');
        const first = await a.receive({ timeout: patience });
        assert.ok(first);
        const leasedAt = Date.now();
        const again = await a.receive({ timeout: ackTimeoutMs * 10 + patience });
        assert.ok(again, 'not redelivered after the ack timeout');
        assert.equal(again.id, first.id);
        assert.ok(again.attempt >= 2);
        assert.ok(Date.now() - leasedAt >= ackTimeoutMs * 0.9, 'redelivered before the ack timeout');
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
      const other = await open();
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
        const g = stats[0]!.groups.find((x) => x.group === groupA);
        assert.ok(g, `stats list no group ${groupA}`);
        // Acked 3 of 10; the 2 in flight are still unread.
        assert.equal(g.unread, 7, `unread ${g.unread}, expected 7`);
        assert.equal(await admin.unreadCount(type, groupA), 7);
        assert.ok(g.oldestAgeMs === null || g.oldestAgeMs >= 0);
        assert.ok(stats[0]!.depth >= 10 || stats[0]!.depth === -1);
        // Brokers that report in-flight counts a moment late: wait for the figure to settle, then check it.
        const inflight = async () => (await admin.stats(type))[0]!.groups.find((x) => x.group === groupA)!.inflight;
        const settled = await eventually(inflight, (n) => n === 2 || n === -1, patience);
        assert.ok(settled === 2 || settled === -1, `inflight ${settled} with 2 unacked at prefetch 2, expected 2`);
      }
      await a.close();
      if (caps.purge) {
        await admin.purge(type);
        stats = await admin.stats(type);
        if (stats[0]!.depth !== -1) assert.equal(stats[0]!.depth, 0, 'depth after purge');
        if (caps.lag)
          assert.equal(stats[0]!.groups.find((x) => x.group === groupA)?.unread ?? 0, 0, 'unread after purge');
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

    scenario(
      '15b registering again grows or refuses; deleting, purging or stats of an unknown type reject',
      async () => {
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
      },
    );

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

    ruleScenarios({
      bus: () => bus,
      caps: () => caps,
      openTransport,
      newType,
      newGroup,
      ackTimeoutMs,
      patience,
      scenario,
    });
  });
}
