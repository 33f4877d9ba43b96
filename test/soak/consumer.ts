/**
 * A soak consumer process: bus.handle() on the soak type; for each message prints its sequence number (one line,
 * written before the ack, so a kill between the two shows as a redelivery, never as a loss).
 * argv: broker URL, message type, group, ackTimeoutMs
 */
import { MessageBus } from '../../src/index.ts';

const [url, type, group, ackTimeoutMs] = process.argv.slice(2);
const bus = await MessageBus.connect(url!);
const handler = bus.handle(type!, { group: group!, concurrency: 64, ackTimeoutMs: Number(ackTimeoutMs) }, (message) => {
  // A synchronous write to the pipe: once the handler returns (and the ack goes out) the line is in the pipe.
  process.stdout.write(`${(message.body as { n: number }).n}\n`);
});
await handler.ready;
process.stdout.write('ready\n');
