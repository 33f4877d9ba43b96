/**
 * The conformance suite on Redis, twice: against the machine's Redis (BUSBAR_TEST_REDIS_URL, default :6379, which
 * keeps nothing on disk, so no restart scenario there), then against a private redis-server with
 * `appendonly yes, appendfsync always` that scenario 13 kills and restarts mid-stream.
 */
import { BROKERS, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { checkRedisServerBinary, PersistentRedis } from '../helpers/redis-aof.ts';
import { runConformance } from './suite.ts';

const { host, port } = hostPort(BROKERS.redis, 6379);

runConformance({
  name: 'redis',
  connect: () => BROKERS.redis,
  check: () => tcpReachable(host, port),
});

let server: PersistentRedis | undefined;

runConformance({
  name: 'redis',
  variant: 'private redis-server, appendonly, restarted',
  connect: () => server!.url,
  check: async () => checkRedisServerBinary(),
  before: async () => {
    server = await PersistentRedis.start();
  },
  after: async () => {
    await server?.stop();
  },
  restart: () => server!.restart(),
});
