/**
 * The conformance suite on Apache Kafka, twice: against the machine's Kafka (BUSBAR_TEST_KAFKA_URL, default
 * kafka://127.0.0.1:9092, as started by `scripts/brokers/kafka start`), which is never restarted, so no restart
 * scenario there; then against a private single-node Kafka of the same script (its own port and data directory)
 * that scenario 13 restarts mid-stream. Restarting the machine's broker would pull it from under every other test
 * process using it, and leave the next test files a broker still loading its groups.
 * The suite deletes its types (topics and retry topics); the consumer groups it used are deleted here.
 */

import { BROKERS, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { deleteKafkaGroups } from '../helpers/group-cleanup.ts';
import { PrivateKafka } from '../helpers/private-brokers.ts';
import { runConformance } from './suite.ts';

const { host, port } = hostPort(BROKERS.kafka, 9092);

runConformance({
  name: 'kafka',
  connect: () => BROKERS.kafka,
  check: () => tcpReachable(host, port),
  ackTimeoutMs: 1000,
  patienceMs: 20_000,
  cleanup: ({ groups }) => deleteKafkaGroups(BROKERS.kafka, groups),
});

let server: PrivateKafka | undefined;

runConformance({
  name: 'kafka',
  variant: 'private broker, restarted',
  connect: () => server!.url,
  // The same installation the machine's broker runs: reachable there means installed here.
  check: () => tcpReachable(host, port),
  ackTimeoutMs: 1000,
  patienceMs: 20_000,
  before: async () => {
    server = await PrivateKafka.start();
  },
  cleanup: ({ groups }) => deleteKafkaGroups(server!.url, groups),
  after: async () => {
    await server?.stop();
  },
  restart: () => server!.restart(),
});
