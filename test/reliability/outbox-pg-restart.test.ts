/**
 * PostgreSQL restarted under the outbox (pg_ctl restart -m immediate: a crash, recovery on start) while the app
 * writes and an in-process relay sends. Never the machine's own server: the test makes a PRIVATE cluster with
 * initdb in a temp dir, on its own port, run as the postgres user, and removes it afterwards. Counted by id: every
 * transaction the app saw commit is delivered; anything else delivered belongs to a COMMIT whose answer was lost
 * with the connection (it may have committed); repeats carry the same ids.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { MessageBus, PgOutbox } from '../../src/index.ts';

const BIN = process.env.BUSBAR_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as import('node:net').AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

function skipReason(): string | undefined {
  if (!existsSync(join(BIN, 'initdb'))) return `no initdb in ${BIN} (set BUSBAR_TEST_PG_BIN)`;
  if (userInfo().uid === 0 && spawnSync('id', ['postgres']).status !== 0)
    return 'running as root without a postgres user';
  return undefined;
}

/** Runs a PostgreSQL binary as the postgres user when we are root (initdb and postgres refuse to run as root). */
function asPostgres(command: string, args: string[]): void {
  const [file, argv] =
    userInfo().uid === 0
      ? ['runuser', ['-u', 'postgres', '--', join(BIN, command), ...args]]
      : [join(BIN, command), args];
  execFileSync(file, argv, { stdio: 'pipe', timeout: 60_000 });
}

test('PostgreSQL restart mid-stream: every committed message is delivered', {
  skip: skipReason(),
  timeout: 180_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'busbar-pg-restart-'));
  if (userInfo().uid === 0) chownSync(dir, Number(execFileSync('id', ['-u', 'postgres']).toString()), 0);
  const data = join(dir, 'data');
  const port = await freePort();
  const ctl = (...args: string[]) =>
    asPostgres('pg_ctl', ['-D', data, '-w', '-t', '60', '-l', join(dir, 'log'), ...args]);
  asPostgres('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync']);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=on`;
  ctl('-o', options, 'start');
  t.after(() => {
    try {
      ctl('-m', 'immediate', 'stop');
    } catch {}
    rmSync(dir, { recursive: true, force: true });
  });

  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const outbox = new PgOutbox({ connectionString: url, table: 'restart_outbox' });
  await outbox.install();
  const bus = await MessageBus.connect(`embedded:${join(dir, 'bus.db')}`);
  t.after(() => bus.close());
  t.after(() => outbox.close());
  const type = 'restart-orders';
  const relay = outbox.relay(bus, { pollMs: 100, maxBackoffMs: 500 });
  const relayErrors: string[] = [];
  relay.on('error', (e) => relayErrors.push(e.message));
  t.after(() => relay.close());

  // The app: transactions of 50 messages; an id counts as accepted once its COMMIT answered.
  const accepted = new Set<string>();
  const ambiguous = new Set<string>();
  let writing = true;
  let restarted = false;
  let committedAfterRestart = 0;
  const writer = (async () => {
    let client: pg.Client | undefined;
    while (writing) {
      try {
        if (!client) {
          client = new pg.Client({ connectionString: url });
          client.on('error', () => {});
          await client.connect();
        }
        await client.query('BEGIN');
        const ids = await outbox.sendBatch(
          client,
          type,
          Array.from({ length: 50 }, (_, i) => ({ body: { i } })),
        );
        try {
          await client.query('COMMIT');
        } catch (error) {
          for (const id of ids) ambiguous.add(id);
          throw error;
        }
        for (const id of ids) accepted.add(id);
        if (restarted) committedAfterRestart++;
      } catch {
        await client?.end().catch(() => {});
        client = undefined;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    await client?.end().catch(() => {});
  })();

  const relayed = (n: number) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (relay.relayed >= n) {
          relay.off('relayed', check);
          resolve();
        }
      };
      relay.on('relayed', check);
      check();
    });
  await relayed(2000);
  ctl('-m', 'immediate', '-o', options, 'restart');
  restarted = true;
  // The writer and the relay both come back by themselves.
  while (committedAfterRestart < 20) await new Promise((resolve) => setTimeout(resolve, 20));
  const relayedAtRestart = relay.relayed;
  await relayed(relayedAtRestart + 1);
  writing = false;
  await writer;
  while ((await outbox.pending()) > 0) await new Promise((resolve) => setTimeout(resolve, 20));
  await relay.close();

  const [stats] = await bus.admin().stats(type);
  const consumer = bus.consumer({ consumerGroup: 'count', messageTypes: [type], offset: 'earliest' });
  t.after(() => consumer.close());
  const seen = new Map<string, number>();
  const acks: Promise<void>[] = [];
  for (let read = 0; read < stats!.depth; read++) {
    const m = await consumer.receive({ timeout: 60_000 });
    assert.ok(m, `expected ${stats!.depth} messages, read ${read}`);
    seen.set(m.id, (seen.get(m.id) ?? 0) + 1);
    acks.push(m.ack());
    if (acks.length >= 500) await Promise.all(acks.splice(0));
  }
  await Promise.all(acks);

  const missing = [...accepted].filter((id) => !seen.has(id));
  const strangers = [...seen.keys()].filter((id) => !accepted.has(id) && !ambiguous.has(id));
  const repeats = stats!.depth - seen.size;
  t.diagnostic(
    `accepted ${accepted.size}, delivered ${seen.size} distinct (${stats!.depth} in all), repeats ${repeats}, ` +
      `ambiguous commits ${ambiguous.size} ids (${[...ambiguous].filter((id) => seen.has(id)).length} delivered), ` +
      `relay errors ${relayErrors.length}`,
  );
  assert.deepEqual(missing, [], 'every committed message is delivered');
  assert.deepEqual(strangers, [], 'nothing is delivered that the app did not write');
  assert.ok(relayErrors.length > 0, 'the relay saw the restart');
});
