/**
 * One member of a consumer group, as its own process, for the scale test (test/cluster/scale.cluster.ts):
 * `scale-member.ts <broker URL> <type> <group> <file>` joins the group, prints `ready` once attached, then appends
 * every body it receives to <file> (synchronously, so nothing is lost when the test kills it) and acks it.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { MessageBus } from '../../src/index.ts';

const [url, type, group, file] = process.argv.slice(2) as [string, string, string, string];
writeFileSync(file, '');
const bus = await MessageBus.connect({ broker: url, ackTimeoutMs: 30_000 });
const consumer = bus.consumer({ consumerGroup: group, messageTypes: [type], prefetch: 10, offset: 'earliest' });
await consumer.ready;
process.stdout.write('ready\n');

let stopping = false;
process.on('SIGTERM', () => {
  stopping = true;
});
while (!stopping) {
  const m = await consumer.receive({ timeout: 250 });
  if (!m) continue;
  appendFileSync(file, `${m.body as number}\n`);
  await m.ack();
}
await consumer.close();
await bus.close();
process.exit(0);
