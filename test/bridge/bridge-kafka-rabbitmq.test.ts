/**
 * `busbar bridge` from Kafka to RabbitMQ and back, on private instances (a Kafka of scripts/brokers/kafka with its
 * own home and port, a RabbitMQ node of its own), never the shared ones: each direction kills the bridge with
 * SIGKILL once and restarts each broker once. See scenario.ts.
 */
import { after, before, describe, it } from 'node:test';
import { brokerSkipReason } from '../helpers/brokers.ts';
import { PrivateKafka, PrivateRabbit } from '../helpers/private-brokers.ts';
import { type Broker, bridgeScenario } from './scenario.ts';

const skip =
  (await brokerSkipReason('kafka', async () => {
    const { status } = await import('node:child_process').then((cp) => cp.spawnSync('java', ['-version']));
    if (status !== 0) throw new Error('java is not installed: a private Kafka needs it');
  })) ??
  (await brokerSkipReason('rabbitmq', async () => {
    const { existsSync } = await import('node:fs');
    if (!existsSync('/usr/lib/rabbitmq/bin/rabbitmq-server')) throw new Error('rabbitmq-server is not installed');
  }));

/** A dead bridge's partitions move to its successor after the session timeout: short here, so the test is quick. */
const KAFKA_GROUP_TIMINGS = 'sessionTimeoutMs=6000&heartbeatIntervalMs=1000';

describe('busbar bridge: kafka <-> rabbitmq', { skip, timeout: 1_500_000 }, () => {
  let kafka: PrivateKafka | undefined;
  let rabbit: PrivateRabbit | undefined;
  before(async () => {
    [kafka, rabbit] = await Promise.all([PrivateKafka.start(), PrivateRabbit.start()]);
  });
  after(async () => {
    await Promise.allSettled([kafka?.stop(), rabbit?.stop()]);
  });
  const kafkaSide = (): Broker => ({
    name: 'kafka',
    url: kafka!.url,
    bridgeUrl: `${kafka!.url}?${KAFKA_GROUP_TIMINGS}`,
    restart: () => kafka!.restart(),
  });
  const rabbitSide = (): Broker => ({ name: 'rabbitmq', url: rabbit!.url, restart: () => rabbit!.restart() });

  it('kafka -> rabbitmq: kill -9 of the bridge, both brokers restarted, every confirmed message arrives', {
    timeout: 700_000,
  }, async (t) => {
    await bridgeScenario(t, { from: kafkaSide(), to: rabbitSide(), orderPerKey: true });
  });

  it('rabbitmq -> kafka: kill -9 of the bridge, both brokers restarted, every confirmed message arrives', {
    timeout: 700_000,
  }, async (t) => {
    await bridgeScenario(t, { from: rabbitSide(), to: kafkaSide() });
  });
});
