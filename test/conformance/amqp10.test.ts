/**
 * The conformance suite against Apache ActiveMQ Artemis over AMQP 1.0. By default it runs on a private instance of
 * scripts/brokers/artemis (instance 3: AMQP :5702), so that scenario 13 restarts a broker no other suite is using;
 * the script starts it if it does not run. BUSBAR_TEST_AMQP10_URL runs it against another broker instead, without
 * scenario 13. The suite deletes the types it created (with their group queues).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BROKERS, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { runConformance } from './suite.ts';

const run = promisify(execFile);
const ARTEMIS = new URL('../../scripts/brokers/artemis', import.meta.url).pathname;
const INSTANCE = '3';
const external = process.env.BUSBAR_TEST_AMQP10_URL !== undefined;
const url = external ? BROKERS.amqp10 : 'amqp10://busbar:busbar@127.0.0.1:5702';
const { host, port } = hostPort(url, 5672);

async function artemis(command: string): Promise<void> {
  await run('bash', [ARTEMIS, command, '--instance', INSTANCE], { timeout: 180_000 });
}

runConformance({
  name: 'amqp10',
  connect: () => url,
  check: async () => {
    // The private instance is started on demand when Artemis can run here (the shared one answers).
    if (!external) {
      const shared = hostPort(BROKERS.amqp10, 5672);
      await tcpReachable(shared.host, shared.port);
      await artemis('start');
    }
    await tcpReachable(host, port);
  },
  ackTimeoutMs: 1000,
  restart: external ? undefined : () => artemis('restart'),
  // The private instance is this suite's own: stop it (its journal stays, for the next run).
  after: external ? undefined : () => artemis('stop'),
});
