/** Private Artemis instances of scripts/brokers/artemis for the AMQP 1.0 tests that restart or kill their broker. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BROKERS, hostPort, tcpReachable } from '../helpers/brokers.ts';

const run = promisify(execFile);
const ARTEMIS = new URL('../../scripts/brokers/artemis', import.meta.url).pathname;

/** Instance N listens for AMQP 1.0 on 5672 + 10N (scripts/brokers/artemis). */
export const amqpPort = (instance: number): number => 5672 + 10 * instance;

export async function artemis(command: 'start' | 'stop' | 'restart' | 'kill9' | 'reset', instance: number) {
  await run('bash', [ARTEMIS, command, '--instance', String(instance)], { timeout: 180_000 });
}

/** Throws (so the suite is skipped, or fails when required) unless the shared Artemis answers: Artemis runs here. */
export async function artemisAvailable(): Promise<void> {
  const { host, port } = hostPort(BROKERS.amqp10, 5672);
  await tcpReachable(host, port);
}
