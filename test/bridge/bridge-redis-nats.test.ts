/**
 * `busbar bridge` from Redis to NATS JetStream on private instances (a redis-server with appendfsync always, a
 * nats-server with its own store), each restarted once, and the bridge killed with SIGKILL once. See scenario.ts.
 */
import { after, before, describe, it } from 'node:test';
import { brokerSkipReason } from '../helpers/brokers.ts';
import { PersistentRedis, PrivateNats } from '../helpers/private-brokers.ts';
import { checkRedisServerBinary } from '../helpers/redis-aof.ts';
import { bridgeScenario } from './scenario.ts';

const skip =
  (await brokerSkipReason('redis', async () => checkRedisServerBinary())) ??
  (await brokerSkipReason('nats', async () => {
    const nats = await PrivateNats.start();
    await nats.stop();
  }));

describe('busbar bridge: redis -> nats', { skip, timeout: 600_000 }, () => {
  let redis: PersistentRedis | undefined;
  let nats: PrivateNats | undefined;
  before(async () => {
    [redis, nats] = await Promise.all([PersistentRedis.start(), PrivateNats.start()]);
  });
  after(async () => {
    await Promise.allSettled([redis?.stop(), nats?.stop()]);
  });

  it('kill -9 of the bridge, a source and a target restart: every confirmed message arrives', {
    timeout: 540_000,
  }, async (t) => {
    await bridgeScenario(t, {
      from: { name: 'redis', url: redis!.url, restart: () => redis!.restart(1000) },
      to: { name: 'nats', url: nats!.url, restart: () => nats!.restart() },
    });
  });
});
