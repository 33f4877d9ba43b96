/**
 * SASL EXTERNAL on RabbitMQ, as PDC's Kombu settings logged in: a private RabbitMQ node (its own name, ports, data
 * and cookie; the machine's node is never touched) with a TLS listener that asks for a client certificate, the
 * rabbitmq_auth_mechanism_ssl plugin, EXTERNAL as its only mechanism, and the user name taken from the certificate's
 * CN. Certificates are made by the test (openssl). A known certificate publishes and consumes; settings without a
 * certificate are refused before connecting; a certificate of the same CA naming no user is refused at login
 * (BUSBAR_ERR_AUTH); one from another CA is refused at the TLS handshake.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MessageBus } from '../../src/index.ts';
import { uniqueGroup, uniqueType } from '../conformance/suite.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';
import { freePort, PrivateRabbit } from '../helpers/private-brokers.ts';
import { makeCertificates } from './fixtures/artemis-tls.ts';

const CLIENT_CN = 'busbar-external';
let node: PrivateRabbit | undefined;
let tlsPort = 0;
let skip: string | undefined;
const certs = mkdtempSync(join(tmpdir(), 'busbar-rabbit-certs-'));
const file = (name: string) => join(certs, name);

before(async () => {
  // RabbitMQ is installed here when the shared node answers.
  const shared = hostPort(BROKERS.rabbitmq, 5672);
  skip = await brokerSkipReason('rabbitmq', () => tcpReachable(shared.host, shared.port));
  if (skip) return;
  await makeCertificates(certs, CLIENT_CN);
  // The certificate's CN is the user, made at boot from a definitions file (rabbitmqctl, an Erlang VM of its own
  // per call, took over a minute on a loaded machine). No password hash: EXTERNAL checks none, and PLAIN cannot log in.
  writeFileSync(
    file('definitions.json'),
    JSON.stringify({
      vhosts: [{ name: '/' }],
      users: [{ name: CLIENT_CN, password_hash: '', hashing_algorithm: 'rabbit_password_hashing_sha256', tags: [] }],
      permissions: [{ user: CLIENT_CN, vhost: '/', configure: '.*', write: '.*', read: '.*' }],
    }),
  );
  tlsPort = await freePort();
  node = await PrivateRabbit.start({
    plugins: ['rabbitmq_auth_mechanism_ssl'],
    conf: [
      `listeners.ssl.default = 127.0.0.1:${tlsPort}`,
      `ssl_options.cacertfile = ${file('ca.pem')}`,
      `ssl_options.certfile = ${file('server.pem')}`,
      `ssl_options.keyfile = ${file('server.key')}`,
      'ssl_options.verify = verify_peer',
      'ssl_options.fail_if_no_peer_cert = true',
      'auth_mechanisms.1 = EXTERNAL',
      'ssl_cert_login_from = common_name',
      `load_definitions = ${file('definitions.json')}`,
      '',
    ].join('\n'),
  });
  // The TLS listener opens beside the TCP one PrivateRabbit waited for; bounded, in case it comes a moment later.
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await tcpReachable('127.0.0.1', tlsPort, 2000);
      break;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(200);
    }
  }
});

after(async () => {
  await node?.stop();
  rmSync(certs, { recursive: true, force: true });
});

test('amqps:// with sasl=EXTERNAL: the client certificate is the login', { timeout: 240_000 }, async (t) => {
  if (skip) return t.skip(skip);
  const url = `amqps://127.0.0.1:${tlsPort}?sasl=EXTERNAL`;
  const tls = (name: string) => ({ ca: file('ca.pem'), cert: file(`${name}.pem`), key: file(`${name}.key`) });

  const bus = await MessageBus.connect({ broker: url, tls: tls('client') });
  t.after(() => bus.close());
  const type = uniqueType('external');
  const consumer = bus.consumer({ consumerGroup: uniqueGroup(), messageTypes: [type] });
  await consumer.ready;
  await bus.send(type, { over: 'EXTERNAL' });
  const got = await consumer.receive({ timeout: 30_000 });
  assert.deepEqual(got?.body, { over: 'EXTERNAL' });
  await got!.ack();
  await consumer.close();

  // No certificate: refused before any connection, saying what to configure.
  await assert.rejects(MessageBus.connect({ broker: url, tls: { ca: file('ca.pem') } }), {
    code: 'BUSBAR_ERR_INVALID_CONFIG',
    message: /client certificate.*tls\.cert and tls\.key/,
  });
  await assert.rejects(MessageBus.connect({ broker: `amqp://127.0.0.1:${node!.port}?sasl=EXTERNAL` }), {
    code: 'BUSBAR_ERR_INVALID_CONFIG',
  });
  // Same CA, a CN that is no RabbitMQ user: the login is refused, and said so.
  await assert.rejects(
    MessageBus.connect({ broker: `${url}&connectTimeoutMs=5000`, tls: tls('unknown') }),
    (error: { code?: string; message?: string }) => {
      assert.equal(error.code, 'BUSBAR_ERR_AUTH', String(error.message));
      assert.match(String(error.message), /client certificate/);
      return true;
    },
  );
  // Another CA: RabbitMQ refuses the TLS handshake; busbar keeps trying until connectTimeoutMs.
  await assert.rejects(MessageBus.connect({ broker: `${url}&connectTimeoutMs=2000`, tls: tls('stranger') }), {
    code: 'BUSBAR_ERR_CONNECTION',
  });
});
