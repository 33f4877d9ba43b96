/**
 * MQTT: a handler closed and reopened on the same group, again and again while the group still holds a backlog,
 * hands its messages on without repeating any. Each reopening member adopts the sessions left behind while an
 * earlier member's adoption of an older session may still be draining it; two adopters of one session must never
 * run at once (the second would take the session over and hand back again what the first already handed back).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { MessageBus } from '../../src/index.ts';
import { PrivateMosquitto } from './mqtt-broker.ts';

// A private Mosquitto with max_queued_messages 0: the stock bound (1000 per session) would drop most of the backlog.
let skip: string | false = false;
try {
  PrivateMosquitto.check();
} catch (error) {
  skip = (error as Error).message;
}

const BACKLOG = 10_000;
const ROUNDS = 8;
const PER_ROUND = 50;

describe('mqtt handler handover', { skip }, () => {
  let broker: PrivateMosquitto;
  let bus: MessageBus;
  before(async () => {
    broker = await PrivateMosquitto.start();
    bus = await MessageBus.connect(broker.url);
  });
  after(async () => {
    await bus?.close();
    await broker?.stop();
  });

  it('closing a handler and opening the next at once, several times while messages flow, repeats nothing', async (t) => {
    const type = `handover-${randomUUID()}`;
    const group = `g-${randomUUID()}`;
    await bus.admin().registerMessageType(type);
    // The group's first member leaves at once: its session keeps the whole backlog for the next member to adopt.
    const first = bus.consumer({ consumerGroup: group, messageTypes: type, consumerId: 'worker' });
    await first.ready;
    await first.close();
    const producer = bus.producer({ messageType: type });
    for (let i = 0; i < BACKLOG; i += 200) await producer.send(Array.from({ length: 200 }, (_, j) => ({ n: i + j })));

    const deliveries = new Map<string, number>();
    const count = (id: string) => deliveries.set(id, (deliveries.get(id) ?? 0) + 1);
    for (let round = 0; round < ROUNDS; round++) {
      let handled = 0;
      let enough: () => void = () => {};
      const done = new Promise<void>((resolve) => {
        enough = resolve;
      });
      const handler = bus.handle(type, { group, consumerId: 'worker', concurrency: 8, ackTimeoutMs: 600_000 }, (m) => {
        count(m.id);
        if (++handled === PER_ROUND) enough();
      });
      await done;
      await handler.close();
    }

    // The last member takes everything that is left, then the group must hold no departed session any more.
    const records = await mqtt.connectAsync(broker.url, { protocolVersion: 5 });
    t.after(() => records.endAsync());
    const departed = new Set<string>();
    let settled: () => void = () => {};
    const noneDeparted = new Promise<void>((resolve) => {
      settled = resolve;
    });
    let allSeen: () => void = () => {};
    const everything = new Promise<void>((resolve) => {
      allSeen = resolve;
    });
    const last = bus.handle(type, { group, consumerId: 'worker', concurrency: 8, ackTimeoutMs: 600_000 }, (m) => {
      count(m.id);
      if (deliveries.size === BACKLOG) allSeen();
    });
    t.after(() => last.close());
    const repeatedOnes = () => [...deliveries].filter(([, n]) => n > 1).length;
    await everything;
    assert.equal(repeatedOnes(), 0, `${repeatedOnes()} of ${BACKLOG} messages were handled more than once`);
    records.on('message', (topic, payload) => {
      const session = topic.slice(topic.lastIndexOf('/') + 1);
      const state = payload.length ? (JSON.parse(payload.toString()) as { state: string }).state : 'gone';
      if (state === 'online' || state === 'gone') departed.delete(session);
      else departed.add(session);
      if (departed.size === 0) settled();
    });
    await records.subscribeAsync(`busbar/_members/${group}/+`, { qos: 1 });
    await noneDeparted;

    // Adoptions still draining when every id had been seen may have handed back copies: none may be a repeat.
    assert.equal(repeatedOnes(), 0, `${repeatedOnes()} of ${BACKLOG} messages were handled more than once`);
    assert.equal(deliveries.size, BACKLOG);
  });
});
