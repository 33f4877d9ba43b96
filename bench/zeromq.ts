/**
 * zeromq vs raw `zeromq` PUB/SUB, end to end: ZeroMQ stores nothing, so a round publishes its messages and counts
 * them arriving at a subscriber of the same process, instead of filling a reservoir first. Both sides send the same
 * bytes, busbar's wire (docs/wire/zeromq.md: the fedmsg dict with its `cloudevents` key): the raw side builds each
 * dict with JSON.stringify and reads each with JSON.parse, as a hand-written program does; both run a PUB socket with ZMQ_XPUB_NODROP and a high-water
 * mark of 10,000 that retries a full queue (busbar's setting), on their own loopback port, and both wait for their
 * subscription with a probe before the first round. Bodies are 100-byte JSON objects (fedmsg's `msg` is a dict).
 */
import { randomUUID } from 'node:crypto';
import { userInfo } from 'node:os';
import * as zmq from 'zeromq';
import { MessageBus, resolveConfig } from '../src/index.ts';
import type { Transport, TransportMessage } from '../src/transport/contract.ts';
import { loadTransport } from '../src/transport/registry.ts';
import { freePort, loopbackUrl } from '../test/helpers/zeromq.ts';
import type { BenchCase } from './harness.ts';
import { Cleanup, defineCase, freshName, type Tally } from './lib/case.ts';
import { consumerMember, handlerMember, type Member, subscriptionMember } from './lib/members.ts';

const N = 5_000;
const BATCH = 100;
const HIGH_WATER_MARK = 10_000;
/** 100 bytes of JSON. */
const BODY = { text: 'a'.repeat(89) };
const BODY_BYTES = Buffer.from(JSON.stringify(BODY));
const PREFIX = 'com.example.dev.';
/** busbar's groups may hold a whole round and more while the member catches up: no drop can fail a round. */
const URL_OPTIONS = '&groupBuffer=100000';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A raw fedmsg publisher and subscriber on one loopback port. */
class RawFedmsg {
  readonly pub = new zmq.Publisher({ noDrop: true, sendHighWaterMark: HIGH_WATER_MARK, linger: 0 });
  readonly sub = new zmq.Subscriber({ receiveHighWaterMark: HIGH_WATER_MARK, linger: 0 });
  readonly topic: string;
  readonly type: string;
  readonly #username = userInfo().username;
  #i = 0;
  #tally: Tally | undefined;
  #wanted = 0;
  #done: () => void = () => {};
  #probe: (() => void) | undefined;
  #loop: Promise<void> | undefined;

  constructor(type: string) {
    this.type = type;
    this.topic = PREFIX + type;
  }

  async open(port: number): Promise<void> {
    await this.pub.bind(`tcp://127.0.0.1:${port}`);
    this.sub.connect(`tcp://127.0.0.1:${port}`);
    this.sub.subscribe(this.topic);
    this.#loop = this.#read();
    const probed = new Promise<void>((resolve) => {
      this.#probe = resolve;
    });
    let arrived = false;
    void probed.then(() => {
      arrived = true;
    });
    while (!arrived) {
      await this.pub.send([this.topic, JSON.stringify({ topic: this.topic, msg: 'probe', msg_id: 'probe' })]);
      await Promise.race([probed, sleep(20)]);
    }
  }

  async #read(): Promise<void> {
    for await (const [, frame] of this.sub) {
      const dict = JSON.parse(frame!.toString('utf8')) as { msg_id: string; cloudevents?: { id: string } };
      if (dict.msg_id === 'probe') {
        this.#probe?.();
        continue;
      }
      this.#tally?.received(dict.cloudevents!.id);
      if (this.#tally && this.#tally.handled >= this.#wanted) this.#done();
    }
  }

  async #send(frames: [string, string]): Promise<void> {
    for (let pause = 1; ; pause = Math.min(pause * 2, 50)) {
      try {
        return await this.pub.send(frames);
      } catch (error) {
        if ((error as { code?: string }).code !== 'EAGAIN') throw error;
        await sleep(pause);
      }
    }
  }

  async round(tally: Tally): Promise<void> {
    const done = new Promise<void>((resolve) => {
      this.#done = resolve;
    });
    this.#tally = tally;
    this.#wanted = N;
    const year = new Date().getUTCFullYear();
    for (let sent = 0; sent < N; sent++) {
      const id = randomUUID();
      const now = Date.now();
      const dict = {
        topic: this.topic,
        msg: BODY,
        timestamp: Math.floor(now / 1000),
        msg_id: `${year}-${id}`,
        i: ++this.#i,
        username: this.#username,
        cloudevents: {
          specversion: '1.0',
          id,
          source: 'bench',
          type: this.type,
          time: new Date(now).toISOString(),
          datacontenttype: 'application/json',
        },
      };
      await this.#send([this.topic, JSON.stringify(dict)]);
    }
    await withinOneMinute(done, tally, 'raw');
  }

  async close(): Promise<void> {
    this.pub.close();
    this.sub.close();
    await this.#loop;
  }
}

async function withinOneMinute(done: Promise<void>, tally: Tally, side: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${side}: only ${tally.handled} of ${N} arrived within 60 s`)), 60_000);
  });
  try {
    await Promise.race([done, limit]);
  } finally {
    clearTimeout(timer);
  }
}

interface World {
  transport: Transport;
  bus: MessageBus;
  member: Member;
  type: string;
  raw: RawFedmsg;
}

type Publish = (world: World) => Promise<void>;

function endToEndCase(name: string, publish: Publish, member: (world: Omit<World, 'member'>) => Member): BenchCase {
  let world: World | undefined;
  const cleanup = new Cleanup();
  return defineCase({
    name,
    transport: 'zeromq',
    messages: N,
    async setup() {
      const url = loopbackUrl(await freePort(), URL_OPTIONS);
      const config = resolveConfig(url);
      const transport = await (await loadTransport(config.scheme))(config.transport);
      cleanup.add(() => transport.close());
      const bus = await MessageBus.connect(url);
      cleanup.add(() => bus.close());
      const type = freshName('zeromq');
      const raw = new RawFedmsg(freshName('zeromq-raw'));
      cleanup.add(() => raw.close());
      await raw.open(await freePort());
      const partial = { transport, bus, type, raw };
      const m = member(partial);
      cleanup.add(() => m.close());
      await m.ready;
      world = { ...partial, member: m };
    },
    teardown: () => cleanup.run(),
    async subject(tally) {
      const w = world!;
      const received = w.member.round(N, tally);
      await publish(w);
      await withinOneMinute(received, tally, 'busbar');
    },
    baseline: (tally) => world!.raw.round(tally),
  });
}

/** The messages of the transport case, made as cheaply as the raw side makes its ids (bench/lib/case.ts does too). */
function jsonMessages(type: string): TransportMessage[] {
  const time = new Date().toISOString();
  return Array.from({ length: BATCH }, () => ({
    id: randomUUID(),
    type,
    source: 'bench',
    time,
    contentType: 'application/json',
    headers: {},
    body: BODY_BYTES,
  }));
}

const transportPublish: Publish = async ({ transport, type }) => {
  for (let sent = 0; sent < N; sent += BATCH) await transport.publish(type, jsonMessages(type));
};

const producerPublish: Publish = async ({ bus, type }) => {
  const producer = bus.producer({ messageType: type });
  const bodies = Array.from({ length: BATCH }, () => BODY);
  for (let sent = 0; sent < N; sent += BATCH) await producer.send(bodies);
  await producer.close();
};

export default async function cases(): Promise<BenchCase[]> {
  const group = () => freshName('g');
  return [
    endToEndCase(`producer.send 100B x${BATCH} -> consumer for await, await m.ack()`, producerPublish, (w) =>
      consumerMember(w.bus, { type: w.type, group: group() }),
    ),
    endToEndCase(`producer.send 100B x${BATCH} -> bus.handle concurrency 8`, producerPublish, (w) =>
      handlerMember(w.bus, { type: w.type, group: group() }, 8),
    ),
    endToEndCase(`transport.publish 100B x${BATCH} -> subscription, prefetch 256`, transportPublish, (w) =>
      subscriptionMember(w.transport, { type: w.type, group: group() }, 256),
    ),
  ];
}
