/**
 * Private Apache ActiveMQ Artemis instances for destructive STOMP tests (broker restart, kill -9), run by
 * scripts/brokers/artemis: instance N serves STOMP on 61603+10N. Instances 1 and 2 are shared with other suites, so
 * tests that stop a broker use their own numbers and stop only what they started.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SCRIPT = new URL('../../scripts/brokers/artemis', import.meta.url).pathname;

export const stompPort = (instance: number): number => 61603 + 10 * instance;

export async function artemis(
  verb: 'start' | 'stop' | 'restart' | 'kill9' | 'status',
  instance: number,
): Promise<void> {
  await run(SCRIPT, [verb, '--instance', String(instance)], { timeout: 300_000 });
}

/** True when the instance already runs (it is then left running after the test). */
export async function artemisRunning(instance: number): Promise<boolean> {
  return artemis('status', instance).then(
    () => true,
    () => false,
  );
}
