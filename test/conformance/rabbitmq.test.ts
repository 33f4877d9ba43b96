/**
 * The conformance suite against the machine's RabbitMQ (BUSBAR_TEST_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672).
 * Scenario 13 restarts the RabbitMQ application with `rabbitmqctl stop_app` / `start_app` and waits until it answers
 * (set BUSBAR_TEST_AMQP_NO_RESTART to skip it, e.g. against a remote broker). The suite deletes the types it created.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BROKERS, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { runConformance } from './suite.ts';

const run = promisify(execFile);
const { host, port } = hostPort(BROKERS.rabbitmq, 5672);
const local = host === '127.0.0.1' || host === 'localhost';

async function restartRabbit(): Promise<void> {
  try {
    await run('rabbitmqctl', ['stop_app'], { timeout: 60_000 });
  } finally {
    // Whatever happened, leave the broker running.
    await run('rabbitmqctl', ['start_app'], { timeout: 120_000 });
  }
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await tcpReachable(host, port, 1000);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

runConformance({
  name: 'rabbitmq',
  connect: () => BROKERS.rabbitmq,
  check: () => tcpReachable(host, port),
  ackTimeoutMs: 1000,
  restart: local && process.env.BUSBAR_TEST_AMQP_NO_RESTART === undefined ? restartRabbit : undefined,
});
