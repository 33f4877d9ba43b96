/**
 * NATS JetStream, three nodes, R3 streams (scripts/brokers/nats-cluster): with a producer and a consumer running,
 * kill -9 the node the producer is connected to, then the stream's leader. busbar fails over by itself, every
 * message JetStream confirmed is delivered, and each killed node comes back and rejoins.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MessageBus } from '../../src/index.ts';
import { streamName } from '../../src/transports/nats/names.ts';
import { uniqueGroup, uniqueType } from '../conformance/suite.ts';
import { clusterScript, drill } from './drive.ts';

const cluster = clusterScript('nats-cluster', 120_000);
const NODES = [1, 2, 3];
const clientPort = (n: number) => 4300 + n;
const monitor = async (n: number, path: string) => {
  const response = await fetch(`http://127.0.0.1:${4500 + n}${path}`, { signal: AbortSignal.timeout(5000) });
  return (await response.json()) as Record<string, unknown>;
};
const url = (name: string) =>
  `nats://${NODES.map((n) => `127.0.0.1:${clientPort(n)}`).join(',')}?replicas=3&name=${name}`;

/** The node holding the connection named `name`. */
async function nodeOf(name: string): Promise<number> {
  for (const n of NODES) {
    const connz = await monitor(n, '/connz').catch(() => undefined);
    const connections = (connz?.connections ?? []) as { name?: string }[];
    if (connections.some((c) => c.name === name)) return n;
  }
  throw new Error(`no node holds a connection named ${name}`);
}

/** The node leading the stream of `type`, as the nodes report it. */
async function leaderOf(type: string): Promise<number> {
  for (const n of NODES) {
    const jsz = await monitor(n, '/jsz?accounts=true&streams=true').catch(() => undefined);
    for (const account of (jsz?.account_details ?? []) as { stream_detail?: unknown[] }[]) {
      for (const stream of (account.stream_detail ?? []) as { name: string; cluster?: { leader?: string } }[]) {
        const leader = stream.name === streamName(type) ? stream.cluster?.leader : undefined;
        if (leader) return Number(leader.replace('busbar-n', ''));
      }
    }
  }
  throw new Error(`no node reports a leader for the stream of ${type}`);
}

describe('NATS JetStream cluster: three nodes, R3 streams', { concurrency: 1, timeout: 900_000 }, () => {
  before(() => cluster('start'));
  after(() => cluster('reset'));

  it('kill -9 the producer node, then the stream leader: every confirmed message arrives; nodes rejoin', async (t) => {
    const type = uniqueType('cluster');
    const group = uniqueGroup();
    const producerBus = await MessageBus.connect({ broker: url('cluster-producer') });
    const consumerBus = await MessageBus.connect({ broker: url('cluster-consumer'), ackTimeoutMs: 10_000 });
    t.after(() => Promise.allSettled([producerBus.close(), consumerBus.close()]));
    await producerBus.admin().registerMessageType(type);
    const d = drill(producerBus, consumerBus, type, group);

    const producerNode = await nodeOf('cluster-producer');
    const first = await d.fault(`kill -9 node ${producerNode} (the producer's)`, () =>
      cluster('kill9', String(producerNode)),
    );
    await cluster('start-node', String(producerNode));

    const leader = await leaderOf(type);
    const second = await d.fault(`kill -9 node ${leader} (the stream leader)`, () => cluster('kill9', String(leader)));
    await cluster('start-node', String(leader));

    const counts = await d.finish();
    for (const r of [first, second]) {
      t.diagnostic(`${r.fault}: producer resumed after ${r.producerMs} ms, consumer after ${r.consumerMs} ms`);
    }
    t.diagnostic(
      `confirmed ${counts.confirmed}, received ${counts.received} distinct, ${counts.duplicates} more than once`,
    );
    assert.deepEqual(counts.missing, [], `${counts.missing.length} confirmed messages never arrived`);
    // The rejoined nodes hold the stream again: each reports it.
    for (const n of NODES) {
      const jsz = await monitor(n, '/jsz');
      assert.ok(Number(jsz.streams) >= 1, `node ${n} holds no stream after rejoining`);
    }
    await producerBus.admin().deregisterMessageType(type);
  });
});
