/**
 * The project's Apache ActiveMQ Artemis brokers (`scripts/brokers/artemis start --instance 1|2`, or
 * `npm run brokers`), proven with raw clients in another language before any busbar transport uses them: Debian's
 * python3-qpid-proton (AMQP 1.0) and python3-stomp (STOMP 1.2) run test/transports/fixtures/artemis_check.py.
 * What one protocol durably sends the other reads, a wrong password is refused over both, the management address
 * answers over AMQP, and persistent messages survive a clean restart and a SIGKILL of the broker process.
 * With BUSBAR_REQUIRE_BROKERS=all (or naming `artemis`), a broker or client that is missing fails instead of skipping.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { brokerRequired, brokerSkipReason, tcpReachable } from '../helpers/brokers.ts';

const run = promisify(execFile);
const script = fileURLToPath(new URL('../../scripts/brokers/artemis', import.meta.url));
const fixture = fileURLToPath(new URL('./fixtures/artemis_check.py', import.meta.url));
/** Debian's interpreter, which has python3-qpid-proton and python3-stomp (.ci/run installs them). */
const PYTHON = process.env.BUSBAR_TEST_PYTHON ?? '/usr/bin/python3';
const HOST = '127.0.0.1';
/** The ports scripts/brokers/artemis gives instance N: AMQP 1.0 on 5672+10N, STOMP on 61603+10N. */
const INSTANCES = {
  1: { amqp: 5682, stomp: 61613 },
  2: { amqp: 5692, stomp: 61623 },
} as const;
const USER = 'busbar';
const PASSWORD = 'busbar';

type Instance = keyof typeof INSTANCES;
type Read = { body: string; properties?: Record<string, string>; headers?: Record<string, string> };

async function check<T>(instance: Instance, prefix: string, step: string): Promise<T> {
  const { amqp, stomp } = INSTANCES[instance];
  const { stdout } = await run(PYTHON, [fixture, HOST, String(amqp), String(stomp), USER, PASSWORD, prefix, step], {
    timeout: 90_000,
  });
  return JSON.parse(stdout) as T;
}

async function brokerScript(...args: string[]): Promise<void> {
  await run('bash', [script, ...args], { timeout: 180_000 });
}

function reachable(instance: Instance): () => Promise<void> {
  const { amqp, stomp } = INSTANCES[instance];
  return async () => {
    await tcpReachable(HOST, amqp);
    await tcpReachable(HOST, stomp);
  };
}

async function pythonSkipReason(): Promise<string | undefined> {
  try {
    await run(PYTHON, ['-c', 'import proton, stomp'], { timeout: 30_000 });
    return undefined;
  } catch (error) {
    const reason = `${PYTHON} cannot import proton and stomp (apt-get install python3-qpid-proton python3-stomp): ${(error as Error).message.split('\n')[0]}`;
    if (brokerRequired('artemis')) throw new Error(`${reason} (required by BUSBAR_REQUIRE_BROKERS)`);
    return reason;
  }
}

const prefix = () => `bb-${randomUUID().slice(0, 8)}`;

describe('Artemis brokers (scripts/brokers/artemis) with raw AMQP 1.0 and STOMP clients', { timeout: 300_000 }, () => {
  let skip: string | undefined;
  before(async () => {
    skip = (await brokerSkipReason('artemis', reachable(1))) ?? (await pythonSkipReason());
  });

  it('carries a persistent message from AMQP 1.0 to STOMP and from STOMP to AMQP 1.0', async (t) => {
    if (skip) return t.skip(skip);
    const out = await check<{ stompRead: Read[]; amqpRead: Read[] }>(1, prefix(), 'roundtrip');
    assert.deepEqual(
      out.stompRead.map((r) => [r.body, r.headers]),
      [['from amqp: thé', { 'x-origin': 'amqp' }]],
    );
    assert.deepEqual(
      out.amqpRead.map((r) => [r.body, r.properties]),
      [['from stomp: thé', { 'x-origin': 'stomp' }]],
    );
  });

  it('refuses a wrong password over both protocols', async (t) => {
    if (skip) return t.skip(skip);
    const out = await check<{ amqp: string; stomp: string }>(1, prefix(), 'refused');
    assert.match(out.amqp, /^refused: .*unauthorized-access/);
    assert.match(out.stomp, /^refused: /);
  });

  it('answers a request to the management address over AMQP 1.0', async (t) => {
    if (skip) return t.skip(skip);
    const out = await check<{ succeeded: boolean; body: string[] }>(1, prefix(), 'management');
    assert.equal(out.succeeded, true);
    assert.match(out.body[0] ?? '', /^2\.\d+\.\d+/);
  });

  for (const [how, stopAndStart] of [
    ['a clean restart', () => brokerScript('restart', '--instance', '1')],
    [
      'a SIGKILL and a start',
      async () => {
        await brokerScript('kill9', '--instance', '1');
        await brokerScript('start', '--instance', '1');
      },
    ],
  ] as const) {
    it(`keeps confirmed persistent messages through ${how}`, async (t) => {
      if (skip) return t.skip(skip);
      const p = prefix();
      assert.deepEqual(await check(1, p, 'put'), { sent: 2 });
      await stopAndStart();
      const out = await check<{ amqpRead: Read[] }>(1, p, 'get');
      assert.deepEqual(
        out.amqpRead.map((r) => [r.body, r.properties]),
        [
          ['persisted via amqp', { 'x-origin': 'amqp' }],
          ['persisted via stomp', { 'x-origin': 'stomp' }],
        ],
      );
    });
  }

  it('runs a second instance on its own ports (the failover peer)', async (t) => {
    if (skip) return t.skip(skip);
    const skip2 = await brokerSkipReason('artemis', reachable(2));
    if (skip2) return t.skip(`instance 2: ${skip2}`);
    const out = await check<{ stompRead: Read[]; amqpRead: Read[] }>(2, prefix(), 'roundtrip');
    assert.deepEqual(
      [...out.stompRead, ...out.amqpRead].map((r) => r.body),
      ['from amqp: thé', 'from stomp: thé'],
    );
  });
});
