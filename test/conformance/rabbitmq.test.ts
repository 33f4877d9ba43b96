/**
 * The conformance suite on RabbitMQ, twice: against the machine's RabbitMQ (BUSBAR_TEST_AMQP_URL, default
 * amqp://guest:guest@127.0.0.1:5672), which is never restarted, so no restart scenario there; then against a private
 * RabbitMQ node (its own node name, port and data directory) that scenario 13 stops and starts again mid-stream.
 * Restarting the machine's broker would pull it from under every other test process using it at the time.
 * The suite deletes the types it created.
 */

import { BROKERS, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { PrivateRabbit } from '../helpers/private-brokers.ts';
import { runConformance } from './suite.ts';

const { host, port } = hostPort(BROKERS.rabbitmq, 5672);

runConformance({
  name: 'rabbitmq',
  connect: () => BROKERS.rabbitmq,
  check: () => tcpReachable(host, port),
  ackTimeoutMs: 1000,
});

let node: PrivateRabbit | undefined;

runConformance({
  name: 'rabbitmq',
  variant: 'private node, restarted',
  connect: () => node!.url,
  // The same installation the machine's broker runs: reachable there means installed here.
  check: () => tcpReachable(host, port),
  ackTimeoutMs: 1000,
  before: async () => {
    node = await PrivateRabbit.start();
  },
  after: async () => {
    await node?.stop();
  },
  restart: () => node!.restart(),
});
