/**
 * The conformance suite against the machine's NATS server with JetStream (BUSBAR_TEST_NATS_URL, default
 * nats://127.0.0.1:4222). Scenario 13 restarts the local nats-server (stop, then the house start command) and waits
 * until it answers; JetStream keeps its streams under /var/lib/nats-server, so confirmed messages survive.
 */
import { BROKERS, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { restartNatsServer } from '../transports/nats-helpers.ts';
import { runConformance } from './suite.ts';

const { host, port } = hostPort(BROKERS.nats, 4222);
const local = host === '127.0.0.1' || host === 'localhost';

runConformance({
  name: 'nats',
  connect: () => BROKERS.nats,
  check: () => tcpReachable(host, port),
  ackTimeoutMs: 1000,
  restart: local && process.env.BUSBAR_TEST_NATS_NO_RESTART === undefined ? () => restartNatsServer(port) : undefined,
});
