/**
 * End-to-end latency at a fixed moderate rate (`npm run bench -- latency`): from the moment a message was due to be
 * sent to the moment its handler runs, on every transport, beside the raw client's own publish-to-receive latency on
 * the same broker (the raw clients of bench/<transport>.ts; for zeromq, amqp10 and stomp, whose bench files run batch
 * rounds, the same raw client written here as those files use it).
 *
 * The sender is open-loop: message i is due at start + i / RATE, and is sent then whether or not earlier sends have
 * completed (sends are not awaited one by one), so a stall shows up as the latency of every message due during it
 * instead of hiding in a slower send rate (coordinated omission). Latency counts from the due time, so a sender that
 * falls behind is measured too. Percentiles are exact, over every sample of the timed rounds (the warm-up round,
 * which also absorbs joining the group, is not counted), and each round must receive exactly its messages.
 *
 * busbar's side is `bus.handle` (concurrency 8, its default read-ahead) and knows each message by an index written
 * into its 100-byte body. The raw loops count messages without reading them, so the raw side pairs the k-th arrival
 * with the k-th due time: exact where the broker delivers in publish order (one queue, stream, partition or socket, as
 * here).
 */
import { randomUUID } from 'node:crypto';
import type { MessageBus } from '../src/index.ts';
import { buildMessage } from '../src/message/envelope.ts';
import type { Transport } from '../src/transport/contract.ts';
import { MemoryBroker } from '../src/transports/memory/broker.ts';
import { bench as embedded } from './embedded.ts';
import type { BenchCase } from './harness.ts';
import { bench as kafka } from './kafka.ts';
import { Cleanup, defineCase, freshName, messagesOf, Tally } from './lib/case.ts';
import { ACK_TIMEOUT_MS } from './lib/members.ts';
import { type Env, openEnv, type RawClient, type TransportBench } from './lib/transport-bench.ts';
import { bench as mqtt } from './mqtt.ts';
import { bench as nats } from './nats.ts';
import { bench as rabbitmq } from './rabbitmq.ts';
import { bench as redis } from './redis.ts';

const RATE = Number(process.env.BUSBAR_BENCH_LATENCY_RATE ?? 1_000);
const MESSAGES = Number(process.env.BUSBAR_BENCH_LATENCY_MESSAGES ?? 3_000);
const CONCURRENCY = 8;
/** The raw loops' unacked window: what bus.handle reads ahead at concurrency 8. */
const RAW_PREFETCH = CONCURRENCY * 2;
/** After the last send, how long a round may wait for its stragglers before it fails. */
const DRAIN_MS = 30_000;
const PROBE = 0xffffffff;

export interface Percentiles {
  samples: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

/** Nearest-rank percentiles of every sample, in ms with microsecond precision. */
export function percentiles(samples: readonly number[]): Percentiles | null {
  if (samples.length === 0) return null;
  const sorted = Float64Array.from(samples).sort();
  const at = (p: number) => Math.round(sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]! * 1000) / 1000;
  return { samples: sorted.length, p50: at(0.5), p99: at(0.99), p999: at(0.999), max: at(1) };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function bodyOf(index: number): Uint8Array {
  const body = new Uint8Array(100).fill(0x61);
  new DataView(body.buffer).setUint32(0, index);
  return body;
}

function indexOf(body: Uint8Array): number {
  return new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(0);
}

/**
 * One side's bookkeeping across its rounds: the due time of every message it sent (by global index) and the
 * latency of every arrival in a timed round.
 */
class Recorder {
  readonly due: number[] = [];
  readonly samples: number[] = [];
  arrived = 0;
  outOfOrder = 0;
  sendErrors = 0;
  firstSendError: string | undefined;
  #counting = false;
  #last = -1;
  #tally: Tally | undefined;
  #wanted = 0;
  #done: () => void = () => {};

  /** An arrival whose index the side knows (busbar). */
  byIndex(index: number): void {
    const due = this.due[index];
    if (due === undefined) return; // a probe, or a message of a round already failed
    if (index < this.#last) this.outOfOrder++;
    this.#last = index;
    this.#tally?.received(String(index));
    this.#record(due);
  }

  /** `n` arrivals of a side that counts without reading (raw): the k-th arrival pairs with the k-th due time. */
  inOrder(n: number): void {
    for (let i = 0; i < n; i++) {
      this.#tally?.count();
      this.#record(this.due[this.arrived] ?? Number.NaN);
    }
  }

  #record(due: number): void {
    if (this.#counting) this.samples.push(performance.now() - due);
    if (++this.arrived === this.#wanted) this.#done();
  }

  /** Sends one round open-loop at RATE and waits (bounded) until every message of it arrived. */
  async round(tally: Tally, timed: boolean, send: (index: number) => Promise<unknown>): Promise<void> {
    const base = this.due.length;
    this.#tally = tally;
    this.#counting = timed;
    this.#wanted = base + MESSAGES;
    const all = new Promise<void>((resolve) => {
      this.#done = resolve;
    });
    const period = 1000 / RATE;
    const start = performance.now();
    for (let i = 0; i < MESSAGES; ) {
      const now = performance.now();
      for (; i < MESSAGES && start + i * period <= now; i++) {
        this.due.push(start + i * period);
        send(base + i).catch((error: unknown) => {
          if (this.sendErrors++ === 0) this.firstSendError = (error as Error)?.message ?? String(error);
        });
      }
      if (i < MESSAGES) await sleep(Math.max(0, start + i * period - performance.now()));
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, DRAIN_MS);
    });
    await Promise.race([all, late]);
    clearTimeout(timer);
    this.#tally = undefined;
    if (this.arrived < this.#wanted) {
      throw new Error(
        `${this.#wanted - this.arrived} of ${MESSAGES} messages had not arrived ${DRAIN_MS} ms after the round's last send (${this.sendErrors} sends failed${this.firstSendError ? `, first: ${this.firstSendError}` : ''})`,
      );
    }
  }
}

/** A side of a latency case, once open: sends message `index`; arrivals go to its recorder. */
interface Side {
  readonly recorder: Recorder;
  send(index: number): Promise<unknown>;
}

interface World {
  busbar: Side;
  raw: Side;
  cleanup: Cleanup;
}

/** The details a latency case adds to its result: percentiles of each side over the timed rounds. */
export interface LatencyDetails {
  rate: number;
  busbar: Percentiles | null;
  raw: Percentiles | null;
  busbarOutOfOrder: number;
}

function latencyCase(transport: string, open: (rounds: number) => Promise<World>): BenchCase {
  let world: World | undefined;
  const roundsOf = { busbar: 0, raw: 0 };
  const side = (name: 'busbar' | 'raw') => async (tally: Tally) => {
    const chosen = world?.[name];
    if (!chosen) throw new Error(`latency ${transport}: ${name} side used before its setup`);
    await chosen.recorder.round(tally, roundsOf[name]++ > 0, (i) => chosen.send(i));
  };
  const benchCase = defineCase({
    name: `latency ${RATE} msg/s, bus.handle concurrency ${CONCURRENCY}`,
    transport,
    messages: MESSAGES,
    async setup({ rounds }) {
      world = await open(rounds);
    },
    async teardown() {
      await world?.cleanup.run();
    },
    subject: side('busbar'),
    baseline: side('raw'),
  });
  return Object.assign(benchCase, {
    details: (): LatencyDetails => ({
      rate: RATE,
      busbar: percentiles(world?.busbar.recorder.samples ?? []),
      raw: percentiles(world?.raw.recorder.samples ?? []),
      busbarOutOfOrder: world?.busbar.recorder.outOfOrder ?? 0,
    }),
  });
}

/** busbar's side: a handler on a fresh group of `type`, attached and seen to receive (a probe) before round one. */
async function busbarSide(bus: MessageBus, type: string, group: string, cleanup: Cleanup): Promise<Side> {
  const recorder = new Recorder();
  let probed: () => void = () => {};
  const seen = new Promise<void>((resolve) => {
    probed = resolve;
  });
  const handler = bus.handle(
    type,
    { group, consumerId: 'bench', concurrency: CONCURRENCY, ackTimeoutMs: ACK_TIMEOUT_MS },
    (m) => {
      const index = indexOf(m.raw);
      if (index === PROBE) probed();
      else recorder.byIndex(index);
    },
  );
  cleanup.add(() => handler.close());
  await handler.ready;
  // A brokerless transport (ZeroMQ) delivers only once its subscription reached the publisher: probe until one lands.
  await probeUntil(seen, () => bus.send(type, bodyOf(PROBE)), type);
  return { recorder, send: (i) => bus.send(type, bodyOf(i)) };
}

/** Sends probes every 200 ms until `seen` settles: 30 s at most. */
async function probeUntil(seen: Promise<void>, probe: () => Promise<unknown>, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  let landed = false;
  void seen.then(() => {
    landed = true;
  });
  while (!landed) {
    if (Date.now() > deadline) throw new Error(`${what}: no probe arrived within 30 s`);
    await probe();
    await Promise.race([seen, sleep(200)]);
  }
}

/**
 * A broker with a raw client in bench/<transport>.ts: its raw loop takes every message of the case in one long
 * consume (group joined before the warm-up round), counting into the recorder. With `wakeRaw` (embedded: SQLite
 * tells no reader about a commit) the raw side instead reads right after each of its own commits, as busbar wakes
 * the consumers of its process at each commit (src/transports/embedded/engine.ts): a consume of what was committed.
 */
function brokerCase<R extends RawClient>(
  spec: TransportBench<R>,
  { serialRaw = false, wakeRaw = false }: { serialRaw?: boolean; wakeRaw?: boolean } = {},
): BenchCase {
  return latencyCase(spec.transport, async (rounds) => {
    // One partition, unkeyed: the raw side's arrivals then come in publish order.
    const env: Env<R> = await openEnv({ ...spec, partitions: 1 }, { rounds: 0 });
    try {
      const busbar = await busbarSide(env.bus, env.type, env.group, env.cleanup);
      const recorder = new Recorder();
      // A group of its own: Kafka's consumer groups span topics, and both sides' members are open at once.
      const rawGroup = freshName('g-raw');
      await env.raw.createGroup?.(env.rawType, rawGroup, { transport: env.transport, prefetch: RAW_PREFETCH });
      const counter = new (class extends Tally {
        override count(n = 1): void {
          super.count(n);
          recorder.inOrder(n);
        }
        override received(id: string, attempt?: number): void {
          super.received(id, attempt);
          recorder.inOrder(1);
        }
      })(0, new Map());
      const options = { prefetch: RAW_PREFETCH, awaitEach: false };
      if (wakeRaw) {
        let committed = 0;
        let reading = false;
        // One reader at a time; a commit while it reads is taken by its next pass.
        const read = async () => {
          if (reading) return;
          reading = true;
          try {
            while (counter.handled < committed)
              await env.raw.consume(env.rawType, rawGroup, committed, counter, options);
          } finally {
            reading = false;
          }
        };
        const send = async () => {
          await env.raw.publish(env.rawType, messagesOf(env.rawType, 1));
          committed++;
          await read();
        };
        return { busbar, raw: { recorder, send }, cleanup: env.cleanup };
      }
      // Every round's messages (warm-up included), taken by one consume that ends with the last round.
      const total = MESSAGES * (rounds + 1);
      const consuming = env.raw.consume(env.rawType, rawGroup, total, counter, options).catch(() => {});
      // A case that failed leaves the raw loop waiting: top it up so that it ends before the types are deleted.
      env.cleanup.add(async () => {
        for (let missing = total - counter.handled; missing > 0; missing -= 100) {
          await env.raw.publish(env.rawType, messagesOf(env.rawType, Math.min(100, missing)));
        }
        await Promise.race([consuming, sleep(30_000)]);
      });
      const rawSend = serialRaw
        ? coalescing((n) => env.raw.publish(env.rawType, messagesOf(env.rawType, n)))
        : (): Promise<void> => env.raw.publish(env.rawType, messagesOf(env.rawType, 1));
      return { busbar, raw: { recorder, send: rawSend }, cleanup: env.cleanup };
    } catch (error) {
      await env.cleanup.run().catch(() => {});
      throw error;
    }
  });
}

/**
 * A raw sender for a client whose publishes should not overlap: messages due while one publish is in flight go out
 * together as the next batch, as a careful program (or busbar's own producer) sends them. @platformatic/kafka's
 * idempotent producer fails overlapping sends (an out-of-order sequence); amqplib's waitForConfirms() waits for every
 * confirm outstanding on the channel, so overlapping calls each wait for all the others (quadratic, and it stalled
 * the raw side at 1,000 msg/s on a busy machine).
 */
function coalescing(publish: (count: number) => Promise<void>): () => Promise<void> {
  let waiting: { count: number; sent: Promise<void> } | undefined;
  let inFlight: Promise<unknown> = Promise.resolve();
  return () => {
    if (!waiting) {
      const batch = { count: 0, sent: Promise.resolve() };
      batch.sent = inFlight.then(() => {
        waiting = undefined;
        return publish(batch.count);
      });
      inFlight = batch.sent.catch(() => {});
      waiting = batch;
    }
    waiting.count++;
    return waiting.sent;
  };
}

/** The memory transport beside the bare MemoryBroker delivering to a member that acks at once. */
function memoryCase(): BenchCase {
  return latencyCase('memory', async () => {
    const { MessageBus } = await import('../src/index.ts');
    const cleanup = new Cleanup();
    const bus = await MessageBus.connect('memory:');
    cleanup.add(() => bus.close());
    const busbar = await busbarSide(bus, freshName('memory'), freshName('g'), cleanup);
    const broker = new MemoryBroker();
    cleanup.add(() => broker.close());
    const recorder = new Recorder();
    broker.join('raw', 'g', 'earliest', {
      prefetch: RAW_PREFETCH,
      ackTimeoutMs: ACK_TIMEOUT_MS,
      outstanding: 0,
      deliver: (d: { ack(): Promise<void> }) => {
        recorder.inOrder(1);
        void d.ack();
      },
    });
    const send = async () => broker.publish('raw', [buildMessage('raw', 'bench', bodyOf(0))]);
    return { busbar, raw: { recorder, send }, cleanup };
  });
}

/** What a raw side opened by a case of its own gets: the broker's URL, busbar's transport on it, the case's cleanup. */
interface RawContext {
  url: string;
  transport: Transport;
  cleanup: Cleanup;
}

/**
 * A transport whose raw client bench/<transport>.ts does not expose as a TransportBench (its raw loops there are batch
 * rounds): busbar's side on a fresh type, and the raw side `openRaw` builds here on the same broker.
 */
function ownRawCase(transport: string, url: () => Promise<string>, openRaw: (context: RawContext) => Promise<Side>) {
  return latencyCase(transport, async () => {
    const { MessageBus, resolveConfig } = await import('../src/index.ts');
    const { loadTransport } = await import('../src/transport/registry.ts');
    const cleanup = new Cleanup();
    try {
      const address = await url();
      const config = resolveConfig(address);
      const admin: Transport = await (await loadTransport(config.scheme))(config.transport);
      cleanup.add(() => admin.close());
      const bus = await MessageBus.connect(address);
      cleanup.add(() => bus.close());
      const type = freshName(transport);
      await admin.admin.ensureType(type);
      cleanup.add(() => admin.admin.deleteType(type));
      const busbar = await busbarSide(bus, type, freshName('g'), cleanup);
      const raw = await openRaw({ url: address, transport: admin, cleanup });
      return { busbar, raw, cleanup };
    } catch (error) {
      await cleanup.run().catch(() => {});
      throw error;
    }
  });
}

/** A fresh type for a raw side, with a group queue made before anything is published to it; both deleted after. */
async function rawTypeAndGroup({ transport, cleanup }: RawContext, prefix: string) {
  const { createGroup } = await import('./lib/transport-bench.ts');
  const type = freshName(prefix);
  await transport.admin.ensureType(type);
  cleanup.add(() => transport.admin.deleteType(type));
  const group = freshName('g-raw');
  await createGroup(transport, type, group);
  return { type, group };
}

/** Resolves once `settle` calls back, or fails after 30 s saying what did not happen. */
function within30s<T>(settle: (resolve: (value: T) => void) => void, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} within 30 s`)), 30_000);
    settle((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/**
 * AMQP 1.0 on Artemis, beside raw rhea (as bench/amqp10.ts uses it): a sender whose messages are settled by the
 * broker's `accepted` (a message waits while the link has no credit or the session no room, as busbar's publisher
 * does), and a receiver on the group's queue (its FQQN) with RAW_PREFETCH credits, accepting each message and giving
 * its credit back.
 */
async function rawRhea(context: RawContext): Promise<Side> {
  const { fqqn, toAmqp } = await import('../src/transports/amqp10/wire.ts');
  const rhea = (await import('rhea')).default;
  const { type, group } = await rawTypeAndGroup(context, 'amqp10-raw');
  const parsed = new globalThis.URL(context.url.replace(/^amqp10:/, 'http:'));
  const connection = rhea.create_container().connect({
    host: parsed.hostname,
    port: Number(parsed.port),
    username: decodeURIComponent(parsed.username),
    password: decodeURIComponent(parsed.password),
    reconnect: false,
  });
  context.cleanup.add(() => connection.close());
  const recorder = new Recorder();
  const receiver = connection.open_receiver({
    source: { address: fqqn(type, group) },
    credit_window: 0,
    autoaccept: false,
  });
  receiver.on('message', (ctx) => {
    recorder.inOrder(1);
    ctx.delivery!.accept();
    receiver.add_credit(1);
  });
  await within30s((resolve) => receiver.once('receiver_open', resolve), 'rhea: the receiver did not open');
  receiver.add_credit(RAW_PREFETCH);
  const sender = connection.open_sender({ target: { address: type } });
  await within30s((resolve) => sender.once('sender_open', resolve), 'rhea: the sender did not open');
  // As busbar's publisher does (src/transports/amqp10/publisher.ts): a message that finds no credit or a full session
  // window waits its turn, sent on 'sendable' or once a settlement frees the window (rhea's send() without room
  // overflows the session's delivery buffer and stalls the link for good).
  const settled = new Map<unknown, { resolve: () => void; reject: (error: Error) => void }>();
  const waiting: { resolve: () => void; reject: (error: Error) => void }[] = [];
  const flush = () => {
    while (waiting.length > 0 && sender.sendable()) {
      settled.set(sender.send(toAmqp(messagesOf(type, 1)[0]!)), waiting.shift()!);
    }
  };
  sender.on('sendable', flush);
  sender.on('accepted', (ctx) => {
    settled.get(ctx.delivery)?.resolve();
    settled.delete(ctx.delivery);
    flush();
  });
  sender.on('rejected', (ctx) => {
    settled.get(ctx.delivery)?.reject(new Error('rejected'));
    settled.delete(ctx.delivery);
    flush();
  });
  const send = () =>
    new Promise<void>((resolve, reject) => {
      waiting.push({ resolve, reject });
      flush();
    });
  return { recorder, send };
}

/**
 * STOMP on Artemis, beside raw @stomp/stompjs on plain TCP (as bench/stomp.ts uses it), same frames as busbar's
 * (docs/wire/stomp.md): each SEND persistent with busbar's headers and a receipt, resolved by its RECEIPT (pipelined,
 * not awaited one by one); a client-individual subscription on the group's queue (its FQQN) with the
 * consumer-window-size busbar gives RAW_PREFETCH messages, ACKing each message with a receipt as busbar does.
 */
async function rawStompjs(context: RawContext): Promise<Side> {
  const { Client } = await import('@stomp/stompjs');
  const { TCPWrapper } = await import('@stomp/tcp-wrapper');
  const { fqqnOf, sendHeaders } = await import('../src/transports/stomp/wire.ts');
  const { DEFAULT_WINDOW_BYTES_PER_MESSAGE } = await import('../src/transports/stomp/options.ts');
  const { type, group } = await rawTypeAndGroup(context, 'stomp-raw');
  const parsed = new globalThis.URL(context.url.replace(/^stomp:/, 'http:'));
  const receipts = new Map<string, () => void>();
  let next = 0;
  const client = new Client({
    webSocketFactory: () => new TCPWrapper(parsed.hostname, Number(parsed.port || 61613)),
    connectHeaders: { login: decodeURIComponent(parsed.username), passcode: decodeURIComponent(parsed.password) },
    reconnectDelay: 0,
    // ACK receipts are not waited for (busbar's handler does not wait for them either): no entry, nothing to do.
    onUnhandledReceipt: (frame) => {
      const id = frame.headers['receipt-id']!;
      receipts.get(id)?.();
      receipts.delete(id);
    },
  });
  await within30s<void>((resolve) => {
    client.onConnect = () => resolve();
    client.activate();
  }, 'stompjs: no CONNECTED');
  context.cleanup.add(() => client.deactivate());
  const recorder = new Recorder();
  const subscribed = within30s<void>((resolve) => receipts.set('subscribe', resolve), 'stompjs: no SUBSCRIBE receipt');
  client.subscribe(
    fqqnOf(type, group),
    (message) => {
      recorder.inOrder(1);
      client.ack(message.headers.ack!, message.headers.subscription!, { receipt: `ack-${++next}` });
    },
    {
      ack: 'client-individual',
      'subscription-type': 'MULTICAST',
      'consumer-window-size': String(RAW_PREFETCH * DEFAULT_WINDOW_BYTES_PER_MESSAGE),
      receipt: 'subscribe',
    },
  );
  await subscribed;
  const send = () =>
    new Promise<void>((resolve, reject) => {
      const message = messagesOf(type, 1)[0]!;
      const receipt = `send-${++next}`;
      const timer = setTimeout(() => {
        receipts.delete(receipt);
        reject(new Error(`no RECEIPT for a SEND within ${DRAIN_MS} ms`));
      }, DRAIN_MS);
      receipts.set(receipt, () => {
        clearTimeout(timer);
        resolve();
      });
      client.publish({
        destination: type,
        headers: { 'destination-type': 'MULTICAST', ...sendHeaders(message), receipt },
        binaryBody: message.body,
      });
    });
  return { recorder, send };
}

/**
 * ZeroMQ, beside raw `zeromq` PUB/SUB (as bench/zeromq.ts uses it) on a loopback port of its own: a Publisher with
 * ZMQ_XPUB_NODROP and busbar's high-water mark of 10,000, retrying a full queue (for 5 s at most, busbar's sendWaitMs),
 * one send at a time as zeromq.js requires (sends chained, as busbar's publisher does), and a Subscriber reading each
 * frame as a hand-written program does (JSON.parse of the fedmsg dict). Each message is busbar's wire for the same
 * 100-byte body (docs/wire/zeromq.md: the body base64 in `msg`, its CloudEvents attributes under `cloudevents`),
 * built with JSON.stringify. Probed like busbar's side until the subscription reached the publisher.
 */
async function rawZeromq({ cleanup }: RawContext): Promise<Side> {
  const zmq = await import('zeromq');
  const { userInfo } = await import('node:os');
  const { freePort } = await import('../test/helpers/zeromq.ts');
  const highWaterMark = 10_000;
  const type = freshName('zeromq-raw');
  const topic = `com.example.dev.${type}`;
  const username = userInfo().username;
  const body = Buffer.from(bodyOf(0)).toString('base64');
  const pub = new zmq.Publisher({ noDrop: true, sendHighWaterMark: highWaterMark, linger: 0 });
  const sub = new zmq.Subscriber({ receiveHighWaterMark: highWaterMark, linger: 0 });
  const port = await freePort();
  await pub.bind(`tcp://127.0.0.1:${port}`);
  sub.connect(`tcp://127.0.0.1:${port}`);
  sub.subscribe(topic);
  const recorder = new Recorder();
  let probed: () => void = () => {};
  const seen = new Promise<void>((resolve) => {
    probed = resolve;
  });
  const reading = (async () => {
    for await (const [, frame] of sub) {
      const dict = JSON.parse(frame!.toString('utf8')) as { msg_id: string };
      if (dict.msg_id === 'probe') probed();
      else recorder.inOrder(1);
    }
  })().catch(() => {});
  let tail: Promise<unknown> = Promise.resolve();
  cleanup.add(async () => {
    await tail;
    pub.close();
    sub.close();
    await Promise.race([reading, sleep(5_000)]);
  });
  const sendNow = async (frames: [string, string]) => {
    const deadline = Date.now() + 5_000;
    for (let pause = 1; ; pause = Math.min(pause * 2, 50)) {
      try {
        return await pub.send(frames);
      } catch (error) {
        if ((error as { code?: string }).code !== 'EAGAIN' || Date.now() >= deadline) throw error;
        await sleep(pause);
      }
    }
  };
  const chained = (frames: [string, string]): Promise<void> => {
    const run = tail.then(() => sendNow(frames));
    tail = run.catch(() => {});
    return run;
  };
  await probeUntil(seen, () => chained([topic, JSON.stringify({ topic, msg: 'probe', msg_id: 'probe' })]), type);
  let i = 0;
  const send = () => {
    const id = randomUUID();
    const now = Date.now();
    const time = new Date(now);
    const dict = {
      topic,
      msg: body,
      timestamp: Math.floor(now / 1000),
      msg_id: `${time.getUTCFullYear()}-${id}`,
      i: ++i,
      username,
      cloudevents: {
        specversion: '1.0',
        id,
        source: 'bench',
        type,
        time: time.toISOString(),
        datacontenttype: 'application/octet-stream',
        busbarbody: 'base64',
      },
    };
    return chained([topic, JSON.stringify(dict)]);
  };
  return { recorder, send };
}

export default async function cases(): Promise<BenchCase[]> {
  const { freePort, loopbackUrl } = await import('../test/helpers/zeromq.ts');
  return [
    memoryCase(),
    brokerCase(embedded, { wakeRaw: true }),
    brokerCase(redis),
    brokerCase(nats),
    brokerCase(rabbitmq, { serialRaw: true }),
    brokerCase(kafka, { serialRaw: true }),
    brokerCase(mqtt),
    ownRawCase('zeromq', async () => loopbackUrl(await freePort(), ''), rawZeromq),
    ownRawCase(
      'amqp10',
      async () => process.env.BUSBAR_TEST_AMQP10_URL ?? 'amqp10://busbar:busbar@127.0.0.1:5682',
      rawRhea,
    ),
    ownRawCase(
      'stomp',
      async () => process.env.BUSBAR_TEST_STOMP_URL ?? 'stomp://busbar:busbar@127.0.0.1:61613',
      rawStompjs,
    ),
  ];
}
