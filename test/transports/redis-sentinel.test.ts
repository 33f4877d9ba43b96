/**
 * Several endpoints = Sentinels (`?sentinel=<master name>`): a private master, a replica and one Sentinel; the
 * master is killed, the Sentinel promotes the replica, and publisher and consumer follow without being told.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isBusError } from '../../src/errors.ts';
import type { Transport } from '../../src/transport/contract.ts';
import createRedisTransport from '../../src/transports/redis/index.ts';
import { tcpReachable } from '../helpers/brokers.ts';
import { PersistentRedis, REDIS_SERVER } from '../helpers/redis-aof.ts';
import { consumeOptions, freshGroup, message, privateServerSkipReason, take } from './redis-helpers.ts';

let skip: string | undefined;
let master: PersistentRedis | undefined;
let replica: PersistentRedis | undefined;
let sentinel: ChildProcess | undefined;
let sentinelPort = 0;
let sentinelDir = '';

async function startSentinel(masterPort: number): Promise<void> {
  sentinelDir = mkdtempSync(join(tmpdir(), 'busbar-sentinel-'));
  sentinelPort = await PersistentRedis.freePort();
  const conf = join(sentinelDir, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${sentinelPort}`,
      'bind 127.0.0.1',
      `dir ${sentinelDir}`,
      `sentinel monitor mymaster 127.0.0.1 ${masterPort} 1`,
      'sentinel down-after-milliseconds mymaster 1000',
      'sentinel failover-timeout mymaster 5000',
      '',
    ].join('\n'),
  );
  const child = spawn(REDIS_SERVER, [conf, '--sentinel'], { stdio: 'ignore' });
  sentinel = child;
  process.once('exit', () => child.kill('SIGKILL'));
  for (let i = 0; i < 100; i++) {
    try {
      await tcpReachable('127.0.0.1', sentinelPort, 200);
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error('the Sentinel did not start');
}

async function publishRetrying(transport: Transport, type: string, from: number, count: number): Promise<number[]> {
  const confirmed: number[] = [];
  for (let i = from; i < from + count; i++) {
    for (;;) {
      try {
        await transport.publish(type, [message(type, String(i))]);
        confirmed.push(i);
        break;
      } catch (error) {
        assert.ok(isBusError(error) && error.retryable, `not a retryable BusError: ${error}`);
        await sleep(200);
      }
    }
    await sleep(20);
  }
  return confirmed;
}

describe('redis transport with Sentinel (private master, replica, sentinel)', { concurrency: 1 }, () => {
  before(async () => {
    skip = await privateServerSkipReason();
    if (skip) return;
    master = await PersistentRedis.start();
    replica = await PersistentRedis.start(['--replicaof', '127.0.0.1', String(master.port)]);
    await startSentinel(master.port);
  });
  after(async () => {
    sentinel?.kill('SIGKILL');
    await Promise.all([master?.stop(), replica?.stop()]);
    if (sentinelDir) rmSync(sentinelDir, { recursive: true, force: true });
  });

  it('follows the master the Sentinel names through a failover; replicas=1 publishes reach the replica first', {
    timeout: 90_000,
  }, async (t) => {
    if (skip) return t.skip(skip);
    const sentinelConfig = (options: Record<string, string | number>) => ({
      url: `redis://127.0.0.1:${sentinelPort}?sentinel=mymaster`,
      endpoints: [`127.0.0.1:${sentinelPort}`],
      options: { sentinel: 'mymaster', ...options },
    });
    const transport = await createRedisTransport(sentinelConfig({}));
    t.after(() => transport.close());
    const durable = await createRedisTransport(sentinelConfig({ replicas: 1, commandTimeoutMs: 2000 }));
    t.after(() => durable.close());
    const type = `sentinel-${Date.now()}`;
    const sub = transport.consume(consumeOptions(type, freshGroup()));
    t.after(() => sub.close());
    await sub.ready;
    // replicas=1: each confirmed publish is on the replica as well as the master.
    const first = await publishRetrying(durable, type, 0, 10);
    const got = new Set<string>();
    const collect = async (want: number) => {
      const deadline = Date.now() + 30_000;
      while (got.size < want && Date.now() < deadline) {
        for (const d of await take(sub, 10, 1000)) {
          got.add(Buffer.from(d.message.body).toString());
          await d.ack().catch(() => undefined);
        }
      }
    };
    // A publish whose WAIT timed out (the replica still syncing) was retried: duplicates are allowed, losses not.
    await collect(10);
    assert.equal(got.size, 10);
    // Kill the master: the Sentinel promotes the replica, which has all ten.
    await master!.stop();
    const later = await publishRetrying(transport, type, 10, 10);
    // The new master has no replica left: a replicas=1 publish now fails, retryably, and says why.
    await assert.rejects(durable.publish(type, [message(type, 'unreplicated')]), (error) => {
      assert.ok(isBusError(error, 'BUSBAR_ERR_PUBLISH') && error.retryable);
      assert.match(error.message, /only 0 of 1 replicas/);
      return true;
    });
    await collect(first.length + later.length + 1);
    // The unreplicated one is on the new master all the same (a retry would duplicate it: at-least-once).
    assert.deepEqual([...got].sort(), [...first, ...later].map(String).concat('unreplicated').sort());
    await assert.rejects(createRedisTransport({ url: 'redis://x', endpoints: [], options: { replicas: -1 } }), {
      code: 'BUSBAR_ERR_INVALID_CONFIG',
    });
  });
});
