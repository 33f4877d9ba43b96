/**
 * The cases every broker runs, built from what a transport's bench file declares: how to reach the broker, how to
 * connect the raw client, and what the raw client's publish and consume loops do. The public API (bus.send,
 * producers, a consumer, a handler) is the headline, each beside the raw client doing the same work at the same
 * durability; the transport-level cases (transport.publish, a bare subscription) follow, as the like-for-like check
 * of the transport alone. Every case uses fresh types and groups and deletes them afterwards.
 */
import { DEFAULT_ASYNC_BATCH, DEFAULT_PREFETCH } from '../../src/bus/options.ts';
import { resolveConfig } from '../../src/config/index.ts';
import { MessageBus, message } from '../../src/index.ts';
import type { OutgoingOptions } from '../../src/message/envelope.ts';
import type { Transport, TransportMessage } from '../../src/transport/contract.ts';
import { loadTransport } from '../../src/transport/registry.ts';
import type { BenchCase, RunContext } from '../harness.ts';
import { BODY, Cleanup, defineCase, freshName, messagesOf, type Tally } from './case.ts';
import { ACK_TIMEOUT_MS, consumerMember, handlerMember, type Member, subscriptionMember } from './members.ts';

/** How the raw side acks in a consume round. */
export interface RawConsumeOptions {
  /** Unacked messages the broker may hand out ahead, as busbar's side was given. */
  prefetch: number;
  /** Wait for each ack's confirmation before taking the next message, where the protocol confirms acks at all. */
  awaitEach: boolean;
}

/** The raw client of one broker, doing what a careful hand-written program would, on busbar's wire format. */
export interface RawClient {
  /** Publishes `messages` and resolves once the broker has every one, at busbar's durability. */
  publish(type: string, messages: TransportMessage[]): Promise<void>;
  /**
   * Makes `group` exist on `type` before anything is published there, where the broker needs that; `transport` is
   * busbar's, for brokers whose topology a plain client finds made by busbar (docs/wire/); `prefetch` is what the
   * case's consume rounds will use, for brokers that fix it when a member joins.
   */
  createGroup?(type: string, group: string, context: { transport: Transport; prefetch: number }): Promise<void>;
  /** Takes the next `count` messages of `type` for `group` and acks every one, counting each in `tally`. */
  consume(type: string, group: string, count: number, tally: Tally, options: RawConsumeOptions): Promise<void>;
  close(): Promise<void>;
}

/** Messages per round. */
export interface Sizes {
  /** Batched publishing (100 per call) and the async producer. */
  batched: number;
  /** One message per awaited call. */
  singles: number;
  /** A consume loop whose acks are not awaited one by one (a bare subscription, a handler). */
  consumed: number;
  /** A consumer awaiting every ack, as in the README. */
  awaited: number;
}

const DEFAULT_SIZES: Sizes = { batched: 5_000, singles: 1_000, consumed: 5_000, awaited: 1_000 };
export const BATCH = 100;
/** The handler case's concurrency; bus.handle reads ahead twice that. */
const CONCURRENCY = 8;

export interface TransportBench<R extends RawClient> {
  transport: string;
  /** busbar's URL for the broker; `cleanup` takes whatever reaching it started (e.g. a private broker). */
  url(cleanup: Cleanup): Promise<string>;
  connectRaw(url: string): Promise<R>;
  /** Prefetch of the transport-level consume case, on both sides. */
  prefetch: number;
  /** Partitions each type is created with. */
  partitions?: number;
  /** Messages carry keys spread over this many values (both sides), e.g. to use every Kafka partition. */
  keys?: number;
  sizes?: Partial<Sizes>;
  /**
   * busbar's consume cases keep one member for all rounds, joined before the reservoir is stored, instead of one per
   * round. MQTT needs it: a member that leaves keeps receiving its share in its session until another adopts it.
   */
  persistentMembers?: boolean;
  /** Adds `bus.handle concurrency 8, prefetch N` beside the default read-ahead (2 x concurrency). */
  handlePrefetch?: number;
  /** Adds `transport.publish 100B x100, 8 concurrent`: group commit on embedded, one channel's confirms on AMQP. */
  concurrentPublish?: boolean;
  /**
   * More raw loops to run the transport-level consume case beside, by what their names add to the case's name, e.g.
   * `raw one XACK per read`: where the obvious raw loop is not the best one, or skips work busbar must do.
   */
  rawConsumeVariants?: Record<
    string,
    (raw: R, type: string, group: string, count: number, tally: Tally) => Promise<void>
  >;
}

/** Publishers of the concurrent case, each sending a whole number of batches. */
const CONCURRENT = 8;

/** One case's world: a transport, a bus and a raw client on the same broker, fresh types and a fresh group. */
export interface Env<R extends RawClient> {
  readonly transport: Transport;
  readonly bus: MessageBus;
  readonly raw: R;
  readonly type: string;
  readonly rawType: string;
  readonly group: string;
  readonly rounds: number;
  readonly cleanup: Cleanup;
}

interface EnvCaseSpec<R extends RawClient> {
  name: string;
  messages: number;
  /** Runs once the world is open, before the warm-up round. */
  prepare?(env: Env<R>): Promise<void>;
  subject(env: Env<R>, tally: Tally): Promise<void>;
  baseline?(env: Env<R>, tally: Tally): Promise<void>;
}

/** A case with its own world, opened before its rounds and cleaned up after them. */
function envCase<R extends RawClient>(bench: TransportBench<R>, spec: EnvCaseSpec<R>): BenchCase {
  let env: Env<R> | undefined;
  const world = (): Env<R> => {
    if (!env) throw new Error(`${bench.transport} '${spec.name}': used before its setup`);
    return env;
  };
  const baseline = spec.baseline;
  return defineCase({
    name: spec.name,
    transport: bench.transport,
    messages: spec.messages,
    async setup(context: RunContext) {
      env = await openEnv(bench, context);
      await spec.prepare?.(env);
    },
    async teardown() {
      await env?.cleanup.run();
      env = undefined;
    },
    subject: (tally) => spec.subject(world(), tally),
    ...(baseline ? { baseline: (tally: Tally) => baseline(world(), tally) } : {}),
  });
}

export async function openEnv<R extends RawClient>(bench: TransportBench<R>, context: RunContext): Promise<Env<R>> {
  const cleanup = new Cleanup();
  try {
    const url = await bench.url(cleanup);
    const config = resolveConfig(url);
    const transport = await (await loadTransport(config.scheme))(config.transport);
    cleanup.add(() => transport.close());
    const bus = await MessageBus.connect(url);
    cleanup.add(() => bus.close());
    const raw = await bench.connectRaw(url);
    cleanup.add(() => raw.close());
    const env: Env<R> = {
      transport,
      bus,
      raw,
      type: freshName(bench.transport),
      rawType: freshName(`${bench.transport}-raw`),
      group: freshName('g'),
      rounds: context.rounds,
      cleanup,
    };
    const partitions = bench.partitions ? { partitions: bench.partitions } : {};
    for (const type of [env.type, env.rawType]) {
      await transport.admin.ensureType(type, partitions);
      cleanup.add(() => transport.admin.deleteType(type));
    }
    return env;
  } catch (error) {
    await cleanup.run().catch(() => {});
    throw error;
  }
}

/** Declares a broker's bench (typed once, so other cases than these, e.g. bench/latency.ts, can reuse it). */
export function transportBench<R extends RawClient>(bench: TransportBench<R>): TransportBench<R> {
  return bench;
}

/** A transport's bench cases: the public API's first, then the transport's own. */
export function transportCases<R extends RawClient>(bench: TransportBench<R>): BenchCase[] {
  const sizes = { ...DEFAULT_SIZES, ...bench.sizes };
  const keys = bench.keys ?? 0;
  const keyed = (i: number): OutgoingOptions => (keys > 0 ? { key: `k${i % keys}` } : {});
  const bodies = Array.from({ length: BATCH }, (_, i) => (keys > 0 ? message(BODY, keyed(i)) : BODY));
  const rawBatches = async (env: Env<R>, tally: Tally, total: number, size: number) => {
    for (let sent = 0; sent < total; sent += size) {
      await env.raw.publish(env.rawType, messagesOf(env.rawType, size, keys));
      tally.count(size);
    }
  };
  const consumeWith = (count: number, options: RawConsumeOptions) => (env: Env<R>, tally: Tally) =>
    env.raw.consume(env.rawType, env.group, count, tally, options);

  return [
    envCase(bench, {
      name: 'bus.send 100B',
      messages: sizes.singles,
      async subject(env, tally) {
        for (let i = 0; i < sizes.singles; i++) {
          await tally.timed(() => env.bus.send(env.type, BODY, keyed(i)));
          tally.count();
        }
      },
      baseline: (env, tally) => rawBatches(env, tally, sizes.singles, 1),
    }),
    envCase(bench, {
      name: `producer.send 100B x${BATCH}, sync`,
      messages: sizes.batched,
      async subject(env, tally) {
        const producer = env.bus.producer({ messageType: env.type });
        for (let sent = 0; sent < sizes.batched; sent += BATCH) {
          await tally.timed(() => producer.send(bodies));
          tally.count(BATCH);
        }
        await producer.close();
      },
      baseline: (env, tally) => rawBatches(env, tally, sizes.batched, BATCH),
    }),
    envCase(bench, {
      name: `producer.send 100B x1, async, then flush (raw: batches of ${DEFAULT_ASYNC_BATCH})`,
      messages: sizes.batched,
      async subject(env, tally) {
        const producer = env.bus.producer({ messageType: env.type, method: 'async' });
        for (let i = 0; i < sizes.batched; i++) await producer.send([bodies[i % BATCH]]);
        await producer.close();
        tally.count(sizes.batched);
      },
      baseline: (env, tally) => rawBatches(env, tally, sizes.batched, DEFAULT_ASYNC_BATCH),
    }),
    memberCase(bench, {
      name: `consumer for await, await m.ack(), prefetch ${DEFAULT_PREFETCH}`,
      count: sizes.awaited,
      prefetch: DEFAULT_PREFETCH,
      member: (env) => consumerMember(env.bus, env),
      baseline: consumeWith(sizes.awaited, { prefetch: DEFAULT_PREFETCH, awaitEach: true }),
    }),
    memberCase(bench, {
      name: `bus.handle concurrency ${CONCURRENCY} (prefetch ${CONCURRENCY * 2})`,
      count: sizes.consumed,
      prefetch: CONCURRENCY * 2,
      member: (env) => handlerMember(env.bus, env, CONCURRENCY),
      baseline: consumeWith(sizes.consumed, { prefetch: CONCURRENCY * 2, awaitEach: false }),
    }),
    ...(bench.handlePrefetch
      ? [
          memberCase(bench, {
            name: `bus.handle concurrency ${CONCURRENCY}, prefetch ${bench.handlePrefetch}`,
            count: sizes.consumed,
            prefetch: bench.handlePrefetch,
            member: (env) => handlerMember(env.bus, env, CONCURRENCY, bench.handlePrefetch),
            baseline: consumeWith(sizes.consumed, { prefetch: bench.handlePrefetch, awaitEach: false }),
          }),
        ]
      : []),
    envCase(bench, {
      name: `transport.publish 100B x${BATCH}`,
      messages: sizes.batched,
      async subject(env, tally) {
        for (let sent = 0; sent < sizes.batched; sent += BATCH) {
          const batch = messagesOf(env.type, BATCH, keys);
          await tally.timed(() => env.transport.publish(env.type, batch));
          tally.count(BATCH);
        }
      },
      baseline: (env, tally) => rawBatches(env, tally, sizes.batched, BATCH),
    }),
    envCase(bench, {
      name: 'transport.publish 100B x1',
      messages: sizes.singles,
      async subject(env, tally) {
        for (let sent = 0; sent < sizes.singles; sent++) {
          const batch = messagesOf(env.type, 1, keys);
          await tally.timed(() => env.transport.publish(env.type, batch));
          tally.count();
        }
      },
      baseline: (env, tally) => rawBatches(env, tally, sizes.singles, 1),
    }),
    consumeCase(bench, `transport consume+ack 100B, prefetch ${bench.prefetch}`, sizes.consumed),
    ...Object.entries(bench.rawConsumeVariants ?? {}).map(([variant, consume]) =>
      consumeCase(
        bench,
        `transport consume+ack 100B, prefetch ${bench.prefetch}, ${variant}`,
        sizes.consumed,
        (env, tally) => consume(env.raw, env.rawType, env.group, sizes.consumed, tally),
      ),
    ),
    ...(bench.concurrentPublish ? [concurrentPublishCase(bench, sizes.batched)] : []),
  ];
}

/** CONCURRENT publishers at once on one transport, vs CONCURRENT raw publishing loops on one client. */
function concurrentPublishCase<R extends RawClient>(bench: TransportBench<R>, atLeast: number): BenchCase {
  const perPublisher = Math.ceil(atLeast / (CONCURRENT * BATCH)) * BATCH;
  const publishers = (publish: (i: number) => Promise<void>) =>
    Promise.all(
      Array.from({ length: CONCURRENT }, async () => {
        for (let sent = 0; sent < perPublisher; sent += BATCH) await publish(sent);
      }),
    );
  return envCase(bench, {
    name: `transport.publish 100B x${BATCH}, ${CONCURRENT} concurrent`,
    messages: perPublisher * CONCURRENT,
    async subject(env, tally) {
      await publishers(async () => {
        await env.transport.publish(env.type, messagesOf(env.type, BATCH));
        tally.count(BATCH);
      });
    },
    async baseline(env, tally) {
      await publishers(async () => {
        await env.raw.publish(env.rawType, messagesOf(env.rawType, BATCH));
        tally.count(BATCH);
      });
    },
  });
}

/**
 * A bare subscription acking every message (acks not awaited one by one) beside the raw loop with the same prefetch;
 * `raw` replaces the raw loop, for a transport's variants of the case.
 */
function consumeCase<R extends RawClient>(
  bench: TransportBench<R>,
  name: string,
  count: number,
  raw?: (env: Env<R>, tally: Tally) => Promise<void>,
): BenchCase {
  return memberCase(bench, {
    name,
    count,
    prefetch: bench.prefetch,
    member: (env) => subscriptionMember(env.transport, env, bench.prefetch),
    baseline:
      raw ??
      ((env, tally) =>
        env.raw.consume(env.rawType, env.group, count, tally, { prefetch: bench.prefetch, awaitEach: false })),
  });
}

interface MemberCaseSpec<R extends RawClient> {
  name: string;
  count: number;
  /** What busbar's member reads ahead, for a raw client that fixes it when it joins. */
  prefetch: number;
  member(env: Env<R>): Member;
  baseline(env: Env<R>, tally: Tally): Promise<void>;
}

/** A consume case: both groups exist and hold every round's messages before the first round. */
function memberCase<R extends RawClient>(bench: TransportBench<R>, spec: MemberCaseSpec<R>): BenchCase {
  let persistent: Member | undefined;
  return envCase(bench, {
    name: spec.name,
    messages: spec.count,
    async prepare(env) {
      if (bench.persistentMembers) {
        const member = spec.member(env);
        env.cleanup.add(() => member.close());
        await member.ready;
        persistent = member;
      } else {
        await createGroup(env.transport, env.type, env.group);
      }
      await env.raw.createGroup?.(env.rawType, env.group, { transport: env.transport, prefetch: spec.prefetch });
      await fillReservoir(env, spec.count, bench.keys ?? 0);
    },
    async subject(env, tally) {
      if (persistent) return persistent.round(spec.count, tally);
      const member = spec.member(env);
      await member.round(spec.count, tally);
      await member.close();
    },
    baseline: spec.baseline,
  });
}

/** Stores `perRound` messages for every round (warm-up, the timed rounds, one spare) on both sides. */
async function fillReservoir<R extends RawClient>(env: Env<R>, perRound: number, keys: number): Promise<void> {
  const total = perRound * (env.rounds + 2);
  for (let stored = 0; stored < total; stored += BATCH) {
    await env.transport.publish(env.type, messagesOf(env.type, BATCH, keys));
    await env.raw.publish(env.rawType, messagesOf(env.rawType, BATCH, keys));
  }
}

/** Attaches `group` to `type` from the earliest message, and detaches: the group then keeps all that is published. */
export async function createGroup(transport: Transport, type: string, group: string): Promise<void> {
  const subscription = transport.consume({
    types: [type],
    group,
    consumerId: 'bench',
    offset: 'earliest',
    prefetch: 1,
    ackTimeoutMs: ACK_TIMEOUT_MS,
  });
  await subscription.ready;
  await subscription.close();
}
