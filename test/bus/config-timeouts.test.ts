/**
 * CORTX's message_bus timeouts, read from a real message_bus.conf and honoured by the real bus over Redis: a private
 * redis-server, which a test may stop (SIGSTOP: the process is there, the broker answers nothing) and resume.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type BusError, MessageBus } from '../../src/index.ts';
import { PersistentRedis } from '../helpers/redis-aof.ts';
import { privateServerSkipReason, rawClient } from '../transports/redis-helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'busbar-timeouts-'));
let skip: string | undefined;
let server: PersistentRedis | undefined;

/** A CORTX message_bus.conf for a redis on `port` with the given `message_bus` section. */
function cortxConf(port: number, messageBus: Record<string, unknown>): string {
  const path = join(dir, `${randomUUID()}.conf`);
  writeFileSync(
    path,
    JSON.stringify({
      message_broker: { type: 'redis', cluster: [{ server: '127.0.0.1', port: String(port) }] },
      message_bus: messageBus,
    }),
  );
  return path;
}

async function connect(t: TestContext, messageBus: Record<string, unknown>): Promise<MessageBus> {
  const bus = await MessageBus.connect({ config: cortxConf(server!.port, messageBus) });
  t.after(() => bus.close());
  return bus;
}

/** Fails the test instead of hanging it when `promise` does not settle (old code waited forever here). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    promise,
    sleep(ms, undefined, { ref: false }).then(() => assert.fail(`${what} did not settle within ${ms} ms`)),
  ]);
}

describe('message_bus timeouts from a CORTX message_bus.conf (private redis-server)', { concurrency: 1 }, () => {
  before(async () => {
    skip = await privateServerSkipReason();
    if (!skip) server = await PersistentRedis.start();
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('receive_timeout: receive() without a timeout gives up after it; receive({ timeout: 0 }) and for await still wait', async (t) => {
    if (skip) return t.skip(skip);
    const bus = await connect(t, { receive_timeout: 0.3 });
    const type = `t-${randomUUID()}`;
    const consumer = bus.consumer({ consumerGroup: 'g', messageTypes: [type] });
    await consumer.ready;
    const started = performance.now();
    assert.equal(await within(consumer.receive(), 20_000, 'receive()'), null);
    assert.ok(performance.now() - started >= 290, 'receive() returned before receive_timeout');

    // Waiting for a message is still possible, and iteration never ends on a quiet moment.
    const explicit = consumer.receive({ timeout: 0 });
    const iterated = consumer[Symbol.asyncIterator]().next();
    await sleep(1000); // well past receive_timeout: both must still be waiting
    await bus.send(type, 'first');
    await bus.send(type, 'second');
    assert.equal((await explicit)?.body, 'first');
    assert.equal((await iterated).value?.body, 'second');
    await consumer.ack();
  });

  it('send_timeout and admin_api_timeout: a broker that answers nothing fails the call with a retryable BUSBAR_ERR_TIMEOUT', async (t) => {
    if (skip) return t.skip(skip);
    const bus = await connect(t, { send_timeout: 0.3, admin_api_timeout: 0.3, socket_timeout: 5 });
    const type = `t-${randomUUID()}`;
    await bus.admin().registerMessageType(type);
    const info = String(await (await rawClient(t, server!.url)).sendCommand(['INFO', 'server']));
    const pid = Number(/process_id:(\d+)/.exec(info)?.[1]);
    process.kill(pid, 'SIGSTOP');
    let stopped = true;
    const resume = () => {
      if (stopped) process.kill(pid, 'SIGCONT');
      stopped = false;
    };
    t.after(resume);

    const timedOut = (option: string) => (error: BusError) => {
      assert.equal(error.code, 'BUSBAR_ERR_TIMEOUT');
      assert.equal(error.retryable, true);
      assert.match(error.message, new RegExp(`no answer from the broker within 300 ms \\(${option}\\)`));
      return true;
    };
    // The redis transport's own command timeout is 10 s: within 5 s, only the configured deadline can answer.
    await assert.rejects(within(bus.send(type, 'one'), 5000, 'bus.send()'), timedOut('sendTimeoutMs'));
    const producer = bus.producer({ messageType: type });
    await assert.rejects(within(producer.send(['two']), 5000, 'producer.send()'), timedOut('sendTimeoutMs'));
    await assert.rejects(within(bus.admin().stats(type), 5000, 'admin.stats()'), timedOut('adminTimeoutMs'));

    // A send that timed out was not withdrawn: once the broker answers again, it is there (at-least-once).
    resume();
    const consumer = bus.consumer({ consumerGroup: 'g', messageTypes: [type] });
    const bodies = [(await consumer.receive({ timeout: 0 }))?.body, (await consumer.receive({ timeout: 0 }))?.body];
    assert.deepEqual(bodies.sort(), ['one', 'two']);
    await consumer.ack();
  });

  it('socket_timeout: the connection timeout of the transport', async (t) => {
    if (skip) return t.skip(skip);
    // A port nobody listens on: the redis transport retries until its connection timeout, 5 s by default.
    const closed = await PersistentRedis.freePort();
    const path = cortxConf(closed, { socket_timeout: 0.5 });
    const started = performance.now();
    await assert.rejects(within(MessageBus.connect({ config: path }), 20_000, 'connect()'), {
      code: 'BUSBAR_ERR_CONNECTION',
    });
    assert.ok(performance.now() - started < 4000, 'connect() waited the default timeout, not socket_timeout');
  });
});
