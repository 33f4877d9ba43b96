/**
 * The fault proxy itself, in front of a local echo server: bytes pass unchanged and in order; cut() resets open
 * connections; refuse() resets new ones; stall() holds bytes until released; slow() delays and throttles without
 * reordering. Then through RabbitMQ: a publish and a receive complete over a slowed link.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { MessageBus } from '../../src/index.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { FaultProxy } from '../helpers/fault-proxy.ts';

function echoServer(): Promise<{ server: Server; port: number; received: () => number }> {
  let received = 0;
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.on('data', (d) => {
      received += d.length;
      s.write(d);
    });
  });
  server.on('close', () => {
    for (const s of sockets) s.destroy();
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as { port: number }).port, received: () => received }),
    ),
  );
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves with `n` bytes echoed back on `s`. */
function read(s: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= n) {
        s.off('data', onData);
        resolve(Buffer.concat(chunks));
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.once('close', () => reject(new Error(`closed after ${got} of ${n} bytes`)));
  });
}

function closed(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    let code = 'closed';
    s.on('error', (e: NodeJS.ErrnoException) => (code = e.code ?? e.message));
    s.once('close', () => resolve(code));
  });
}

describe('fault proxy', () => {
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let proxy: FaultProxy;
  before(async () => {
    echo = await echoServer();
    proxy = await FaultProxy.start({ host: '127.0.0.1', port: echo.port });
  });
  after(async () => {
    await proxy.close();
    await new Promise((resolve) => echo.server.close(resolve));
  });

  test('passes bytes in order; cut, refuse, stall, slow', { timeout: 30_000 }, async () => {
    const s = await open(proxy.port);
    const payload = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
    const back = read(s, payload.length);
    s.write(payload);
    assert.ok((await back).equals(payload), 'echoed unchanged');

    // stall: nothing reaches the server until released, then everything in order
    proxy.stall(true);
    const before = echo.received();
    const held = read(s, 5);
    await new Promise<void>((resolve) => s.write('hello', () => resolve()));
    assert.equal(echo.received(), before, 'stalled bytes are held');
    proxy.stall(false);
    assert.equal((await held).toString(), 'hello');

    // slow: delayed and throttled, same bytes, same order
    proxy.slow({ delayMs: 20, bytesPerSec: 1_000_000 });
    const small = Buffer.from(Array.from({ length: 50_000 }, (_, i) => i % 13));
    const slowBack = read(s, small.length);
    s.write(small);
    assert.ok((await slowBack).equals(small));
    proxy.slow();

    // cut: the open connection is reset
    const gone = closed(s);
    proxy.cut();
    assert.match(await gone, /ECONNRESET|closed/);
    assert.equal(proxy.connections, 0);

    // refuse: new connections are reset at once, until refuse(false)
    proxy.refuse(true);
    const refused = await open(proxy.port).then(closed, (e: NodeJS.ErrnoException) => e.code ?? 'error');
    assert.match(String(refused), /ECONNRESET|closed/);
    assert.ok(proxy.counts.refused >= 1);
    proxy.refuse(false);
    const again = await open(proxy.port);
    const ok = read(again, 2);
    again.write('ok');
    assert.equal((await ok).toString(), 'ok');
    again.destroy();
  });
});

describe('fault proxy in front of RabbitMQ', () => {
  let skip: string | undefined;
  let proxy: FaultProxy | undefined;
  before(async () => {
    const { host, port } = hostPort(BROKERS.rabbitmq, 5672);
    skip = await brokerSkipReason('rabbitmq', () => tcpReachable(host, port));
    if (!skip) proxy = await FaultProxy.start({ host, port });
  });
  after(() => proxy?.close());

  test('a slowed link still carries publishes and deliveries', { timeout: 60_000 }, async (t) => {
    if (skip) return t.skip(skip);
    const bus = await MessageBus.connect(proxy!.url(BROKERS.rabbitmq));
    const type = `proxy-slow-${randomUUID().slice(0, 8)}`;
    t.after(async () => {
      await bus
        .admin()
        .deregisterMessageType(type)
        .catch(() => {});
      await bus.close();
    });
    const consumer = bus.consumer({ consumerGroup: 'g', messageTypes: [type], offset: 'earliest' });
    await consumer.ready;
    proxy!.slow({ delayMs: 30, bytesPerSec: 50_000 });
    await bus.sendBatch(
      type,
      Array.from({ length: 50 }, (_, n) => ({ n })),
    );
    const seen = new Set<number>();
    while (seen.size < 50) {
      const m = await consumer.receive({ timeout: 20_000 });
      assert.ok(m, `received ${seen.size} of 50`);
      seen.add((m.body as { n: number }).n);
      await m.ack();
    }
    proxy!.slow();
    await consumer.close();
  });
});
