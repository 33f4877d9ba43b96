/**
 * Conformance scenarios for the rules src/transport/contract.ts states (its numbered Subscription rules, leases and
 * prefetch), some through the bus, some against the transport itself. Each decides by events: a message arriving
 * or a loop ending; a fixed wait only bounds how long the suite waits for something that must not happen.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { deadLetterTypeOf } from '../../src/index.ts';
import {
  type Delivery,
  MAX_ACK_TIMEOUT_MS,
  type Subscription,
  type TransportMessage,
} from '../../src/transport/contract.ts';
import { collect, type SuiteContext, sleep } from './context.ts';

/** The rules' scenarios take the suite's context (context.ts). */
export type RuleContext = SuiteContext;

const NOTHING = Symbol('nothing');
/** What `promise` gives within `ms`, or NOTHING: only for something that must NOT happen (so no verdict races). */
const within = <T>(promise: Promise<T>, ms: number) =>
  Promise.race([promise, sleep(ms).then((): typeof NOTHING => NOTHING)]);

/** A bare text message as a transport carries it, built only from the contract. */
function textMessage(type: string, text: string): TransportMessage {
  return {
    id: randomUUID(),
    type,
    source: 'conformance',
    time: new Date().toISOString(),
    contentType: 'text/plain; charset=utf-8',
    headers: {},
    body: new TextEncoder().encode(text),
  };
}

/**
 * Iterates `subscription` in the background, without settling, until it ends; `until(n)` resolves once n distinct
 * messages arrived (or `patienceMs` passed: the caller checks the count).
 */
function holdAll(subscription: Subscription) {
  const held = new Map<string, Delivery>();
  const wanted: { count: number; resolve: () => void }[] = [];
  const loop = (async () => {
    for await (const delivery of subscription) {
      held.set(delivery.message.id, delivery);
      for (const w of wanted.filter((x) => held.size >= x.count)) w.resolve();
    }
  })();
  return {
    held,
    loop,
    until: (count: number, patienceMs: number) =>
      within(
        new Promise<void>((resolve) => (held.size >= count ? resolve() : wanted.push({ count, resolve }))),
        patienceMs,
      ),
  };
}

export function ruleScenarios(ctx: RuleContext): void {
  const { newType, newGroup, ackTimeoutMs, patience, scenario } = ctx;
  const noAckTimeout = () => (ctx.caps().ackTimeout === 'none' ? 'transport declares ackTimeout: none' : undefined);
  /** Long enough for the ack timeout to return a message and the group to hand it to another member. */
  const redeliveryPatience = patience + ackTimeoutMs * 10;

  scenario(
    'R1 a slow receive() caller never gets a message another member of its group holds',
    async () => {
      const bus = ctx.bus();
      const type = newType();
      const group = newGroup();
      // prefetch 1: once the first is acked, the second is leased to the slow member, and to it alone.
      const slow = bus.consumer({ consumerGroup: group, messageTypes: [type], ackTimeoutMs, prefetch: 1 });
      await slow.ready;
      await bus.producer({ messageType: type }).send([0, 1]);
      const first = await slow.receive({ timeout: patience });
      assert.ok(first, 'no first message');
      await first.ack();
      // The slow caller now waits past its ack timeout while the next message is leased to it (prefetched).
      const other = bus.consumer({ consumerGroup: group, messageTypes: [type], ackTimeoutMs: 600_000, prefetch: 10 });
      // It gets the second once that lease runs out (unless the group gives it back to the slow member each time).
      const held = await collect(other, 1, redeliveryPatience, { ack: false });
      const late = await slow.receive({ timeout: 200 });
      assert.ok(
        late === null || !held.has(late.id),
        `receive() returned ${late?.body} (attempt ${late?.attempt}), which another member holds`,
      );
      await Promise.all([slow.close(), other.close()]);
    },
    noAckTimeout,
  );

  scenario(
    'R2 rule 3: a transport never hands out a delivery whose lease ended while it waited',
    async () => {
      const transport = await ctx.openTransport();
      const type = newType();
      const group = newGroup();
      const base = { types: [type], group, offset: 'earliest' } as const;
      const slow = transport.consume({ ...base, consumerId: 'slow', prefetch: 1, ackTimeoutMs });
      await slow.ready;
      await transport.publish(type, [textMessage(type, 'first'), textMessage(type, 'second')]);
      const deliveries = slow[Symbol.asyncIterator]();
      const first = await deliveries.next();
      assert.ok(!first.done, 'no first delivery');
      await first.value.ack();
      const other = transport.consume({ ...base, consumerId: 'other', prefetch: 10, ackTimeoutMs: 600_000 });
      const holder = holdAll(other);
      await holder.until(1, redeliveryPatience);
      const late = await within(deliveries.next(), 300);
      if (late !== NOTHING && !late.done) {
        assert.ok(
          !holder.held.has(late.value.message.id),
          `handed out ${late.value.message.id} (attempt ${late.value.attempt}) past its lease, while another member holds it`,
        );
      }
      await Promise.all([slow.close(), other.close()]);
      await holder.loop;
    },
    noAckTimeout,
  );

  scenario('R3 rule 1: leaving a for-await loop closes the subscription (and the consumer)', async () => {
    const transport = await ctx.openTransport();
    const type = newType();
    const group = newGroup();
    const base = { types: [type], group, offset: 'earliest', prefetch: 10, ackTimeoutMs: 600_000 } as const;
    const leaving = transport.consume({ ...base, consumerId: 'leaving' });
    await leaving.ready;
    await transport.publish(type, [textMessage(type, 'a'), textMessage(type, 'b')]);
    for await (const _ of leaving) break;
    const again = await within(leaving[Symbol.asyncIterator]().next(), 5000);
    assert.ok(again !== NOTHING && again.done, 'iterating again after break did not end at once: still open');
    // Both come back at once (the ack timeout is 10 minutes), the one taken and the one waiting in the transport.
    const next = transport.consume({ ...base, consumerId: 'next' });
    const holder = holdAll(next);
    await holder.until(2, patience);
    assert.equal(holder.held.size, 2, 'messages of a subscription left by break did not return to the group');
    await next.close();
    await holder.loop;

    const bus = ctx.bus();
    const consumer = bus.consumer({ consumerGroup: newGroup(), messageTypes: [type], ackTimeoutMs: 600_000 });
    await consumer.ready;
    await bus.send(type, 'c');
    for await (const _ of consumer) break;
    const after = await within(consumer.receive({ timeout: 0 }), 5000);
    assert.equal(after, null, 'a consumer left by break is still open');
  });

  scenario('R4 rule 2: the bus refuses bad consume options; the transport takes every valid one', async () => {
    const bus = ctx.bus();
    const type = newType();
    const group = newGroup();
    const invalid = { code: 'BUSBAR_ERR_INVALID_ARGUMENT' };
    for (const prefetch of [1.5, 0, -1, Number.NaN, Number.POSITIVE_INFINITY, '10' as unknown as number]) {
      assert.throws(
        () => bus.consumer({ consumerGroup: group, messageTypes: [type], prefetch }),
        invalid,
        `${prefetch}`,
      );
    }
    for (const ackTimeoutMs of [0, 1.5, Number.NaN, Number.POSITIVE_INFINITY, MAX_ACK_TIMEOUT_MS + 1]) {
      assert.throws(() => bus.consumer({ consumerGroup: group, messageTypes: [type], ackTimeoutMs }), invalid);
      assert.throws(() => bus.handle(type, { group, ackTimeoutMs }, async () => {}), invalid);
    }
    assert.throws(() => bus.handle(type, { group, concurrency: 1.5 }, async () => {}), invalid);
    const widest = { prefetch: 100_000, ackTimeoutMs: MAX_ACK_TIMEOUT_MS };
    const consumer = bus.consumer({ consumerGroup: group, messageTypes: [type], ...widest });
    await consumer.ready;
    await bus.send(type, 'wide');
    const got = await consumer.receive({ timeout: patience });
    assert.equal(got?.body, 'wide');
    await got.ack();
    await consumer.close();
  });

  scenario(
    'R5 a consumer holding prefetch unacked messages past the ack timeout gets them again',
    async () => {
      const bus = ctx.bus();
      const type = newType();
      const consumer = bus.consumer({ consumerGroup: newGroup(), messageTypes: [type], ackTimeoutMs, prefetch: 3 });
      await consumer.ready;
      await bus.producer({ messageType: type }).send(['a', 'b', 'c']);
      const held = await collect(consumer, 3, patience, { ack: false });
      assert.equal(held.size, 3);
      const again = await collect(consumer, 3, redeliveryPatience);
      assert.deepEqual([...again.keys()].sort(), [...held.keys()].sort(), 'stalled at prefetch with expired leases');
      for (const m of again.values()) assert.ok(m.attempt >= 2, `attempt ${m.attempt} after the ack timeout`);
      await consumer.close();
    },
    noAckTimeout,
  );

  scenario('R6 a consumer dead-letters a message delivered more than maxAttempts times', async () => {
    const bus = ctx.bus();
    const type = newType();
    const dlq = bus.consumer({ consumerGroup: newGroup(), messageTypes: [deadLetterTypeOf(type)] });
    await dlq.ready;
    const consumer = bus.consumer({ consumerGroup: newGroup(), messageTypes: [type], maxAttempts: 2 });
    await consumer.ready;
    await bus.send(type, 'poison');
    for (let attempt = 1; attempt <= 2; attempt++) {
      const m = await consumer.receive({ timeout: patience });
      assert.equal(m?.attempt, attempt);
      await m.nack();
    }
    // The third delivery is dead-lettered while this receive() waits; it never returns it.
    const pending = consumer.receive({ timeout: 0 });
    const dead = await dlq.receive({ timeout: patience });
    assert.ok(dead, 'nothing reached the dead-letter type');
    assert.equal(dead.body, 'poison');
    assert.equal(dead.headers['busbar-dlq-type'], type);
    assert.equal(dead.headers['busbar-dlq-attempts'], '3');
    assert.match(dead.headers['busbar-dlq-reason'] ?? '', /maxAttempts 2/);
    await dead.ack();
    await consumer.close();
    assert.equal(await pending, null, 'the dead-lettered message was also handed out');
    assert.equal(await dlq.receive({ timeout: 500 }), null, 'more than one dead letter');
    await dlq.close();
  });

  scenario('R7 a consumer group created before its first consumer keeps what is sent meanwhile', async () => {
    const bus = ctx.bus();
    const admin = bus.admin();
    const type = newType();
    const group = newGroup();
    if (ctx.caps().createGroup !== true) {
      await assert.rejects(admin.createConsumerGroup(type, group), { code: 'BUSBAR_ERR_UNSUPPORTED' });
      return;
    }
    await admin.createConsumerGroup(type, group);
    await bus.producer({ messageType: type }).send(['a', 'b', 'c']);
    // Again: the group exists, so it keeps its position and what it has not read.
    await admin.createConsumerGroup(type, group);
    await bus.send(type, 'd');
    if (ctx.caps().lag) {
      const deadline = Date.now() + patience;
      let unread: number | undefined;
      while (unread !== 4 && Date.now() < deadline) {
        const [stats] = await admin.stats(type);
        unread = stats?.groups.find((g) => g.group === group)?.unread;
        if (unread !== 4) await sleep(100);
      }
      assert.equal(unread, 4, 'stats() does not show the created group with 4 unread');
    }
    // `latest` would start a new group after the four: these arrive only because the group existed before them.
    const consumer = bus.consumer({ consumerGroup: group, messageTypes: [type], offset: 'latest' });
    await consumer.ready;
    const got = await collect(consumer, 4, patience);
    assert.deepEqual([...got.values()].map((m) => m.body).sort(), ['a', 'b', 'c', 'd']);
    await consumer.close();
    await assert.rejects(admin.createConsumerGroup(type, 'bad group'), { code: 'BUSBAR_ERR_INVALID_GROUP_NAME' });
  });
}
