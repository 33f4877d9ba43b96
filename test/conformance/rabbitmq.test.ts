/**
 * The conformance suite against the machine's RabbitMQ (BUSBAR_TEST_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672).
 * Scenario 13 restarts the RabbitMQ application with `rabbitmqctl stop_app` / `start_app` and waits until it answers
 * (set BUSBAR_TEST_AMQP_NO_RESTART to skip it, e.g. against a remote broker).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { resolveConfig } from '../../src/index.ts';
import { Broker } from '../../src/transports/rabbitmq/broker.ts';
import { ReconnectingConnection } from '../../src/transports/rabbitmq/connection.ts';
import createRabbitTransport from '../../src/transports/rabbitmq/index.ts';
import { rabbitOptions } from '../../src/transports/rabbitmq/options.ts';
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

/**
 * The suite leaves its types behind; on a shared RabbitMQ each would keep a stream and queues. Delete the ones this
 * run registered (the suite's name prefixes, registered after the run started), never anybody else's.
 */
const startedAt = Date.now();
const SUITE_PREFIXES = /^(conf|leak|adm)-[0-9a-f]{8}(\.dlq)?$/;

async function deleteSuiteTypes(): Promise<void> {
  const { transport: config } = resolveConfig({ broker: BROKERS.rabbitmq });
  const connection = new ReconnectingConnection(rabbitOptions(config));
  await connection.start();
  const broker = new Broker(connection, rabbitOptions(config));
  const transport = await createRabbitTransport(config);
  try {
    const { types } = await broker.registry.read();
    const ours = Object.entries(types).filter(
      ([type, e]) => !e.deleted && e.at >= startedAt && SUITE_PREFIXES.test(type),
    );
    for (const [type] of ours) await transport.admin.deleteType(type);
  } finally {
    await transport.close();
    await broker.close();
    await connection.close();
  }
}

runConformance({
  name: 'rabbitmq',
  connect: () => BROKERS.rabbitmq,
  check: () => tcpReachable(host, port),
  ackTimeoutMs: 1000,
  restart: local && process.env.BUSBAR_TEST_AMQP_NO_RESTART === undefined ? restartRabbit : undefined,
  after: deleteSuiteTypes,
});
