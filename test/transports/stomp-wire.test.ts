/**
 * The STOMP transport's configuration and header mapping without a broker: CORTX's `type: stomp`, the URL schemes,
 * options, and STOMP 1.2 header escaping (which busbar does itself, see docs/wire/stomp.md).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { resolveConfig } from '../../src/config/index.ts';
import { stompOptions } from '../../src/transports/stomp/options.ts';
import { attemptOf, escapeHeader, fromFrame, sendHeaders, unescapeHeader } from '../../src/transports/stomp/wire.ts';

test("CORTX's message_bus.conf accepts type stomp, every cluster node an endpoint", () => {
  const dir = mkdtempSync(join(tmpdir(), 'busbar-stomp-'));
  const path = join(dir, 'message_bus.conf');
  writeFileSync(
    path,
    JSON.stringify({
      message_broker: {
        type: 'stomp',
        cluster: [
          { server: 'a1', port: 61613 },
          { server: 'a2', port: 61623 },
        ],
      },
    }),
  );
  const config = resolveConfig({ config: path }, {}, dir);
  assert.equal(config.transportName, 'stomp');
  assert.deepEqual(
    stompOptions(config.transport).endpoints.map((e) => `${e.host}:${e.port}`),
    ['a1:61613', 'a2:61623'],
  );
});

test('stomps:// and stomp+ssl:// mean TLS with port 61614 by default; options are checked', () => {
  for (const url of ['stomps://h', 'stomp+ssl://h']) {
    const options = stompOptions(resolveConfig(url, {}, '/').transport);
    assert.ok(options.tls, `${url} is not TLS`);
    assert.equal(options.endpoints[0]!.port, 61614);
  }
  const plain = stompOptions(resolveConfig('stomp://u:p@h?heartbeatMs=0', {}, '/').transport);
  assert.equal(plain.tls, undefined);
  assert.equal(plain.endpoints[0]!.port, 61613);
  assert.equal(plain.heartbeatMs, 0);
  assert.equal(plain.login, 'u');
  assert.throws(() => stompOptions(resolveConfig('stomp://h?bogus=1', {}, '/').transport), {
    code: 'BUSBAR_ERR_INVALID_CONFIG',
  });
  assert.throws(
    () => stompOptions(resolveConfig('stomp://h?reconnectDelayMs=500&maxReconnectDelayMs=100', {}, '/').transport),
    { code: 'BUSBAR_ERR_INVALID_CONFIG' },
  );
});

test('STOMP 1.2 escaping round-trips, including a backslash before n, c or r', () => {
  for (const text of ['plain', 'a:b', 'line\nbreak\r', '\\n is not a newline', 'C:\\new\\cat\\rat', '\\\\c:']) {
    assert.equal(unescapeHeader(escapeHeader(text)), text);
  }
  assert.equal(escapeHeader('a:b\\c\nd'), 'a\\cb\\\\c\\nd');
});

test('claimed header names travel under busbar-header-; attributes as ce-*; attempt from busbar-attempt', () => {
  const message = {
    id: 'id-1',
    type: 't',
    source: 's',
    time: '2026-01-02T03:04:05.678Z',
    contentType: 'application/json',
    key: 'k:1',
    headers: { destination: 'x', 'ce-id': 'spoof', 'x:odd': 'v\n', traceparent: '00-a-b-01' },
    body: new Uint8Array([1, 2]),
  };
  const headers = sendHeaders(message, 3);
  assert.equal(headers['busbar-header-destination'], 'x');
  assert.equal(headers['busbar-header-ce-id'], 'spoof');
  assert.equal(headers['ce-id'], 'id-1');
  assert.equal(headers['ce-partitionkey'], 'k\\c1');
  assert.equal(headers['x\\codd'], 'v\\n');
  assert.equal(headers['busbar-attempt'], '3');
  const back = fromFrame({ ...headers, subscription: 'busbar-0', ack: '7', 'message-id': '9' }, message.body, 't');
  assert.deepEqual(back, { ...message });
  assert.equal(attemptOf(headers), 3);
  assert.equal(attemptOf({ ...headers, redelivered: 'true' }), 4);
  assert.equal(attemptOf({}), 1);
});
