/**
 * A soak consumer process: bus.handle() on the soak type; for each message appends its sequence number to a log
 * file (one line, written before the ack, so a kill between the two shows as a redelivery, never as a loss). A
 * synchronous file write, not stdout: Node writes to a pipe asynchronously, and kill -9 loses what it still holds.
 * argv: broker URL, message type, group, ackTimeoutMs, log file
 */
import { openSync, writeSync } from 'node:fs';
import { MessageBus } from '../../src/index.ts';

const [url, type, group, ackTimeoutMs, logFile] = process.argv.slice(2);
const log = openSync(logFile!, 'a');
const bus = await MessageBus.connect(url!);
const handler = bus.handle(type!, { group: group!, concurrency: 64, ackTimeoutMs: Number(ackTimeoutMs) }, (message) => {
  // In the file (the kernel's page cache) before the handler returns and the ack goes out.
  writeSync(log, `${(message.body as { n: number }).n}\n`);
});
await handler.ready;
process.stdout.write('ready\n');
