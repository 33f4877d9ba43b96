import { execFileSync } from 'node:child_process';
import { Admin, Producer, stringSerializers } from '@platformatic/kafka';
const endpoints = [1, 2, 3].map((n) => `127.0.0.1:${9200 + 10 * n}`);
const say = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 23)} ${s}\n`);
const admin = new Admin({ clientId: 'x', bootstrapBrokers: endpoints });
const topic = `raw-${Date.now()}`;
await admin.createTopics({ topics: [topic], partitions: 1, replicas: 3 });
const producer = new Producer({ clientId: 'p', bootstrapBrokers: endpoints, idempotent: true, acks: -1, retryDelay: 250, serializers: stringSerializers });
producer.on('error', (e) => say(`producer error event ${e}`));
let n = 0;
let killed = 0;
setTimeout(() => { say(`deadline: sent ${n}`); process.exit(3); }, 40_000);
(async () => {
  for (;;) {
    try {
      await producer.send({ messages: [{ topic, value: String(n) }] });
      n++;
      if (killed && n % 50 === 0) say(`sent ${n} after kill`);
    } catch (e) { say(`send error ${(e as Error).message} ${(e as any).code} ${(e as any).errors?.map?.((x: any) => x.message)}`); await new Promise((r) => setTimeout(r, 100)); }
  }
})();
while (n < 50) await new Promise((r) => setTimeout(r, 50));
const md = await admin.metadata({ topics: [topic], forceUpdate: true });
const leader = md.topics.get(topic)!.partitions[0].leader;
say(`killing ${leader} at n=${n}`);
execFileSync('bash', ['/work/main/scripts/brokers/kafka-cluster', 'kill9', String(leader)]);
killed = Date.now();
const start = n;
while (n < start + 200) await new Promise((r) => setTimeout(r, 50));
say(`resumed: ${n - start} sends in ${Date.now() - killed} ms`);
process.exit(0);
