/**
 * SASL EXTERNAL on Artemis, as PDC's Kombu settings logged in to Red Hat's and Fedora's brokers: a private Artemis
 * whose AMQP acceptor requires TLS with a client certificate and offers only EXTERNAL, with a JAAS domain that maps
 * the certificate's subject to a user (TextFileCertificateLoginModule). Certificates are made by the test (openssl).
 * A known certificate publishes, consumes and reads stats; a certificate of the same CA with a subject the broker
 * does not know is refused at login (BUSBAR_ERR_AUTH); one from another CA is refused at the TLS handshake.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MessageBus } from '../../src/index.ts';
import { uniqueGroup, uniqueType } from '../conformance/suite.ts';
import { brokerSkipReason } from '../helpers/brokers.ts';
import { freePort } from '../helpers/ports.ts';
import { artemisJarsAvailable, startTlsArtemis, type TlsArtemis } from './fixtures/artemis-tls.ts';

// Free ports, asked for when the broker starts: a fixed pair could be taken by another broker on this machine.
let AMQP_PORT = 0;
let STOMP_PORT = 0;
let broker: TlsArtemis | undefined;
let skip: string | undefined;

before(async () => {
  skip = await brokerSkipReason('amqp10', async () => {
    artemisJarsAvailable();
  });
  if (skip) return;
  AMQP_PORT = await freePort();
  STOMP_PORT = await freePort();
  broker = await startTlsArtemis({
    name: 'amqp10-external',
    amqpPort: AMQP_PORT,
    stompPort: STOMP_PORT,
    amqp: { tls: true, params: 'saslMechanisms=EXTERNAL', securityDomain: 'busbar-cert' },
  });
});

after(async () => {
  await broker?.stop();
});

test('amqps10:// with sasl=EXTERNAL: the client certificate is the login', { timeout: 240_000 }, async (t) => {
  if (skip) return t.skip(skip);
  const b = broker!;
  const url = `amqps10://127.0.0.1:${AMQP_PORT}?sasl=EXTERNAL`;
  const tls = (name: string) => ({ ca: b.file('ca.pem'), cert: b.file(`${name}.pem`), key: b.file(`${name}.key`) });

  const bus = await MessageBus.connect({ broker: url, tls: tls('client') });
  t.after(() => bus.close());
  const type = uniqueType('external');
  const group = uniqueGroup();
  const consumer = bus.consumer({ consumerGroup: group, messageTypes: [type] });
  await consumer.ready;
  await bus.send(type, { over: 'EXTERNAL' });
  const got = await consumer.receive({ timeout: 30_000 });
  assert.deepEqual(got?.body, { over: 'EXTERNAL' });
  await got!.ack();
  // Management requests go over the same login.
  const [stats] = await bus.admin().stats(type);
  assert.equal(stats?.groups.find((g) => g.group === group)?.unread, 0);
  await consumer.close();

  // Same CA, a subject the broker does not map to a user: the login is refused, and said so.
  await assert.rejects(
    MessageBus.connect({ broker: `${url}&connectTimeoutMs=5000`, tls: tls('unknown') }),
    (error: { code?: string; message?: string }) => {
      assert.equal(error.code, 'BUSBAR_ERR_AUTH', String(error.message));
      return true;
    },
  );
  // Another CA: the broker refuses the TLS handshake; busbar keeps trying until connectTimeoutMs.
  await assert.rejects(MessageBus.connect({ broker: `${url}&connectTimeoutMs=2000`, tls: tls('stranger') }), {
    code: 'BUSBAR_ERR_CONNECTION',
  });
});
