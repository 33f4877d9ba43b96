/**
 * The framework-free core's own rules, and the one case only a node:http handler can make: a response that streamed
 * its head before its messages failed to deliver is cut, never left looking like a success.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { MessageBus } from '../../src/index.ts';
import { broker } from '../../src/web/delivery.ts';
import { withBusbar } from '../../src/web/http.ts';
import { WebMessaging } from '../../src/web/scope.ts';

test('bad options: a clear BusError', () => {
  assert.throws(() => new WebMessaging({} as never), { code: 'BUSBAR_ERR_INVALID_ARGUMENT', message: /delivery mode/ });
  const via = broker({ sendBatch: async () => [] });
  assert.throws(() => new WebMessaging({ via, failureStatus: 200 }), {
    code: 'BUSBAR_ERR_INVALID_ARGUMENT',
    message: /failureStatus/,
  });
});

test('bad input in a handler throws there; a scope that ended refuses more; writeTo needs an outbox', async () => {
  const messaging = new WebMessaging({ via: broker({ sendBatch: async () => [] }) });
  const scope = messaging.begin({ header: () => undefined });
  assert.throws(() => scope.send('bad type!', 'x'), { code: 'BUSBAR_ERR_INVALID_TYPE_NAME' });
  assert.throws(() => scope.send('t', 1n), { code: 'BUSBAR_ERR_ENCODE' });
  await assert.rejects(scope.writeTo({}), { code: 'BUSBAR_ERR_INVALID_ARGUMENT', message: /outbox/ });
  scope.send('t', 'queued');
  assert.equal(scope.pending.length, 1);
  assert.deepEqual(await messaging.commit(scope, 200), { ok: true });
  assert.throws(() => scope.send('t', 'late'), { code: 'BUSBAR_ERR_CLOSED' });
});

test('a streamed response whose messages fail is cut, not completed', { timeout: 30_000 }, async (t) => {
  const closed = await MessageBus.connect('memory:');
  await closed.close();
  const errors: unknown[] = [];
  const server = createServer(
    withBusbar(
      closed,
      (req, res) => {
        req.bus.send('streamed', 'x');
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('partial ');
        res.end('and the rest');
      },
      { onError: (e) => errors.push(e) },
    ),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  const response = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(20_000) });
  assert.equal(response.status, 200, 'the head went out before the messages were due');
  await assert.rejects(response.text(), 'the body never completes');
  assert.equal(errors.length, 1);
});
