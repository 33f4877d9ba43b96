/**
 * `amqps10://` with a CA, a client certificate and key, end to end to the real Artemis through a TLS terminator this
 * test runs (certificates made here with openssl): the shared Artemis has no TLS acceptor, so the terminator checks
 * what busbar's TLS settings do (server verified against the CA, client certificate presented) and passes the bytes
 * on to Artemis, where SASL PLAIN logs in. A server the CA did not sign is refused.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { createServer, type TLSSocket } from 'node:tls';
import { MessageBus } from '../../src/index.ts';
import { uniqueGroup, uniqueType } from '../conformance/suite.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const { host, port } = hostPort(BROKERS.amqp10, 5672);

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: 'pipe' });
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate (CN busbar-client), both signed by it. */
function certificates(dir: string, name: string): Record<string, string> {
  const f = (file: string) => join(dir, `${name}-${file}`);
  openssl([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    `/CN=${name} CA`,
    '-keyout',
    f('ca-key.pem'),
    '-out',
    f('ca.pem'),
  ]);
  writeFileSync(f('san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  for (const [who, cn] of [
    ['server', '127.0.0.1'],
    ['client', 'busbar-client'],
  ] as const) {
    openssl([
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      `/CN=${cn}`,
      '-keyout',
      f(`${who}-key.pem`),
      '-out',
      f(`${who}.csr`),
    ]);
    openssl([
      'x509',
      '-req',
      '-in',
      f(`${who}.csr`),
      '-CA',
      f('ca.pem'),
      '-CAkey',
      f('ca-key.pem'),
      '-CAcreateserial',
      '-days',
      '1',
      '-out',
      f(`${who}.pem`),
      ...(who === 'server' ? ['-extfile', f('san.ext')] : []),
    ]);
  }
  return {
    ca: f('ca.pem'),
    cert: f('server.pem'),
    key: f('server-key.pem'),
    clientCert: f('client.pem'),
    clientKey: f('client-key.pem'),
  };
}

describe('amqp10 over TLS with a CA, client certificate and key', () => {
  let skip: string | undefined;
  before(async () => {
    skip = await brokerSkipReason('amqp10', () => tcpReachable(host, port));
  });

  it('verifies the server, presents the client certificate, and a message goes round', async (t) => {
    if (skip) return t.skip(skip);
    const dir = mkdtempSync(join(tmpdir(), 'busbar-amqp10-tls-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const good = certificates(dir, 'good');
    const other = certificates(dir, 'other');
    const clients: string[] = [];
    const sockets = new Set<Socket>();
    const server = createServer(
      {
        key: readFileSync(good.key!),
        cert: readFileSync(good.cert!),
        ca: readFileSync(good.ca!),
        requestCert: true,
        rejectUnauthorized: true,
      },
      (tls: TLSSocket) => {
        clients.push(String(tls.getPeerCertificate().subject?.CN));
        const upstream = connect({ host, port });
        sockets.add(tls);
        sockets.add(upstream);
        tls.pipe(upstream).pipe(tls);
        const end = () => {
          tls.destroy();
          upstream.destroy();
        };
        tls.on('error', end);
        upstream.on('error', end);
        tls.on('close', end);
        upstream.on('close', end);
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const stopServer = async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    };
    const tlsPort = (server.address() as { port: number }).port;
    const broker = `amqps10://busbar:busbar@127.0.0.1:${tlsPort}`;

    const bus = await MessageBus.connect({ broker, tls: { ca: good.ca, cert: good.clientCert, key: good.clientKey } });
    const type = uniqueType('tls');
    t.after(async () => {
      await bus
        .admin()
        .deregisterMessageType(type)
        .catch(() => {});
      // The bus first: with the terminator gone first, it would fail over back to it.
      await bus.close();
      await stopServer();
    });
    const consumer = bus.consumer({ consumerGroup: uniqueGroup(), messageTypes: [type] });
    await consumer.ready;
    await bus.send(type, 'over TLS');
    const got = await consumer.receive({ timeout: 30_000 });
    assert.equal(got?.body, 'over TLS');
    await got!.ack();
    await consumer.close();
    assert.ok(clients.length > 0 && clients.every((cn) => cn === 'busbar-client'), `client certificates: ${clients}`);

    // A CA that did not sign the server: refused, never connected.
    await assert.rejects(
      MessageBus.connect({
        broker,
        tls: { ca: other.ca, cert: good.clientCert, key: good.clientKey },
        options: { connectTimeoutMs: 1500 },
      }),
      { code: 'BUSBAR_ERR_CONNECTION' },
    );
  });
});
