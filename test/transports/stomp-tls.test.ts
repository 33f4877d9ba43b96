/**
 * `stomps://` with a CA, a client certificate and key, on a private Artemis whose STOMP acceptor requires TLS and a
 * client certificate. The test makes the certificates with openssl (and the broker's trust store with keytool), and
 * runs the broker from the jars scripts/brokers/artemis resolved (its classpath file), with the project's broker.xml
 * whose STOMP acceptor gets the TLS parameters; it stops the broker at the end.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { MessageBus } from '../../src/index.ts';
import { brokerSkipReason, tcpReachable } from '../helpers/brokers.ts';

const run = promisify(execFile);
const AMQP_PORT = 5762;
const STOMP_PORT = 61693;
const PASSWORD = 'changeit';
const home =
  process.env.BUSBAR_ARTEMIS_HOME ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'busbar/artemis');
const template = new URL('../../scripts/brokers/artemis-broker.xml', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'busbar-stomp-tls-'));
const pem = (name: string) => join(dir, name);
let broker: ReturnType<typeof spawn> | undefined;
let skip: string | undefined;

async function openssl(...args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir });
}

async function makeCertificates(): Promise<void> {
  await openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=busbar test CA',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
  );
  for (const [name, subject, extension] of [
    ['server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    ['client', '/CN=busbar', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    await openssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      subject,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
    );
    writeFileSync(pem(`${name}.ext`), `${extension}\n`);
    await openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.pem`,
    );
  }
  await openssl(
    'pkcs12',
    '-export',
    '-in',
    'server.pem',
    '-inkey',
    'server.key',
    '-out',
    'server.p12',
    '-passout',
    `pass:${PASSWORD}`,
  );
  await run('keytool', [
    '-importcert',
    '-noprompt',
    '-alias',
    'ca',
    '-file',
    pem('ca.pem'),
    '-keystore',
    pem('trust.p12'),
    '-storetype',
    'PKCS12',
    '-storepass',
    PASSWORD,
  ]);
}

async function startBroker(): Promise<void> {
  const classpath = readdirSync(home).find((f) => f.startsWith('classpath-') && f.endsWith('.txt'));
  if (!classpath) throw new Error(`no Artemis classpath under ${home}: run scripts/brokers/artemis start once`);
  const etc = join(dir, 'etc');
  mkdirSync(etc, { recursive: true });
  const tlsParams = `sslEnabled=true;keyStorePath=${pem('server.p12')};keyStorePassword=${PASSWORD};keyStoreType=PKCS12;needClientAuth=true;trustStorePath=${pem('trust.p12')};trustStorePassword=${PASSWORD};trustStoreType=PKCS12`;
  const xml = readFileSync(template, 'utf8')
    .replaceAll('@NAME@', 'busbar-artemis-stomp-tls')
    .replaceAll('@AMQP_PORT@', String(AMQP_PORT))
    .replaceAll('@DATA_DIR@', join(dir, 'data'))
    .replace(
      /tcp:\/\/127\.0\.0\.1:@STOMP_PORT@\?protocols=STOMP;/,
      `tcp://127.0.0.1:${STOMP_PORT}?protocols=STOMP;${tlsParams};`,
    );
  assert.ok(xml.includes('sslEnabled=true'), 'the STOMP acceptor of artemis-broker.xml changed: update this test');
  writeFileSync(join(etc, 'broker.xml'), xml.replaceAll('&', '&amp;'));
  writeFileSync(
    join(etc, 'login.config'),
    'busbar {\n  org.apache.activemq.artemis.spi.core.security.jaas.PropertiesLoginModule required\n    reload=false\n    org.apache.activemq.jaas.properties.user="users.properties"\n    org.apache.activemq.jaas.properties.role="roles.properties";\n};\n',
  );
  writeFileSync(join(etc, 'users.properties'), 'busbar=busbar\n');
  writeFileSync(join(etc, 'roles.properties'), 'busbar=busbar\n');
  broker = spawn(
    'java',
    [
      '-Xms64m',
      '-Xmx256m',
      '-XX:+UseSerialGC',
      `-Djava.security.auth.login.config=${join(etc, 'login.config')}`,
      '-cp',
      readFileSync(join(home, classpath), 'utf8').trim(),
      'org.apache.activemq.artemis.core.server.embedded.Main',
      dir,
    ],
    { stdio: 'ignore' },
  );
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      await tcpReachable('127.0.0.1', STOMP_PORT, 1000);
      return;
    } catch (error) {
      if (broker.exitCode !== null || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }
}

before(async () => {
  skip = await brokerSkipReason('stomp', async () => {
    if (!existsSync(home)) throw new Error(`no Artemis under ${home}: run scripts/brokers/artemis start once`);
    await makeCertificates();
    await startBroker();
  });
});

after(async () => {
  if (!broker || broker.exitCode !== null) return;
  const exited = new Promise((resolve) => broker!.once('exit', resolve));
  broker.kill('SIGTERM');
  await exited;
});

test('stomps:// with CA, client certificate and key: a round trip; no client certificate, no connection', {
  timeout: 180_000,
}, async (t) => {
  if (skip) return t.skip(skip);
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
