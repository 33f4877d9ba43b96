/**
 * The conformance suite against Apache Kafka (BUSBAR_TEST_KAFKA_URL, default kafka://127.0.0.1:9092), as started by
 * `scripts/brokers/kafka start` (or `npm run brokers`). Scenario 13 restarts that broker with
 * `scripts/brokers/kafka restart`; against another broker (a URL that is not on this machine) it is skipped.
 * The suite deletes its types (topics and retry topics); the consumer groups it used are deleted here.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BROKERS, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { deleteKafkaGroups } from '../helpers/group-cleanup.ts';
import { runConformance } from './suite.ts';

const run = promisify(execFile);
const script = fileURLToPath(new URL('../../scripts/brokers/kafka', import.meta.url));
const { host, port } = hostPort(BROKERS.kafka, 9092);
const local = (host === '127.0.0.1' || host === 'localhost') && !process.env.BUSBAR_TEST_KAFKA_URL;

runConformance({
  name: 'kafka',
  connect: () => BROKERS.kafka,
  check: () => tcpReachable(host, port),
  ackTimeoutMs: 1000,
  patienceMs: 20_000,
  cleanup: ({ groups }) => deleteKafkaGroups(BROKERS.kafka, groups),
  ...(local
    ? {
        restart: async () => {
          await run('bash', [script, 'restart'], { timeout: 240_000 });
        },
      }
    : {}),
});
