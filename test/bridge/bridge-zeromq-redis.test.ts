/**
 * `busbar bridge` from a fedmsg-style ZeroMQ bus to a durable broker (a private, persistent redis-server).
 *
 * The publisher is what a fedmsg service is on the wire (docs/wire/zeromq.md): a socket bound on a port, sending
 * `[topic, JSON dict]` with fedmsg's own fields and no `cloudevents` key. It is an XPUB socket (a PUB to its
 * subscribers) so that the test sees, as an event, when the bridge's SUB socket subscribed: ZeroMQ keeps nothing
 * and acks nothing, so what a bridge can move is exactly what is sent while it is subscribed.
 *
 * The expectation, ZeroMQ's semantics rather than a broker's (docs/bridge.md):
 * - every message sent after the bridge's subscription arrived at the publisher arrives at Redis, with its fedmsg
 *   `msg_id` as id, its `msg` as body and its other fedmsg fields in the `fedmsg` header, through a Redis restart
 *   (the bridge holds them meanwhile);
 * - a kill -9 of the bridge loses what it had received and not yet forwarded, and everything sent while no bridge
 *   ran: the missing messages are one unbroken run of sequence numbers that contains every message sent between the
 *   bridge's death and the new bridge's start, and ends before the new subscription; nothing else is missing.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as zmq from 'zeromq';
import { type Consumer, type Message, MessageBus } from '../../src/index.ts';
import { brokerSkipReason } from '../helpers/brokers.ts';
import { PersistentRedis } from '../helpers/private-brokers.ts';
import { checkRedisServerBinary } from '../helpers/redis-aof.ts';
import { freePort } from '../helpers/zeromq.ts';
import { BridgeProcess, waitFor } from './scenario.ts';

const PREFIX = 'org.fedoraproject';
const ENV = 'prod';
const USER = 'pdc-publisher';

const skip = await brokerSkipReason('redis', async () => checkRedisServerBinary());

function log(t: TestContext, text: string): void {
  t.diagnostic(`${new Date().toISOString().slice(11, 23)} ${text}`);
}

interface Sent {
  readonly msgId: string;
  readonly timestamp: number;
  readonly i: number;
}

/** A fedmsg publisher: binds an XPUB socket, reports subscriptions, sends a steady stream of fedmsg dicts. */
class FedmsgPublisher {
  readonly socket = new zmq.XPublisher({
    sendHighWaterMark: 1_000_000,
    linger: 0,
    // Every subscription is an event, even one whose topic a connection ZeroMQ has not yet dropped still holds.
    verbosity: 'allSubs',
  });
  readonly sent: Sent[] = [];
  /** Subscription events: +1 subscribe, -1 unsubscribe, for the topic under test. */
  subscribed = 0;
  subscriptions = 0;
  /** While this says so, the publisher waits (see the test: it keeps the source's bounded buffer from overflowing). */
  holdBack: () => boolean = () => false;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #events: Promise<void> | undefined;
  readonly topic: string;

  constructor(type: string) {
    this.topic = `${PREFIX}.${ENV}.${type}`;
  }

  async bind(port: number): Promise<void> {
    await this.socket.bind(`tcp://127.0.0.1:${port}`);
    this.#events = this.#watch();
  }

  async #watch(): Promise<void> {
    try {
      for await (const [frame] of this.socket) {
        if (!frame || frame.length === 0) continue;
        // 1 = subscribe, 0 = unsubscribe; the rest is the topic prefix (the bridge subscribes to the full topic).
        if (frame.subarray(1).toString() !== this.topic) continue;
        if (frame[0] === 1) {
          this.subscribed++;
          this.subscriptions++;
        } else if (frame[0] === 0) this.subscribed--;
      }
    } catch {
      // the socket closed
    }
  }

  get seq(): number {
    return this.sent.length;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      for (let n = 0; n < 10; n++) {
        const seq = this.sent.length;
        const timestamp = Math.floor(Date.now() / 1000);
        const msgId = `${new Date().getUTCFullYear()}-${randomUUID()}`;
        const dict = {
          topic: this.topic,
          msg: { seq, compose_id: `Fedora-42-20261202.${seq}`, text: 'bridged ünïcode ✓' },
          timestamp,
          msg_id: msgId,
          i: seq + 1,
          username: USER,
        };
        this.sent.push({ msgId, timestamp, i: seq + 1 });
        await this.socket.send([this.topic, JSON.stringify(dict)]);
      }
      await sleep(5);
      while (!this.#stopped && this.holdBack()) await sleep(20);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }

  async close(): Promise<void> {
    await this.stop();
    this.socket.close();
    await this.#events;
  }
}

/** Reads the target type in its own group, acking each, making a new consumer whenever one fails. */
class Reader {
  readonly seen = new Map<string, number>();
  arrivals = 0;
  restarts = 0;
  readonly problems: string[] = [];
  #stopped = false;
  #consumer: Consumer | undefined;
  readonly done: Promise<void>;
  #ready!: () => void;
  readonly ready = new Promise<void>((resolve) => {
    this.#ready = resolve;
  });

  readonly type: string;
  readonly sent: Sent[];

  constructor(bus: MessageBus, type: string, sent: Sent[]) {
    this.type = type;
    this.sent = sent;
    this.done = this.#run(bus);
  }

  get unique(): number {
    return this.seen.size;
  }

  async #run(bus: MessageBus): Promise<void> {
    while (!this.#stopped) {
      const consumer = bus.consumer({ consumerGroup: 'reader', messageTypes: [this.type], prefetch: 200 });
      this.#consumer = consumer;
      try {
        await consumer.ready;
        this.#ready();
        for (;;) {
          const m = await consumer.receive({ timeout: 500 });
          if (this.#stopped) break;
          if (!m) continue;
          this.arrivals++;
          const count = this.seen.get(m.id) ?? 0;
          this.seen.set(m.id, count + 1);
          if (count === 0) this.#check(m);
          await m.ack().catch(() => {});
        }
      } catch {
        this.restarts++;
      }
      await consumer.close().catch(() => {});
      if (!this.#stopped) await sleep(500);
    }
  }

  #check(m: Message): void {
    const body = m.body as { seq: number; compose_id: string; text: string };
    const sent = this.sent[body.seq];
    const problem = (what: string) => {
      this.problems.push(`seq ${body.seq} (${m.id}): ${what}`);
    };
    if (!sent) {
      problem('never sent');
      return;
    }
    if (m.id !== sent.msgId) problem(`id ${m.id}, msg_id was ${sent.msgId}`);
    if (m.type !== this.type) problem(`type ${m.type}`);
    if (m.source !== 'pdc') problem(`source ${m.source}`);
    if (m.time !== new Date(sent.timestamp * 1000).toISOString()) problem(`time ${m.time} for ${sent.timestamp}`);
    if (body.compose_id !== `Fedora-42-20261202.${body.seq}` || body.text !== 'bridged ünïcode ✓')
      problem(`body ${JSON.stringify(body)}`);
    try {
      const fedmsg = JSON.parse(m.headers.fedmsg ?? 'null');
      assert.deepEqual(fedmsg, { msg_id: sent.msgId, timestamp: sent.timestamp, i: sent.i, username: USER });
    } catch {
      problem(`fedmsg header ${m.headers.fedmsg}`);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#consumer?.close().catch(() => {});
    await this.done;
  }
}

describe('busbar bridge: zeromq (fedmsg) -> redis', { skip, timeout: 400_000 }, () => {
  let redis: PersistentRedis | undefined;
  before(async () => {
    redis = await PersistentRedis.start();
  });
  after(async () => {
    await redis?.stop();
  });

  it('what is sent while a bridge is subscribed arrives with its fedmsg fields; a kill -9 loses only the gap', {
    timeout: 360_000,
  }, async (t) => {
    const type = `pdc.bridge-${randomUUID().slice(0, 8)}`;
    const port = await freePort();
    const publisher = new FedmsgPublisher(type);
    await publisher.bind(port);
    const target = await MessageBus.connect({ broker: redis!.url });
    const reader = new Reader(target, type, publisher.sent);
    const bridges: BridgeProcess[] = [];
    t.after(async () => {
      await Promise.allSettled(bridges.map((b) => b.stop(5000)));
      await publisher.close();
      await reader.stop();
      await target.close().catch(() => {});
    });
    await reader.ready;

    const ids = (from: number, to: number) => publisher.sent.slice(from, to).map((s) => s.msgId);
    const state = () =>
      `sent ${publisher.seq}, arrived ${reader.unique} unique / ${reader.arrivals}; subscribed ${publisher.subscribed}; bridge stderr: ${bridges.at(-1)?.stderr.slice(-2000)}`;
    const arrive = (n: number, what: string) => {
      const goal = reader.unique + n;
      return waitFor(() => reader.unique >= goal, 120_000, `${n} more arrivals (${what})`, state);
    };
    /** Starts a bridge and waits until its subscription reached the publisher; returns the seq at that moment. */
    const startBridge = async (): Promise<{ bridge: BridgeProcess; spawnedAt: number; subscribedAt: number }> => {
      const subscriptions = publisher.subscriptions;
      const spawnedAt = publisher.seq;
      const bridge = new BridgeProcess([
        '--from',
        `zeromq://127.0.0.1:${port}?topicPrefix=${PREFIX}&environment=${ENV}`,
        '--to',
        redis!.url,
        '--types',
        type,
        '--group',
        'from-fedmsg',
        '--prefetch',
        '200',
        '--batch',
        '100',
        '--json',
      ]);
      bridges.push(bridge);
      await bridge.running();
      await waitFor(
        () => publisher.subscriptions > subscriptions,
        60_000,
        "the bridge's subscription at the publisher",
        state,
      );
      return { bridge, spawnedAt, subscribedAt: publisher.seq };
    };

    // The bridge's ZeroMQ source keeps at most 10,000 waiting messages per group and drops the oldest beyond that
    // (bounded memory for a slow consumer). While a bridge runs, the publisher stays at most 3,000 ahead of what
    // arrived, so the only losses are the kill's, never a loaded machine's slowness (a Redis restart, a slow start).
    let paced = true;
    /** Sent messages known never to arrive: those of the kill's gap, counted when the new bridge subscribes. */
    let lost = 0;
    publisher.holdBack = () => paced && publisher.seq - reader.unique - lost > 3000;
    const first = await startBridge();
    assert.equal(first.subscribedAt, 0);
    log(t, `bridge zeromq -> redis running and subscribed`);
    publisher.start();
    await arrive(500, 'first bridge');

    await first.bridge.kill9();
    paced = false;
    const killedAt = publisher.seq; // sent before this may be lost in the dead bridge; from here on, certainly
    log(t, `bridge killed (SIGKILL): ${state().split(';')[0]}`);
    await waitFor(() => publisher.seq >= killedAt + 500, 60_000, '500 sends while no bridge runs', state);

    const second = await startBridge();
    lost = second.subscribedAt - reader.unique;
    paced = true;
    log(t, `bridge restarted (spawned at seq ${second.spawnedAt}, subscribed at seq ${second.subscribedAt})`);
    await arrive(500, 'restarted bridge');
    await redis!.restart(1000);
    log(t, `target redis restarted: ${state().split(';')[0]}`);
    await arrive(500, 'after the target restart');
    await publisher.stop();
    const total = publisher.seq;
    log(t, `publisher stopped: ${total} sent`);

    // Everything before the kill's loss and everything after the new subscription must arrive.
    const missingBefore = () => ids(0, killedAt).filter((id) => !reader.seen.has(id));
    const afterSubscribe = ids(second.subscribedAt, total);
    await waitFor(
      () => afterSubscribe.every((id) => reader.seen.has(id)),
      120_000,
      'every message sent after the restarted bridge subscribed',
      () => `${afterSubscribe.filter((id) => !reader.seen.has(id)).length} missing; ${state()}`,
    );
    const exit = await second.bridge.stop();
    const stats = JSON.parse(second.bridge.lastStats);
    log(t, `last bridge: forwarded ${stats.forwarded}, publishRetries ${stats.publishRetries}`);
    await reader.stop();

    const missing = publisher.sent.flatMap((s, seq) => (reader.seen.has(s.msgId) ? [] : [seq]));
    const lostFirst = missing[0] ?? killedAt;
    const lostLast = missing.at(-1) ?? killedAt;
    log(
      t,
      `missing ${missing.length}: seq ${lostFirst}..${lostLast}, of which ${killedAt - lostFirst} sent before the kill (held by the dead bridge), ` +
        `${second.spawnedAt - killedAt} while no bridge ran, ${lostLast + 1 - second.spawnedAt} before the new subscription; ` +
        `${reader.arrivals - reader.unique} duplicate deliveries; reader restarts ${reader.restarts}; ${missingBefore().length} of the first ${killedAt} missing`,
    );
    assert.deepEqual(reader.problems.slice(0, 10), [], 'messages that changed on the way');
    assert.equal(missing.length, lostLast - lostFirst + 1, `the missing messages are one unbroken run: ${missing}`);
    assert.ok(
      lostFirst <= killedAt,
      'the missing run begins no later than the kill (what the dead bridge held, then the gap)',
    );
    assert.ok(lostLast + 1 >= second.spawnedAt, 'everything sent while no bridge ran is missing');
    assert.ok(lostLast < second.subscribedAt, 'nothing sent after the new subscription is missing');
    assert.equal(reader.unique, total - missing.length);
    assert.equal(exit.code, 0, `the bridge exits 0 on SIGTERM: ${second.bridge.stderr}`);
  });
});
