/**
 * Apache Kafka, three KRaft nodes, replication factor 3 and min.insync.replicas 2
 * (scripts/brokers/kafka-cluster): with a producer (acks=all) and a consumer group running, kill -9 the leader of
 * the type's partition, which both of them talk to, bring it back, then kill the new leader. busbar fails over by
 * itself, every message the cluster confirmed is delivered, and each killed node rejoins the in-sync replicas.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Admin } from '@platformatic/kafka';
import { MessageBus } from '../../src/index.ts';
import { uniqueGroup, uniqueType } from '../conformance/suite.ts';
import { clusterScript, drill, say, until } from './drive.ts';

const cluster = clusterScript('kafka-cluster', 240_000);
const NODES = [1, 2, 3];
const endpoints = NODES.map((n) => `127.0.0.1:${9200 + 10 * n}`);
const URL_ALL = `kafka://${endpoints.join(',')}?replicas=3&partitions=1`;

describe('Kafka cluster: three KRaft nodes, RF 3, min ISR 2', { concurrency: 1, timeout: 900_000 }, () => {
  let admin: Admin;
  before(async () => {
    await cluster('start');
    admin = new Admin({ clientId: 'busbar-cluster-test', bootstrapBrokers: endpoints, retries: 20, retryDelay: 500 });
  });
  after(async () => {
    await admin?.close().catch(() => {});
    await cluster('reset');
  });

  const partition = async (topic: string) => {
    const metadata = await admin.metadata({ topics: [topic], forceUpdate: true });
    const p = metadata.topics.get(topic)?.partitions[0];
    if (!p) throw new Error(`no metadata for ${topic}`);
    return p;
  };

  it('kill -9 the partition leader twice: every confirmed message arrives; nodes rejoin the ISR', async (t) => {
    const type = uniqueType('cluster');
    const group = uniqueGroup();
    say('connecting');
    const producerBus = await MessageBus.connect({ broker: URL_ALL });
    const consumerBus = await MessageBus.connect({ broker: URL_ALL, ackTimeoutMs: 10_000 });
    t.after(() => Promise.allSettled([producerBus.close(), consumerBus.close()]));
    await producerBus.admin().registerMessageType(type);
    say(`registered ${type}`);
    const initial = await partition(type);
    assert.equal(initial.replicas.length, 3, 'the type was not created with three replicas');
    const d = drill(producerBus, consumerBus, type, group);

    const results = [];
    for (let round = 1; round <= 2; round++) {
      const { leader } = await partition(type);
      results.push(
        await d.fault(`kill -9 node ${leader} (the partition leader)`, () => cluster('kill9', String(leader))),
      );
      say(`starting node ${leader} again`);
      await cluster('start-node', String(leader));
      say(`node ${leader} started; waiting for it to rejoin the ISR`);
      // Rejoining means catching up: the node is back in the in-sync replicas (metadata is asked every 500 ms).
      let isr: number[] = [];
      const poll = setInterval(() => {
        partition(type).then(
          (p) => (isr = p.isr),
          () => {},
        );
      }, 500);
      await until(`node ${leader} back in the in-sync replicas`, () => isr.includes(leader), 120_000).finally(() =>
        clearInterval(poll),
      );
    }

    const counts = await d.finish();
    for (const r of results) {
      t.diagnostic(`${r.fault}: producer resumed after ${r.producerMs} ms, consumer after ${r.consumerMs} ms`);
    }
    t.diagnostic(
      `confirmed ${counts.confirmed}, received ${counts.received} distinct, ${counts.duplicates} more than once`,
    );
    assert.deepEqual(counts.missing, [], `${counts.missing.length} confirmed messages never arrived`);
    await producerBus.admin().deregisterMessageType(type);
  });
});
