/**
 * `stomps://` with a CA, a client certificate and key, on a private Artemis whose STOMP acceptor requires TLS and a
 * client certificate (test/transports/fixtures/artemis-tls.ts: certificates made with openssl, the broker's stores
 * with keytool, the broker run from the jars scripts/brokers/artemis resolved); it stops the broker at the end.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MessageBus } from '../../src/index.ts';
import { brokerSkipReason } from '../helpers/brokers.ts';
import { freePort } from '../helpers/ports.ts';
import { artemisJarsAvailable, startTlsArtemis, type TlsArtemis } from './fixtures/artemis-tls.ts';

// Free ports, asked for when the broker starts: a fixed pair could be taken by another broker on this machine.
let AMQP_PORT = 0;
let STOMP_PORT = 0;
let broker: TlsArtemis | undefined;
let skip: string | undefined;

before(async () => {
  skip = await brokerSkipReason('stomp', async () => {
    artemisJarsAvailable();
  });
  if (skip) return;
  AMQP_PORT = await freePort();
  STOMP_PORT = await freePort();
  broker = await startTlsArtemis({
    name: 'stomp-tls',
    amqpPort: AMQP_PORT,
    stompPort: STOMP_PORT,
    stomp: { tls: true },
  });
});

after(async () => {
  await broker?.stop();
});

test('stomps:// with CA, client certificate and key: a round trip; no client certificate, no connection', {
  timeout: 180_000,
}, async (t) => {
  if (skip) return t.skip(skip);
  const pem = broker!.file;
  const url = `stomps://busbar:busbar@127.0.0.1:${STOMP_PORT}`;
  const tls = { ca: pem('ca.pem'), cert: pem('client.pem'), key: pem('client.key') };
  const bus = await MessageBus.connect({ broker: url, tls });
  t.after(() => bus.close());
  const type = `tls-${Date.now()}`;
  const consumer = bus.consumer({ consumerGroup: 'g', messageTypes: [type] });
  await consumer.ready;
  await bus.send(type, 'over TLS');
  const got = await consumer.receive({ timeout: 30_000 });
  assert.equal(got?.body, 'over TLS');
  await got!.ack();
  await consumer.close();

  await assert.rejects(MessageBus.connect({ broker: `${url}?connectTimeoutMs=2000`, tls: { ca: pem('ca.pem') } }), {
    code: 'BUSBAR_ERR_CONNECTION',
  });
});
