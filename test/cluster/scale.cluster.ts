/**
 * Scaling out on the clustered brokers: consumers in several processes in one group share the load (each gets a
 * part, the union is everything sent, nothing arrives twice), and adding partitions or members spreads it.
 * - Kafka (scripts/brokers/kafka-cluster, RF 3): a type with 2 partitions read by 3 member processes: two members
 *   share it and the third waits idle (a partition has one reader in a group); grow the type to 6 partitions and
 *   add a 4th member: all four share the next batch.
 * - RabbitMQ (scripts/brokers/rabbitmq-cluster, quorum queues): 3 competing member processes on the group's queue
 *   each get a part; a 4th member that joins takes its part of the next batch.
 * Every member is a child process (test/cluster/scale-member.ts) that writes each body it receives to its own file.
 * The test decides by counts: it waits until the files hold every message sent, never for a time.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Admin } from '@platformatic/kafka';
import { MessageBus, message } from '../../src/index.ts';
import { uniqueGroup, uniqueType } from '../conformance/suite.ts';
import { killAll, startChild, until } from '../helpers/child.ts';
import { clusterScript, say } from './drive.ts';

const MEMBER = new URL('./scale-member.ts', import.meta.url).pathname;
const BATCH = 600;

/** The members of one group: child processes, each with the file of bodies it received. */
class Members {
  readonly dir = mkdtempSync(join(tmpdir(), 'busbar-scale-'));
  readonly files: string[] = [];
  readonly url: string;
  readonly type: string;
  readonly group: string;
  constructor(url: string, type: string, group: string) {
    this.url = url;
    this.type = type;
    this.group = group;
  }

  /** Starts `n` more members and waits until each is attached to the group. */
  async add(n: number): Promise<void> {
    const started = [];
    for (let i = 0; i < n; i++) {
      const file = join(this.dir, `member-${this.files.length + 1}.txt`);
      this.files.push(file);
      started.push(startChild(MEMBER, [this.url, this.type, this.group, file]));
    }
    await Promise.all(started.map((c) => c.waitFor(/^ready$/, 180_000)));
  }

  /** The bodies each member received, in member order. */
  received(): number[][] {
    return this.files.map((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map(Number),
    );
  }

  /** Waits until the members together received every body in [from, to); returns each member's share of them. */
  async shares(from: number, to: number): Promise<number[]> {
    const all = () =>
      new Set(
        this.received()
          .flat()
          .filter((i) => i >= from && i < to),
      ).size;
    await until(() => all() === to - from, 180_000, `all of messages ${from}..${to - 1}`, 100);
    return this.received().map((got) => got.filter((i) => i >= from && i < to).length);
  }

  /** Bodies received more than once, by all members together. */
  duplicates(): number[] {
    const seen = new Map<number, number>();
    for (const i of this.received().flat()) seen.set(i, (seen.get(i) ?? 0) + 1);
    return [...seen].filter(([, n]) => n > 1).map(([i]) => i);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Sends bodies from..to-1, each with its own key (so a keyed type spreads them over every partition). */
async function send(bus: MessageBus, type: string, from: number, to: number): Promise<void> {
  const producer = bus.producer({ messageType: type });
  for (let i = from; i < to; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(to, i + 50); j++) batch.push(message(j, { key: `k${j}` }));
    await producer.send(batch);
  }
}

describe('scale on the Kafka cluster: partitions and group members', { concurrency: 1, timeout: 900_000 }, () => {
  const endpoints = [1, 2, 3].map((n) => `127.0.0.1:${9200 + 10 * n}`);
  const URL_ALL = `kafka://${endpoints.join(',')}?replicas=3`;
  const cluster = clusterScript('kafka-cluster', 240_000);
  let admin: Admin | undefined;
  let members: Members | undefined;
  before(async () => {
    say('starting the Kafka cluster');
    await cluster('start');
    admin = new Admin({ clientId: 'busbar-scale-test', bootstrapBrokers: endpoints, retries: 20, retryDelay: 500 });
  });
  after(async () => {
    await killAll();
    members?.remove();
    await admin?.close().catch(() => {});
    await cluster('reset');
  });

  /** Waits until the group has settled with `n` members (every member holds its assignment). */
  const stable = async (group: string, n: number) => {
    let settled = false;
    const deadline = Date.now() + 180_000;
    while (!settled) {
      if (Date.now() > deadline) throw new Error(`group ${group} did not settle with ${n} members`);
      const g = (await admin!.describeGroups({ groups: [group] })).get(group);
      settled = g?.state === 'STABLE' && g.members.size === n;
      if (!settled) await new Promise((resolve) => setTimeout(resolve, 250));
    }
  };

  it('3 members on 2 partitions: two share, one idles; 6 partitions and a 4th member: all four share', async (t) => {
    const type = uniqueType('scale');
    const group = uniqueGroup();
    const bus = await MessageBus.connect({ broker: URL_ALL });
    t.after(() => bus.close());
    const created = await bus.admin().registerMessageType(type, { partitions: 2 });
    assert.equal(created.partitions, 2);

    members = new Members(URL_ALL, type, group);
    await members.add(3);
    await stable(group, 3);
    say('3 members in the group; sending the first batch');
    await send(bus, type, 0, BATCH);
    const first = await members.shares(0, BATCH);
    t.diagnostic(`2 partitions, 3 members: shares ${first.join(' / ')} of ${BATCH}`);
    assert.equal(first.filter((n) => n > 0).length, 2, `with 2 partitions, exactly 2 members read: ${first}`);

    const grown = await bus.admin().registerMessageType(type, { partitions: 6 });
    assert.equal(grown.outcome, 'grown');
    await members.add(1);
    await stable(group, 4);
    say('grown to 6 partitions, 4 members; sending the second batch');
    // A new connection: it looks the 6 partitions up rather than trust what the first one learned.
    const bus6 = await MessageBus.connect({ broker: URL_ALL });
    t.after(() => bus6.close());
    await send(bus6, type, BATCH, 2 * BATCH);
    const second = await members.shares(BATCH, 2 * BATCH);
    t.diagnostic(`6 partitions, 4 members: shares ${second.join(' / ')} of ${BATCH}`);
    assert.ok(
      second.every((n) => n > 0),
      `every member reads once there are enough partitions: ${second}`,
    );
    assert.deepEqual(members.duplicates(), [], 'no message twice outside faults');
    await bus.admin().deregisterMessageType(type);
  });
});

describe('scale on the RabbitMQ cluster: competing members on a quorum queue', {
  concurrency: 1,
  timeout: 900_000,
}, () => {
  const URL_ALL = `amqp://guest:guest@${[1, 2, 3].map((n) => `127.0.0.1:${5800 + n}`).join(',')}`;
  const cluster = clusterScript('rabbitmq-cluster', 300_000);
  let members: Members | undefined;
  before(async () => {
    say('starting the RabbitMQ cluster');
    await cluster('start');
  });
  after(async () => {
    await killAll();
    members?.remove();
    await cluster('reset');
  });

  it('3 members each get a part; a 4th member takes its part of the next batch', async (t) => {
    const type = uniqueType('scale');
    const group = uniqueGroup();
    const bus = await MessageBus.connect({ broker: URL_ALL });
    t.after(() => bus.close());
    await bus.admin().registerMessageType(type);

    members = new Members(URL_ALL, type, group);
    await members.add(3);
    say('3 members on the queue; sending the first batch');
    await send(bus, type, 0, BATCH);
    const first = await members.shares(0, BATCH);
    t.diagnostic(`3 members: shares ${first.join(' / ')} of ${BATCH}`);
    assert.ok(
      first.every((n) => n > 0),
      `every member gets a part: ${first}`,
    );

    await members.add(1);
    say('4 members; sending the second batch');
    await send(bus, type, BATCH, 2 * BATCH);
    const second = await members.shares(BATCH, 2 * BATCH);
    t.diagnostic(`4 members: shares ${second.join(' / ')} of ${BATCH}`);
    assert.ok(
      second.every((n) => n > 0),
      `every member gets a part: ${second}`,
    );
    assert.deepEqual(members.duplicates(), [], 'no message twice outside faults');
    await bus.admin().deregisterMessageType(type);
  });
});
