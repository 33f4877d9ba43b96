/**
 * The conformance suite on NATS JetStream, twice: against the machine's nats-server (BUSBAR_TEST_NATS_URL, default
 * nats://127.0.0.1:4222), which is never restarted, so no restart scenario there; then against a private
 * nats-server (its own port and JetStream store in a temporary directory) that scenario 13 stops and starts again
 * mid-stream: confirmed messages survive in its store.
 */

import { BROKERS, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { PrivateNats } from '../helpers/private-brokers.ts';
import { runConformance } from './suite.ts';

const { host, port } = hostPort(BROKERS.nats, 4222);

runConformance({
  name: 'nats',
  connect: () => BROKERS.nats,
  check: () => tcpReachable(host, port),
  ackTimeoutMs: 1000,
});

let server: PrivateNats | undefined;

runConformance({
  name: 'nats',
  variant: 'private nats-server, restarted',
  connect: () => server!.url,
  // The same binary the machine's server runs: reachable there means installed here.
  check: () => tcpReachable(host, port),
  ackTimeoutMs: 1000,
  before: async () => {
    server = await PrivateNats.start();
  },
  after: async () => {
    await server?.stop();
  },
  restart: () => server!.restart(),
});
