/**
 * Outages on a private, persistent redis-server (appendonly yes, appendfsync always): dropped connections and a
 * SIGKILLed server restarted on the same files. Nothing confirmed is lost, nothing vanishes silently, and neither
 * publisher nor consumer has to do anything to carry on.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isBusError } from '../../src/errors.ts';
import type { Delivery, Transport } from '../../src/transport/contract.ts';
import { SETTLE_MS } from '../helpers/eventually.ts';
import { PersistentRedis } from '../helpers/redis-aof.ts';
import {
  consumeOptions,
  freshGroup,
  message,
  open,
  privateServerSkipReason,
  rawClient,
  take,
  tempType,
} from './redis-helpers.ts';

let skip: string | undefined;
let server: PersistentRedis | undefined;

/** Publishes `count` messages one by one; each either resolves or fails retryably (then it is tried again). */
async function publishThrough(transport: Transport, type: string, from: number, count: number): Promise<number[]> {
  const confirmed: number[] = [];
  for (let i = from; i < from + count; i++) {
    for (;;) {
      try {
        await transport.publish(type, [message(type, String(i))]);
        confirmed.push(i);
        break;
      } catch (error) {
        assert.ok(isBusError(error) && error.retryable, `a publish failed without a retryable BusError: ${error}`);
        await sleep(100);
      }
    }
    await sleep(10);
  }
  return confirmed;
}

async function receiveAll(sub: ReturnType<Transport['consume']>, want: Set<string>, patienceMs: number) {
  const deadline = Date.now() + patienceMs;
  while ([...want].length && Date.now() < deadline) {
    const got: Delivery[] = await take(sub, 50, 500);
    for (const d of got) {
      want.delete(Buffer.from(d.message.body).toString());
      await d.ack().catch(() => undefined);
    }
  }
  return want;
}

describe('redis transport through outages (private appendonly redis-server)', { concurrency: 1 }, () => {
  before(async () => {
    skip = await privateServerSkipReason();
    if (!skip) server = await PersistentRedis.start();
  });
  after(() => server?.stop());

  it('dropped connections: publisher and consumer reconnect by themselves', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t, server!.url);
    const killer = await rawClient(t, server!.url);
    const type = tempType(transport);
    // A read reply lost with a killed connection leaves its messages leased to this consumer until the ack timeout
    // hands them back: a short one, and a wait that covers it with a wide margin, so only a lost message fails.
    const ackTimeoutMs = 2_000;
    const sub = transport.consume(consumeOptions(type, freshGroup(), { ackTimeoutMs }));
    t.after(() => sub.close());
    await sub.ready;
    const publishing = publishThrough(transport, type, 0, 60);
    for (let i = 0; i < 3; i++) {
      await sleep(150);
      // Every client but the killer: the transport's shared connection and the consumer's blocking one.
      await killer.sendCommand(['CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes']);
    }
    const confirmed = await publishing;
    const missing = await receiveAll(sub, new Set(confirmed.map(String)), ackTimeoutMs + SETTLE_MS);
    assert.deepEqual([...missing], []);
  });

  it('server killed (SIGKILL) and restarted: confirmed messages and unacked leases survive', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await open(t, server!.url);
    const type = tempType(transport);
    const group = freshGroup();
    await transport.admin.ensureType(type);
    const sub = transport.consume(consumeOptions(type, group, { ackTimeoutMs: 1500 }));
    t.after(() => sub.close());
    await sub.ready;
    const before = await publishThrough(transport, type, 0, 20);
    const leased = await take(sub, 5, 30_000);
    assert.equal(leased.length, 5);
    const publishing = publishThrough(transport, type, 20, 40);
    await sleep(100);
    await server!.restart(1000);
    const confirmed = [...before, ...(await publishing)];
    // The 5 leases taken before the crash were never acked: they come back after the ack timeout.
    const missing = await receiveAll(sub, new Set(confirmed.map(String)), 20_000);
    assert.deepEqual([...missing], []);
    const [stats] = await transport.admin.stats(type);
    assert.equal(stats!.groups.find((g) => g.group === group)?.unread, 0);
    assert.ok(
      (await transport.admin.listTypes()).some((x) => x.type === type),
      'the type registry was lost',
    );
  });
});
