/**
 * A plain client's `time` and `specversion` on every transport: a time with an offset is received in UTC `Z` form, one
 * that is not RFC 3339 becomes the receipt time and is kept in `busbar-invalid-time`, a specversion other than 1.0 is
 * kept in `busbar-original-specversion`. Checked once in completeEnvelope, which every decoder ends in, and through the
 * real `busbar receive` against each broker with that broker's own client library.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it, type TestContext } from 'node:test';
import { jetstream } from '@nats-io/jetstream';
import { connect as natsConnect, headers as natsHeaders } from '@nats-io/transport-node';
import { Producer } from '@platformatic/kafka';
import amqp from 'amqplib';
import { createClient } from 'redis';
import { completeEnvelope, RECEIVED_HEADERS } from '../../src/message/envelope.ts';
import { normaliseTime } from '../../src/transport/cloudevents.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const name = (prefix: string) => `ce-${prefix}-${randomUUID().slice(0, 8)}`;

describe('time and specversion from other producers (every decoder ends in completeEnvelope)', () => {
  it('writes a valid time with an offset in UTC Z form, keeping its fraction', () => {
    assert.equal(normaliseTime('2026-01-02T03:04:05.678+01:00'), '2026-01-02T02:04:05.678Z');
    assert.equal(normaliseTime('2026-01-02T03:04:05+00:00'), '2026-01-02T03:04:05Z');
    assert.equal(normaliseTime('2026-01-02T03:04:05.123456-05:30'), '2026-01-02T08:34:05.123456Z');
    assert.equal(normaliseTime('2026-01-02 03:04:05z'), '2026-01-02T03:04:05Z');
    assert.equal(normaliseTime('2026-01-02T03:04:05.678Z'), '2026-01-02T03:04:05.678Z');
    assert.equal(normaliseTime('2024-02-29T23:59:60Z'), '2024-03-01T00:00:00Z', 'a leap second');
    const bad = [
      'not a time',
      '2026-02-29T00:00:00Z',
      '2026-01-02T24:00:00Z',
      '2026-01-02T03:04:05',
      '2026-01-02T03:04:05.Z',
    ];
    for (const time of [...bad, '2026-01-02T03:04:05.1x2Z', '2026-01-02T03:04:05+24:00', '']) {
      assert.equal(normaliseTime(time), undefined, time);
    }
  });

  it('keeps a message whose time is not RFC 3339, with the receipt time and the original in a header', () => {
    const before = Date.now();
    const message = completeEnvelope({ time: 'not a time', specversion: '0.3', body: new Uint8Array() }, 't');
    assert.ok(Date.parse(message.time) >= before, message.time);
    assert.equal(message.headers[RECEIVED_HEADERS.invalidTime], 'not a time');
    assert.equal(message.headers[RECEIVED_HEADERS.originalSpecversion], '0.3');
    const plain = completeEnvelope(
      { time: '2026-01-02T03:04:05+01:00', specversion: '1.0', body: new Uint8Array() },
      't',
    );
    assert.equal(plain.time, '2026-01-02T02:04:05Z');
    assert.deepEqual(plain.headers, {});
  });
});

/** Runs the real `busbar` command. */
function busbar(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const bin = new URL('../../bin/busbar.js', import.meta.url).pathname;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { ...process.env, BUSBAR_BROKER: '', BUSBAR_CONFIG: '' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Two messages as a plain client of each transport writes them: odd time and specversion, then a time with +00:00. */
interface Plain {
  id: string;
  time: string;
  specversion: string;
}
const PLAIN: Plain[] = [
  { id: 'odd-1', time: 'not a time', specversion: '0.3' },
  { id: 'offset-1', time: '2026-05-06T07:08:09.250+00:00', specversion: '1.0' },
];

interface PlainClient {
  name: string;
  url(): string;
  reachable(): Promise<void>;
  /** Publishes PLAIN into `type` (which `busbar types create` made), as docs/wire/<transport>.md tells a plain client. */
  publish(t: TestContext, url: string, type: string): Promise<void>;
  /** False where the wire has no place for specversion (embedded's table). */
  carriesSpecversion: boolean;
}

const reach = (url: string, port: number) => () => {
  const { host, port: p } = hostPort(url, port);
  return tcpReachable(host, p);
};

const PLAIN_CLIENTS: PlainClient[] = [
  {
    name: 'kafka',
    url: () => BROKERS.kafka,
    reachable: reach(BROKERS.kafka, 9092),
    carriesSpecversion: true,
    async publish(t, url, type) {
      const { host, port } = hostPort(url, 9092);
      const producer = new Producer({ clientId: 'plain', bootstrapBrokers: [`${host}:${port}`] });
      t.after(() => producer.close());
      for (const m of PLAIN) {
        const headers = { ce_id: m.id, ce_time: m.time, ce_specversion: m.specversion };
        await producer.send({
          messages: [
            {
              topic: type,
              value: Buffer.from(m.id),
              headers: new Map(Object.entries(headers).map(([k, v]) => [Buffer.from(k), Buffer.from(v)])),
            },
          ],
        });
      }
    },
  },
  {
    name: 'redis',
    url: () => BROKERS.redis,
    reachable: reach(BROKERS.redis, 6379),
    carriesSpecversion: true,
    async publish(t, url, type) {
      const client = createClient({ url });
      await client.connect();
      t.after(() => client.close());
      for (const m of PLAIN) {
        await client.xAdd(`busbar:{${type}}`, '*', {
          data: m.id,
          ce_id: m.id,
          ce_time: m.time,
          ce_specversion: m.specversion,
        });
      }
    },
  },
  {
    name: 'nats',
    url: () => BROKERS.nats,
    reachable: reach(BROKERS.nats, 4222),
    carriesSpecversion: true,
    async publish(t, url, type) {
      const { host, port } = hostPort(url, 4222);
      const nc = await natsConnect({ servers: [`${host}:${port}`] });
      t.after(() => nc.close());
      for (const m of PLAIN) {
        const h = natsHeaders();
        h.set('ce-id', m.id);
        h.set('ce-time', m.time);
        h.set('ce-specversion', m.specversion);
        await jetstream(nc).publish(`busbar.${type}`, m.id, { headers: h });
      }
    },
  },
  {
    name: 'rabbitmq',
    url: () => BROKERS.rabbitmq,
    reachable: reach(BROKERS.rabbitmq, 5672),
    carriesSpecversion: true,
    async publish(t, url, type) {
      const connection = await amqp.connect(url);
      t.after(() => connection.close());
      const channel = await connection.createConfirmChannel();
      for (const m of PLAIN) {
        const headers = {
          'cloudEvents:id': m.id,
          'cloudEvents:time': m.time,
          'cloudEvents:specversion': m.specversion,
        };
        channel.publish('busbar', type, Buffer.from(m.id), { persistent: true, headers });
      }
      await channel.waitForConfirms();
    },
  },
  {
    name: 'embedded',
    url() {
      const dir = mkdtempSync(join(tmpdir(), 'busbar-ce-'));
      process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
      return `embedded:${join(dir, 'bus.db')}`;
    },
    reachable: async () => {},
    carriesSpecversion: false,
    async publish(t, url, type) {
      const db = new DatabaseSync(url.slice('embedded:'.length));
      t.after(() => db.close());
      db.exec('BEGIN IMMEDIATE');
      const insert = db.prepare(
        'INSERT INTO messages (type, id, source, time, content_type, key, headers, body, size, published_ms) ' +
          "VALUES (?, ?, 'plain', ?, 'text/plain', NULL, NULL, ?, length(?), ?)",
      );
      for (const m of PLAIN) insert.run(type, m.id, m.time, m.id, m.id, Date.now());
      db.prepare('UPDATE types SET depth = depth + 2, bytes = bytes + 16 WHERE name = ?').run(type);
      db.exec('COMMIT');
    },
  },
];

describe('busbar receive checks a plain client time and specversion on every transport', { timeout: 180_000 }, () => {
  for (const client of PLAIN_CLIENTS) {
    it(client.name, async (t) => {
      const skip = await brokerSkipReason(client.name, client.reachable);
      if (skip) return t.skip(skip);
      const url = client.url();
      const type = name(client.name);
      const created = await busbar(['types', 'create', type, '--broker', url]);
      assert.equal(created.code, 0, created.stderr);
      t.after(() => busbar(['types', 'delete', type, '--broker', url]));
      await client.publish(t, url, type);
      const before = Date.now();
      const got = await busbar([
        'receive',
        type,
        '--group',
        name('g'),
        '--count',
        '2',
        '--offset',
        'earliest',
        '--json',
        '--timeout',
        '60000',
        '--broker',
        url,
      ]);
      assert.equal(got.code, 0, got.stderr);
      const lines = got.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line));
      const odd = lines.find((m) => m.id === 'odd-1');
      const offset = lines.find((m) => m.id === 'offset-1');
      assert.ok(odd && offset, got.stdout);
      assert.ok(Date.parse(odd.time) >= before - 60_000, `time ${odd.time} is not the receipt time`);
      assert.equal(normaliseTime(odd.time), odd.time);
      assert.equal(odd.headers[RECEIVED_HEADERS.invalidTime], 'not a time');
      if (client.carriesSpecversion) assert.equal(odd.headers[RECEIVED_HEADERS.originalSpecversion], '0.3');
      assert.equal(offset.time, '2026-05-06T07:08:09.250Z');
      assert.deepEqual(offset.headers, {});
    });
  }
});
