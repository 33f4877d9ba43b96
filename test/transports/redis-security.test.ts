/**
 * TLS (`rediss://`, CA / client certificate / key from TransportConfig.tls) and credentials (an ACL user and
 * password) against a private redis-server started with a throwaway CA made by openssl.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TransportConfig } from '../../src/transport/contract.ts';
import createRedisTransport from '../../src/transports/redis/index.ts';
import { PersistentRedis } from '../helpers/redis-aof.ts';
import { consumeOptions, freshGroup, message, privateServerSkipReason, take } from './redis-helpers.ts';

let skip: string | undefined;
let server: PersistentRedis | undefined;
let tlsPort = 0;
let certs = '';

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: certs, stdio: 'ignore' });
}

/** A CA, a server certificate for localhost / 127.0.0.1 and a client certificate, all signed by the CA. */
function makeCertificates(): void {
  certs = mkdtempSync(join(tmpdir(), 'busbar-redis-tls-'));
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=busbar-test-ca',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  );
  writeFileSync(join(certs, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  for (const name of ['server', 'client']) {
    openssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      `/CN=${name === 'server' ? 'localhost' : 'busbar'}`,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
    );
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '1',
      '-out',
      `${name}.crt`,
      ...(name === 'server' ? ['-extfile', 'san.ext'] : []),
    );
  }
}

function config(url: string, extra: Partial<TransportConfig> = {}): TransportConfig {
  return { url, endpoints: [], options: { connectTimeoutMs: 2000 }, ...extra };
}

const tls = () => ({ ca: join(certs, 'ca.crt'), cert: join(certs, 'client.crt'), key: join(certs, 'client.key') });

describe('redis transport: TLS and credentials (private redis-server)', { concurrency: 1 }, () => {
  before(async () => {
    skip = await privateServerSkipReason();
    if (skip) return;
    makeCertificates();
    tlsPort = await PersistentRedis.freePort();
    server = await PersistentRedis.start([
      '--tls-port',
      String(tlsPort),
      '--tls-cert-file',
      join(certs, 'server.crt'),
      '--tls-key-file',
      join(certs, 'server.key'),
      '--tls-ca-cert-file',
      join(certs, 'ca.crt'),
      '--tls-auth-clients',
      'yes',
      '--user',
      'default',
      'off',
      '--user',
      'limited',
      'on',
      '>pw',
      '~*',
      '&*',
      '+@all',
      '-client',
      '--user',
      'app',
      'on',
      '>s3cret',
      '~*',
      '&*',
      '+@all',
    ]);
  });
  after(async () => {
    await server?.stop();
    if (certs) rmSync(certs, { recursive: true, force: true });
  });

  it('rediss:// with the CA, client certificate and key, as an ACL user: a round trip', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await createRedisTransport(
      config(`rediss://localhost:${tlsPort}`, { username: 'app', password: 's3cret', tls: tls() }),
    );
    t.after(() => transport.close());
    const type = `tls-${Date.now()}`;
    const sub = transport.consume(consumeOptions(type, freshGroup()));
    t.after(() => sub.close());
    await sub.ready;
    await transport.publish(type, [message(type, 'over tls')]);
    const [d] = await take(sub, 1);
    assert.equal(Buffer.from(d!.message.body).toString(), 'over tls');
    await d!.ack();
  });

  it('a user without CLIENT (no CLIENT ID / UNBLOCK): consuming, nack and redelivery still work', async (t) => {
    if (skip) return t.skip(skip);
    const transport = await createRedisTransport(
      config(`redis://127.0.0.1:${server!.port}`, { username: 'limited', password: 'pw' }),
    );
    t.after(() => transport.close());
    const type = `limited-${Date.now()}`;
    const sub = transport.consume(consumeOptions(type, freshGroup()));
    t.after(() => sub.close());
    await sub.ready;
    await transport.publish(type, [message(type, 'again')]);
    const [first] = await take(sub, 1);
    assert.ok(first);
    await first.nack();
    const [second] = await take(sub, 1, 30_000);
    assert.ok(second, 'not redelivered after a nack');
    assert.equal(second.attempt, 2);
    await second.ack();
  });

  it('wrong password: BUSBAR_ERR_AUTH at once; credentials in the URL work too', async (t) => {
    if (skip) return t.skip(skip);
    await assert.rejects(
      createRedisTransport(
        config(`rediss://app:wrong@localhost:${tlsPort}`, { username: 'app', password: 'wrong', tls: tls() }),
      ),
      { code: 'BUSBAR_ERR_AUTH' },
    );
    const transport = await createRedisTransport(
      config(`redis://app:s3cret@127.0.0.1:${server!.port}`, { username: 'app', password: 's3cret' }),
    );
    await transport.admin.listTypes();
    await transport.close();
  });

  it('TLS without the client certificate the server requires: a connection error that says so', async (t) => {
    if (skip) return t.skip(skip);
    await assert.rejects(
      createRedisTransport(
        config(`rediss://localhost:${tlsPort}`, { username: 'app', password: 's3cret', tls: { ca: tls().ca } }),
      ),
      { code: 'BUSBAR_ERR_CONNECTION' },
    );
  });
});
