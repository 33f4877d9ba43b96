/**
 * The conformance suite on ZeroMQ: no broker to start; the buses of this file bind one loopback port and subscribe
 * to it (the set-up of a fedmsg service that reads its own messages). ZeroMQ keeps nothing, so the suite skips what
 * the capabilities rule out (replay, per-key order, purge, retention, partitions, surviving a restart).
 */
import { freePort, loopbackUrl } from '../helpers/zeromq.ts';
import { runConformance } from './suite.ts';

let port = 0;
runConformance({
  name: 'zeromq',
  before: async () => {
    port = await freePort();
  },
  connect: () => loopbackUrl(port),
  // There is no broker to restart: with a hook, scenario 13 is skipped for its real reason, persistence: false.
  restart: async () => {},
});
