import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isBusError } from '../../src/errors.ts';
import { escapeName, streamName, subjectOf, typeOfStream, unescapeName } from '../../src/transports/nats/names.ts';
import { connectionOptions, parseSettings } from '../../src/transports/nats/options.ts';

const base = { url: 'nats://a:4222,b:4222', endpoints: ['a:4222', 'b:4222'], options: {} };

test('every endpoint, credentials and TLS paths reach the NATS client; reconnection never gives up', () => {
  const options = connectionOptions({
    ...base,
    username: 'u',
    password: 'p',
    tls: { ca: '/ca.pem', cert: '/c.pem', key: '/k.pem', rejectUnauthorized: false },
  });
  assert.deepEqual(options.servers, ['a:4222', 'b:4222']);
  assert.equal(options.user, 'u');
  assert.equal(options.pass, 'p');
  assert.deepEqual(options.tls, {
    caFile: '/ca.pem',
    certFile: '/c.pem',
    keyFile: '/k.pem',
    rejectUnauthorized: false,
  });
  assert.equal(options.maxReconnectAttempts, -1);
  assert.equal(connectionOptions({ ...base, options: { tls: 'true' } }).tls !== undefined, true);
  assert.equal(connectionOptions(base).tls, undefined);
  assert.deepEqual(connectionOptions({ ...base, endpoints: [] }).servers, ['127.0.0.1:4222']);
  assert.equal(connectionOptions({ ...base, options: { token: 't0k' } }).token, 't0k');
});

test('bad options name the key and what would be accepted', () => {
  const bad: Record<string, string | number>[] = [
    { nope: 1 },
    { replicas: 0 },
    { replicas: 7 },
    { storage: 'disk' },
    { requestTimeoutMs: 'x' },
  ];
  for (const options of bad) {
    assert.throws(
      () => parseSettings({ ...base, options }),
      (error) => isBusError(error, 'BUSBAR_ERR_INVALID_CONFIG'),
    );
  }
  assert.throws(
    () => connectionOptions({ ...base, username: 'u', options: { token: 't' } }),
    (error) => isBusError(error, 'BUSBAR_ERR_INVALID_CONFIG'),
  );
  assert.equal(parseSettings({ ...base, options: { requestTimeoutMs: '2500' } }).requestTimeoutMs, 2500);
});

test('type names map one-to-one onto stream names and valid subjects', () => {
  const types = ['a', 'a.b', 'a_b', 'a_2Eb', 'a._', 'a_.', 'x-y.z_', 'end.'];
  const streams = types.map(streamName);
  assert.equal(new Set(streams).size, types.length);
  for (const [i, type] of types.entries()) {
    assert.equal(typeOfStream(streams[i]!), type);
    assert.equal(unescapeName(escapeName(type)), type);
    assert.doesNotMatch(streams[i]!, /[.*> ]/);
    assert.doesNotMatch(subjectOf(type), /\.\.|\.$|[*> ]/);
  }
  assert.equal(streamName('orders.created_v2'), 'BUSBAR_orders_2Ecreated_5Fv2');
  assert.equal(subjectOf('audit.'), 'busbar.audit.~');
  assert.equal(typeOfStream('OTHER_stream'), undefined);
  assert.equal(typeOfStream('BUSBAR_bad_escape'), undefined);
});
