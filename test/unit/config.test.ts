import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { resolveConfig } from '../../src/config/index.ts';
import { parseBrokerUrl, redactUrl } from '../../src/config/url.ts';
import { kafkaSettings } from '../../src/transports/kafka/options.ts';

const dir = mkdtempSync(join(tmpdir(), 'busbar-config-'));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
const noEnv = {};

test('host lists, credentials, paths and queries parse', () => {
  const url = parseBrokerUrl('kafka://u:p%40ss@h1:9092,h2:9093/x?acks=all');
  assert.deepEqual(url.hosts, ['h1:9092', 'h2:9093']);
  assert.equal(url.username, 'u');
  assert.equal(url.password, 'p@ss');
  assert.equal(url.path, '/x');
  assert.deepEqual(url.query, { acks: 'all' });
  assert.equal(parseBrokerUrl('embedded:/var/lib/bus.db').path, '/var/lib/bus.db');
  assert.equal(redactUrl('amqp://guest:secret@host'), 'amqp://guest:***@host');
  assert.throws(() => parseBrokerUrl('no scheme here'), { code: 'BUSBAR_ERR_INVALID_URL' });
  assert.throws(() => parseBrokerUrl('kafka://bad host:9092'), { code: 'BUSBAR_ERR_INVALID_URL' });
});

test('the embedded broker is the default', () => {
  const config = resolveConfig({}, noEnv, dir);
  assert.equal(config.transportName, 'embedded');
  assert.equal(config.origin, 'default');
});

test('explicit options beat BUSBAR_BROKER, which beats the config file', () => {
  const path = file('busbar.config.json', JSON.stringify({ broker: 'memory:from-file', ackTimeoutMs: 1234 }));
  assert.equal(resolveConfig({ config: path }, noEnv, dir).transport.url, 'memory:from-file');
  assert.equal(resolveConfig({ config: path }, { BUSBAR_BROKER: 'memory:env' }, dir).transport.url, 'memory:env');
  const explicit = resolveConfig({ config: path, broker: 'memory:explicit' }, { BUSBAR_BROKER: 'memory:env' }, dir);
  assert.equal(explicit.transport.url, 'memory:explicit');
  assert.equal(explicit.ackTimeoutMs, 1234, 'other settings still come from the file');
  assert.equal(resolveConfig({}, { BUSBAR_CONFIG: path }, '/').transport.url, 'memory:from-file');
});

test('./busbar.config.yaml is found and YAML is read', () => {
  const yamlDir = mkdtempSync(join(tmpdir(), 'busbar-yaml-'));
  writeFileSync(join(yamlDir, 'busbar.config.yaml'), 'broker: memory:yaml\noptions:\n  sync: full\n');
  const config = resolveConfig({}, noEnv, yamlDir);
  assert.equal(config.transport.url, 'memory:yaml');
  assert.equal(config.transport.options.sync, 'full');
});

test("CORTX's message_bus.conf is read as is, keeping every cluster node", () => {
  const path = file(
    'message_bus.conf',
    JSON.stringify({
      message_broker: {
        type: 'kafka',
        cluster: [
          { server: 'k1', port: '9092' },
          { server: 'k2', port: '9092' },
          { server: 'k3', port: '9093' },
        ],
      },
    }),
  );
  // Every node of the cluster list becomes an endpoint (CORTX's own parser kept only the last one).
  assert.equal(resolveConfig({ config: path }, noEnv, dir).transport.url, 'kafka://k1:9092,k2:9092,k3:9093');
  const rabbit = file('rabbit.conf', JSON.stringify({ message_broker: { type: 'memory', cluster: [] } }));
  assert.equal(resolveConfig({ config: rabbit }, noEnv, dir).transport.url, 'memory:');
});

test('bad config names the key by path and what is accepted', () => {
  const cases: Array<[string, RegExp]> = [
    ['{"brokr": "memory:"}', /brokr: unknown key; expected one of broker/],
    ['{"tls": {"ca": 5}}', /tls\.ca: expected a path to a PEM file; got number 5/],
    ['{"endpoints": ["h:1", "nope"]}', /endpoints\[1\]: expected "host:port"/],
    ['{"ackTimeoutMs": -1}', /ackTimeoutMs: expected a whole number of milliseconds from 1 to 2147483647/],
    ['{"ackTimeoutMs": 1.5}', /ackTimeoutMs: expected a whole number of milliseconds/],
    ['{"message_broker": {"type": "zeromq", "cluster": []}}', /message_broker\.type: unknown broker type "zeromq"/],
    [
      '{"message_broker": {"type": "kafka", "cluster": [{"server": "h", "port": "x"}]}}',
      /cluster\[0\]\.port: expected a port/,
    ],
    ['[1, 2]', /\(top level\): expected an object/],
  ];
  for (const [text, pattern] of cases) {
    const path = file('bad.json', text);
    assert.throws(
      () => resolveConfig({ config: path }, noEnv, dir),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'BUSBAR_ERR_INVALID_CONFIG', text);
        assert.match(error.message, pattern);
        assert.ok(error.message.includes(path), 'the message names the file');
        return true;
      },
    );
  }
  assert.throws(() => resolveConfig({ config: join(dir, 'missing.json') }, noEnv, dir), {
    code: 'BUSBAR_ERR_CONFIG_FILE',
  });
  assert.throws(() => resolveConfig('nosuch://x', noEnv, dir), { code: 'BUSBAR_ERR_UNKNOWN_SCHEME' });
});

test('resolved config is frozen', () => {
  const config = resolveConfig('memory:', noEnv, dir);
  assert.ok(Object.isFrozen(config) && Object.isFrozen(config.transport) && Object.isFrozen(config.transport.options));
});

test("CORTX's message_bus timeouts (seconds) become busbar's options", () => {
  const cortx = (type: string, messageBus: unknown) =>
    file(
      `${type}.conf`,
      JSON.stringify({
        message_broker: { type, cluster: [{ server: 'h1', port: '1234' }] },
        message_bus: messageBus,
      }),
    );
  const timeouts = { receive_timeout: 2, socket_timeout: '15', send_timeout: 0.5, admin_api_timeout: 60 };
  const rabbit = resolveConfig({ config: cortx('rabbitmq', timeouts) }, noEnv, dir);
  assert.equal(rabbit.receiveTimeoutMs, 2000);
  assert.equal(rabbit.sendTimeoutMs, 500);
  assert.equal(rabbit.adminTimeoutMs, 60_000);
  assert.equal(rabbit.transport.options.connectTimeoutMs, 15_000, 'socket_timeout: the connection timeout');
  for (const type of ['nats', 'redis', 'mqtt', 'kafka']) {
    const config = resolveConfig({ config: cortx(type, timeouts) }, noEnv, dir);
    assert.equal(config.transport.options.connectTimeoutMs, 15_000, type);
  }
  // Kafka takes it as its client's connectTimeout (an option the kafka transport would refuse if it did not know it).
  const kafka = resolveConfig({ config: cortx('kafka', timeouts) }, noEnv, dir);
  assert.equal(kafkaSettings(kafka.transport).connectTimeoutMs, 15_000);
  assert.equal(kafka.sendTimeoutMs, 500);
  // receive_timeout 0 waits for a message, as in CORTX.
  assert.equal(resolveConfig({ config: cortx('kafka', { receive_timeout: 0 }) }, noEnv, dir).receiveTimeoutMs, 0);
  // None given: receive() waits, sends and admin calls are bounded only by the transport.
  const plain = resolveConfig('memory:', noEnv, dir);
  assert.deepEqual([plain.receiveTimeoutMs, plain.sendTimeoutMs, plain.adminTimeoutMs], [0, undefined, undefined]);
});

test('timeouts in a busbar config file and in options', () => {
  const path = file('timeouts.json', '{"broker": "memory:", "receiveTimeoutMs": 250, "sendTimeoutMs": 1000}');
  const config = resolveConfig({ config: path, adminTimeoutMs: 3000 }, noEnv, dir);
  assert.deepEqual([config.receiveTimeoutMs, config.sendTimeoutMs, config.adminTimeoutMs], [250, 1000, 3000]);
});

test('bad timeouts name their key by path and what is accepted', () => {
  const cortx = (messageBus: string) =>
    `{"message_broker": {"type": "kafka", "cluster": [{"server": "h"}]}, "message_bus": ${messageBus}}`;
  const cases: Array<[string, RegExp]> = [
    [
      cortx('{"receive_timeout": -1}'),
      /message_bus\.receive_timeout: expected a number of seconds from 0 \(waits for a message\) to 2147483\.647; got number -1/,
    ],
    [
      cortx('{"send_timeout": 0}'),
      /message_bus\.send_timeout: expected a number of seconds above 0 to 2147483\.647; got number 0/,
    ],
    [
      cortx('{"socket_timeout": "soon"}'),
      /message_bus\.socket_timeout: expected a number of seconds above 0 .*; got string "soon"/,
    ],
    [
      cortx('{"admin_api_timeout": null}'),
      /message_bus\.admin_api_timeout: expected a number of seconds above 0 .*; got null/,
    ],
    [cortx('{"recieve_timeout": 1}'), /message_bus\.recieve_timeout: unknown key; expected one of receive_timeout/],
    [cortx('[1]'), /message_bus: expected an object of timeouts in seconds; got a list/],
    [cortx('{"send_timeout": 3000000}'), /message_bus\.send_timeout: expected .* to 2147483\.647; got number 3000000/],
    ['{"receiveTimeoutMs": -5}', /receiveTimeoutMs: expected a number of milliseconds from 0 \(waits for a message\)/],
    ['{"sendTimeoutMs": 0}', /sendTimeoutMs: expected a number of milliseconds from 1 to 2147483647; got number 0/],
    ['{"adminTimeoutMs": "1s"}', /adminTimeoutMs: expected a number of milliseconds from 1 .*; got string "1s"/],
    ['{"sendTimeoutMs": 1e12}', /sendTimeoutMs: expected a number of milliseconds from 1 to 2147483647/],
  ];
  for (const [text, pattern] of cases) {
    const path = file('bad-timeout.json', text);
    assert.throws(
      () => resolveConfig({ config: path }, noEnv, dir),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'BUSBAR_ERR_INVALID_CONFIG', text);
        assert.match(error.message, pattern);
        assert.ok(error.message.startsWith(`${path}: `), 'the message names the file');
        return true;
      },
    );
  }
});
