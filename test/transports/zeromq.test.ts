/**
 * The zeromq transport beyond the conformance suite: its options, what it refuses (purge, retention, partitions),
 * publishing through a fedmsg-relay (a relay written here with raw zeromq sockets, as fedmsg-relay binds them),
 * a slow subscriber (the publisher fails within sendWaitMs instead of blocking or queueing without bound), and a
 * group's bounded buffer (it drops its oldest and counts them in stats).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import * as zmq from 'zeromq';
import { MessageBus } from '../../src/index.ts';
import { startServer } from '../../src/server/index.ts';
import { decodeDict, encodeDict } from '../../src/transports/zeromq/wire.ts';
import { freePort, loopbackUrl } from '../helpers/zeromq.ts';

const type = () => `t-${randomUUID().slice(0, 8)}`;
const group = () => `g-${randomUUID().slice(0, 8)}`;

describe('zeromq transport', { timeout: 120_000 }, () => {
  const buses: MessageBus[] = [];
  const sockets: zmq.Socket[] = [];
  after(async () => {
    await Promise.allSettled(buses.map((b) => b.close()));
    for (const socket of sockets) socket.close();
  });
  const connect = async (url: string) => {
    const bus = await MessageBus.connect(url);
    buses.push(bus);
    return bus;
  };

  it('refuses bad options, credentials, and a URL with nothing to do', async () => {
    const invalid = { code: 'BUSBAR_ERR_INVALID_CONFIG' };
    await assert.rejects(MessageBus.connect('zeromq://127.0.0.1:3000?nope=1'), invalid);
    await assert.rejects(MessageBus.connect('zeromq://127.0.0.1:3000?highWaterMark=0'), invalid);
    await assert.rejects(MessageBus.connect('zeromq://127.0.0.1:3000?bind=http://x'), invalid);
    await assert.rejects(MessageBus.connect('zeromq://127.0.0.1:3000?topicPrefix=a..b'), invalid);
    await assert.rejects(MessageBus.connect('zeromq://user:pw@127.0.0.1:3000'), invalid);
    await assert.rejects(MessageBus.connect('zeromq://127.0.0.1'), /ZeroMQ has no default port/);
    await assert.rejects(
      MessageBus.connect('zeromq://127.0.0.1:3000?bind=tcp://127.0.0.1:3001&relay=tcp://127.0.0.1:3002'),
      /mutually exclusive/,
    );
    const readOnly = await connect(`zmq+tcp://127.0.0.1:${await freePort()}`);
    await assert.rejects(readOnly.send(type(), 'x'), /cannot publish: add \?bind=/);
  });

  it('fails loudly where ZeroMQ cannot: purge, retention, partitions', async () => {
    const bus = await connect(loopbackUrl(await freePort()));
    const admin = bus.admin();
    const t = type();
    await admin.registerMessageType(t);
    const unsupported = { code: 'BUSBAR_ERR_UNSUPPORTED' };
    await assert.rejects(admin.purge(t), unsupported);
    await assert.rejects(admin.setExpiry(t, { expireTimeMs: 1000 }), unsupported);
    await assert.rejects(admin.addConcurrency(t, 2), /partition/i);
    assert.equal(bus.capabilities.persistence, false);
    assert.equal(bus.capabilities.replay, false);
  });

  it('publishes through a fedmsg-relay (active mode) and reads its outbound endpoint', async () => {
    const [inbound, outbound] = [await freePort(), await freePort()];
    // fedmsg-relay: a SUB socket bound on relay_inbound, a PUB socket bound on relay_outbound, every message passed on.
    const relayIn = new zmq.Subscriber({ linger: 0 });
    const relayOut = new zmq.Publisher({ linger: 0 });
    sockets.push(relayIn, relayOut);
    await relayIn.bind(`tcp://127.0.0.1:${inbound}`);
    await relayOut.bind(`tcp://127.0.0.1:${outbound}`);
    relayIn.subscribe();
    const relaying = (async () => {
      for await (const frames of relayIn) await relayOut.send(frames);
    })();
    const bus = await connect(`zeromq://127.0.0.1:${outbound}?relay=tcp://127.0.0.1:${inbound}`);
    const t = type();
    const consumer = bus.consumer({ consumerGroup: group(), messageTypes: [t] });
    // ready waits for a probe to come back through the relay: what is published next arrives.
    await consumer.ready;
    await bus.send(t, { through: 'relay' });
    const got = await consumer.receive({ timeout: 15_000 });
    assert.deepEqual(got?.body, { through: 'relay' });
    await got!.ack();
    await consumer.close();
    relayIn.close();
    await relaying;
  });

  it('a slow subscriber makes publish fail within sendWaitMs, never block or queue without bound', async () => {
    const port = await freePort();
    const bus = await connect(`zeromq:?bind=tcp://127.0.0.1:${port}&highWaterMark=5&sendWaitMs=300`);
    const t = type();
    // A subscriber that never reads, with a tiny queue of its own.
    const stuck = new zmq.Subscriber({ receiveHighWaterMark: 5, linger: 0 });
    sockets.push(stuck);
    stuck.connect(`tcp://127.0.0.1:${port}`);
    stuck.subscribe();
    const body = new Uint8Array(256 * 1024);
    let failure: unknown;
    // Kernel buffers absorb some messages first; 2,000 x 256 KiB (500 MiB) is far more than they hold.
    for (let i = 0; i < 2000 && failure === undefined; i++) {
      const started = Date.now();
      await bus.send(t, body).catch((error: unknown) => {
        failure = error;
        // Bounded, not blocked: 300 ms of waiting, with a margin no pause of a loaded machine reaches.
        assert.ok(Date.now() - started < 20_000, `publish took ${Date.now() - started} ms to fail`);
      });
    }
    assert.ok(failure, 'publishing never failed with a subscriber that does not read');
    assert.equal((failure as { code?: string }).code, 'BUSBAR_ERR_TIMEOUT');
    assert.equal((failure as { retryable?: boolean }).retryable, true);
    assert.match((failure as Error).message, /high-water mark/);
    stuck.close();
  });

  it('a long publish lets the event loop turn while it sends (its own subscriber, timers, I/O)', async () => {
    const bus = await connect(loopbackUrl(await freePort(), '&groupBuffer=10000'));
    const t = type();
    const consumer = bus.consumer({ consumerGroup: group(), messageTypes: [t], prefetch: 10_000 });
    await consumer.ready;
    let sending = true;
    let turns = 0;
    const turn = () => {
      turns++;
      if (sending) setImmediate(turn);
    };
    setImmediate(turn);
    // zeromq.js resolves a send synchronously while the socket has room; with a send timeout of 0 it did so for
    // every send, and a batch this long went out without one event-loop turn (nothing else of the process ran).
    await bus.producer({ messageType: t }).send([...Array(5000)].map((_, i) => i));
    sending = false;
    assert.ok(turns > 0, 'the event loop did not turn once while 5,000 messages were sent');
    await consumer.close();
  });

  it('a group that cannot keep up drops its oldest beyond groupBuffer, and stats count them', async () => {
    const bus = await connect(loopbackUrl(await freePort(), '&groupBuffer=5'));
    const t = type();
    const g = group();
    const consumer = bus.consumer({ consumerGroup: g, messageTypes: [t], prefetch: 1 });
    await consumer.ready;
    await bus.producer({ messageType: t }).send([...Array(20)].map((_, i) => i));
    // Decided by the counts: all 20 have arrived once unread + dropped = 20 (bounded wait).
    const deadline = Date.now() + 15_000;
    let stats = (await bus.admin().stats(t))[0]!.groups.find((x) => x.group === g)!;
    while (stats.unread + (stats.dropped ?? 0) < 20 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      stats = (await bus.admin().stats(t))[0]!.groups.find((x) => x.group === g)!;
    }
    assert.equal(stats.unread, 5);
    assert.equal(stats.dropped, 15);
    assert.equal((await bus.admin().stats(t))[0]!.depth, -1);
    // The REST gateway shows the count too: in the stats JSON and as a Prometheus counter.
    const server = await startServer({ bus, port: 0 });
    try {
      const body = (await (await fetch(`${server.url}/v1/types/${t}/stats`)).json()) as {
        groups: { group: string; dropped?: number }[];
      };
      assert.equal(body.groups.find((x) => x.group === g)?.dropped, 15);
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      assert.match(metrics, new RegExp(`busbar_group_dropped_total\\{type="${t}",group="${g}"\\} 15`));
    } finally {
      await server.close();
    }
    // The oldest were dropped (the one leased to the member, 0, stays with it): the newest remain.
    const bodies: unknown[] = [];
    for (let i = 0; i < 5; i++) {
      const m = await consumer.receive({ timeout: 30_000 });
      assert.ok(m);
      bodies.push(m.body);
      await m.ack();
    }
    assert.deepEqual(bodies, [0, 16, 17, 18, 19]);
    await consumer.close();
  });

  it('a second frame that is not a fedmsg dict is delivered as bytes, with the reason in a header', async () => {
    const port = await freePort();
    const foreign = new zmq.Publisher({ linger: 0 });
    sockets.push(foreign);
    await foreign.bind(`tcp://127.0.0.1:${port}`);
    const bus = await connect(`zeromq://127.0.0.1:${port}?topicPrefix=org.fedoraproject&environment=prod`);
    const t = type();
    const consumer = bus.consumer({ consumerGroup: group(), messageTypes: [t] });
    await consumer.ready;
    // This bus publishes nothing, so its ready cannot probe: the foreign publisher repeats until one arrives.
    let got: Awaited<ReturnType<typeof consumer.receive>> = null;
    for (let i = 0; i < 300 && !got; i++) {
      await foreign.send([`org.fedoraproject.prod.${t}`, 'not json {']);
      await foreign.send(['org.fedoraproject.prod.other', '{}']);
      await foreign.send([`org.fedoraproject.stg.${t}`, '{}']);
      await foreign.send(`org.fedoraproject.prod.${t}`); // one frame: not fedmsg, ignored
      got = await consumer.receive({ timeout: 50 });
    }
    assert.ok(got, 'nothing arrived from the foreign publisher');
    assert.equal(Buffer.from(got.raw).toString(), 'not json {');
    assert.equal(got.contentType, 'application/octet-stream');
    assert.match(got.headers['busbar-fedmsg-invalid'] ?? '', /not a JSON object/);
    await got.ack();
    await consumer.close();
  });

  it('an ack after the lease ended still counts: the message is not delivered again', async () => {
    const bus = await connect(loopbackUrl(await freePort()));
    const t = type();
    const g = group();
    const first = bus.consumer({ consumerGroup: g, messageTypes: [t], ackTimeoutMs: 200 });
    await first.ready;
    await bus.send(t, 'late');
    const held = await first.receive({ timeout: 15_000 });
    assert.ok(held);
    await first.close(); // the message is back in the group at once, waiting for a member
    await held.ack(); // ... and this late ack settles it all the same
    const second = bus.consumer({ consumerGroup: g, messageTypes: [t] });
    assert.equal(await second.receive({ timeout: 500 }), null, 'a late-acked message was delivered again');
    await second.close();
  });

  it('a signed fedmsg message goes out unchanged on its own topic only (a dead letter keeps its headers)', () => {
    const topic = 'com.example.dev.bodhi.update';
    const frame = JSON.stringify({ topic, msg: { a: 1 }, timestamp: 1, msg_id: '2026-x', i: 7, signature: 's' });
    const received = decodeDict('bodhi.update', Buffer.from(frame));
    assert.deepEqual(JSON.parse(received.headers.fedmsg!), {
      timestamp: 1,
      msg_id: '2026-x',
      i: 7,
      signature: 's',
      topic,
    });
    const identity = { username: 'me', nextI: () => 1 };
    assert.deepEqual(JSON.parse(encodeDict(received, topic, identity)), JSON.parse(frame));
    const dead = { ...received, headers: { ...received.headers, 'busbar-dlq-reason': 'boom' } };
    const deadDict = JSON.parse(encodeDict(dead, `${topic}.dlq`, identity));
    assert.equal(deadDict.topic, `${topic}.dlq`);
    assert.equal(deadDict.signature, 's');
    assert.equal(JSON.parse(deadDict.cloudevents.busbarheaders)['busbar-dlq-reason'], 'boom');
  });

  it('per-key order: a key waits while its earlier message is out, even through a delayed nack', async () => {
    const bus = await connect(loopbackUrl(await freePort()));
    const t = type();
    const consumer = bus.consumer({ consumerGroup: group(), messageTypes: [t], prefetch: 10 });
    await consumer.ready;
    const { message } = await import('../../src/index.ts');
    await bus
      .producer({ messageType: t })
      .send([message('a1', { key: 'a' }), message('a2', { key: 'a' }), message('b1', { key: 'b' })]);
    const seen: string[] = [];
    const take = async () => {
      const m = await consumer.receive({ timeout: 15_000 });
      assert.ok(m, `stalled after ${seen.join(',')}`);
      seen.push(`${m.body}#${m.attempt}`);
      return m;
    };
    const a1 = await take();
    const b1 = await take();
    await b1.ack();
    await a1.nack({ delayMs: 300 });
    await (await take()).ack(); // a1 again, not a2
    await (await take()).ack();
    assert.deepEqual(seen, ['a1#1', 'b1#1', 'a1#2', 'a2#1']);
    await consumer.close();
  });

  it('two buses of one process bind the same endpoint once; each is its own group', async () => {
    const url = loopbackUrl(await freePort());
    const [a, b] = [await connect(url), await connect(url)];
    const t = type();
    const g = group();
    const [ca, cb] = [
      a.consumer({ consumerGroup: g, messageTypes: [t] }),
      b.consumer({ consumerGroup: g, messageTypes: [t] }),
    ];
    await Promise.all([ca.ready, cb.ready]);
    await a.send(t, 'to both');
    for (const c of [ca, cb]) {
      const m = await c.receive({ timeout: 15_000 });
      assert.equal(m?.body, 'to both');
      await m!.ack();
    }
    await Promise.all([ca.close(), cb.close()]);
  });
});
