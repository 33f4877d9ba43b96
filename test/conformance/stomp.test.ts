/**
 * The conformance suite on Apache ActiveMQ Artemis over STOMP 1.2, on a private instance (scripts/brokers/artemis
 * --instance 4, STOMP :61643) because scenario 13 restarts its broker mid-stream: the shared instances 1 and 2 serve
 * other suites at the same time. The suite starts the instance if it does not run, and stops it again if it started it.
 * BUSBAR_TEST_STOMP_URL points the suite at another broker instead (scenario 13 is then skipped).
 */
import { BROKERS, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { artemis, artemisRunning, stompPort } from '../transports/fixtures/stomp-artemis.ts';
import { runConformance } from './suite.ts';

const INSTANCE = 4;
const external = process.env.BUSBAR_TEST_STOMP_URL !== undefined;
const url = external ? BROKERS.stomp : `stomp://busbar:busbar@127.0.0.1:${stompPort(INSTANCE)}`;
const { host, port } = hostPort(url, 61613);
let started = false;

runConformance({
  name: 'stomp',
  connect: () => url,
  check: async () => {
    if (!external && !(await artemisRunning(INSTANCE))) {
      await artemis('start', INSTANCE);
      started = true;
    }
    await tcpReachable(host, port);
  },
  ackTimeoutMs: 1000,
  restart: external ? undefined : () => artemis('restart', INSTANCE),
  after: async () => {
    if (started) await artemis('stop', INSTANCE);
  },
});
