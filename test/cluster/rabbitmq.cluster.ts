/**
 * RabbitMQ, three private nodes (scripts/brokers/rabbitmq-cluster), quorum queues on all three: with a producer
 * and a consumer running, kill -9 the node they are connected to (busbar connects to the first listed endpoint
 * that answers), bring it back, then kill the leader of the group's quorum queue. busbar fails over by itself,
 * every message the cluster confirmed is delivered, and each killed node rejoins.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MessageBus } from '../../src/index.ts';
import { uniqueGroup, uniqueType } from '../conformance/suite.ts';
import { clusterScript, drill, until } from './drive.ts';

const cluster = clusterScript('rabbitmq-cluster', 300_000);
const NODES = [1, 2, 3];
const port = (n: number) => 5800 + n;
const URL_ALL = `amqp://guest:guest@${NODES.map((n) => `127.0.0.1:${port(n)}`).join(',')}`;
const nodeOfName = (name: string) => Number(/busbar-r(\d)@/.exec(name)?.[1]);

/** rabbitmqctl's JSON answer, asked of a node that is up. */
async function ctl(up: number, ...args: string[]): Promise<Record<string, unknown>[]> {
  return JSON.parse(await cluster('ctl', String(up), '-q', ...args, '--formatter', 'json')) as Record<
    string,
    unknown
  >[];
}

describe('RabbitMQ cluster: three nodes, quorum queues', { concurrency: 1, timeout: 1_200_000 }, () => {
  before(() => cluster('start'));
  after(() => cluster('reset'));

  it('kill -9 the connected node, then the queue leader: every confirmed message arrives; nodes rejoin', async (t) => {
    const type = uniqueType('cluster');
    const group = uniqueGroup();
    const producerBus = await MessageBus.connect({ broker: URL_ALL });
    const consumerBus = await MessageBus.connect({ broker: URL_ALL, ackTimeoutMs: 10_000 });
    t.after(() => Promise.allSettled([producerBus.close(), consumerBus.close()]));
    await producerBus.admin().registerMessageType(type);
    const d = drill(producerBus, consumerBus, type, group);

    await until('the group queue', () => d.confirmed.size >= 20, 60_000);
    const ports = (await ctl(2, 'list_connections', 'port')).map((c) => Number(c.port));
    assert.ok(
      ports.length > 0 && ports.every((p) => p === port(1)),
      `connections on ports ${ports}, not all on node 1`,
    );
    const first = await d.fault('kill -9 node 1 (the connected one)', () => cluster('kill9', '1').then(() => {}));
    await cluster('start-node', '1');

    const queue = `busbar:${type}:${group}`;
    const queues = await ctl(1, 'list_queues', 'name', 'leader', 'members');
    const leader = nodeOfName(String(queues.find((q) => q.name === queue)?.leader));
    assert.ok(leader >= 1 && leader <= 3, `no leader reported for ${queue}`);
    const second = await d.fault(`kill -9 node ${leader} (the quorum queue's leader)`, () =>
      cluster('kill9', String(leader)).then(() => {}),
    );
    await cluster('start-node', String(leader));

    const counts = await d.finish();
    for (const r of [first, second]) {
      t.diagnostic(`${r.fault}: producer resumed after ${r.producerMs} ms, consumer after ${r.consumerMs} ms`);
    }
    t.diagnostic(
      `confirmed ${counts.confirmed}, received ${counts.received} distinct, ${counts.duplicates} more than once`,
    );
    assert.deepEqual(counts.missing, [], `${counts.missing.length} confirmed messages never arrived`);
    // Both killed nodes are members of the queue again and the cluster runs all three.
    const members = (await ctl(1, 'list_queues', 'name', 'members')).find((q) => q.name === queue)?.members;
    assert.equal((members as string[]).length, 3, `queue members after rejoining: ${members}`);
    const status = JSON.parse(await cluster('ctl', '1', '-q', 'cluster_status', '--formatter', 'json')) as {
      running_nodes: string[];
    };
    assert.equal(status.running_nodes.length, 3, `running nodes: ${status.running_nodes}`);
    await producerBus.admin().deregisterMessageType(type);
  });
});
