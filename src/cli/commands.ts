import { createInterface } from 'node:readline';
import { registrationLine } from '../bus/admin.ts';
import { MessageBus } from '../bus/bus.ts';
import type { Message } from '../bus/message.ts';
import { message as outgoing } from '../bus/producer.ts';
import { BusError } from '../errors.ts';
import { describeBroker } from '../server/banner.ts';
import type { TypeStats } from '../transport/contract.ts';
import { headers, integer, parse } from './args.ts';
import { Progress } from './progress.ts';

export interface CommandContext {
  out: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
}

async function connect(values: { broker?: string | undefined; config?: string | undefined }): Promise<MessageBus> {
  return MessageBus.connect({ broker: values.broker, config: values.config });
}

function requireArg(value: string | undefined, what: string, command: string): string {
  if (!value) throw new BusError('BUSBAR_ERR_USAGE', `missing ${what}: see 'busbar ${command} --help'`);
  return value;
}

const SEND_BATCH = 500;

export async function send(argv: string[], ctx: CommandContext): Promise<void> {
  const { values, positionals } = parse('send', argv, {
    key: { type: 'string' },
    header: { type: 'string', multiple: true },
    'content-type': { type: 'string' },
  });
  const type = requireArg(positionals[0], 'message type', 'send');
  const options = { key: values.key, headers: headers(values.header), contentType: values['content-type'] };
  const bus = await connect(values);
  try {
    const producer = bus.producer({ messageType: type, defaults: options });
    const bodies = positionals.slice(1);
    if (bodies.length > 0) {
      await producer.send(bodies.map((b) => outgoing(b)));
      return;
    }
    if (ctx.stdin.isTTY) {
      process.stderr.write(`busbar: reading messages for '${type}' from stdin, one per line; end with Ctrl-D\n`);
    }
    const progress = new Progress(`sending to ${type}`);
    let batch: string[] = [];
    let sent = 0;
    for await (const line of createInterface({ input: ctx.stdin, crlfDelay: Number.POSITIVE_INFINITY })) {
      batch.push(line);
      if (batch.length >= SEND_BATCH) {
        await producer.send(batch);
        sent += batch.length;
        batch = [];
        progress.update(sent);
      }
    }
    if (batch.length) await producer.send(batch);
    sent += batch.length;
    if (sent >= SEND_BATCH) progress.done(`sent ${sent} messages to ${type}`);
  } finally {
    await bus.close();
  }
}

function printable(message: Message): string {
  const body = message.body;
  if (typeof body === 'string') return body;
  if (body instanceof Uint8Array) return Buffer.from(body).toString('base64');
  return JSON.stringify(body);
}

export async function receive(argv: string[], ctx: CommandContext): Promise<void> {
  const { values, positionals } = parse('receive', argv, {
    group: { type: 'string', short: 'g' },
    count: { type: 'string', short: 'n' },
    timeout: { type: 'string', short: 't' },
    offset: { type: 'string' },
    'no-ack': { type: 'boolean' },
    'ack-timeout': { type: 'string' },
    json: { type: 'boolean' },
  });
  const type = requireArg(positionals[0], 'message type', 'receive');
  const group = requireArg(values.group, '--group', 'receive');
  const count = integer(values.count, 'count', 1);
  const timeout = integer(values.timeout, 'timeout', 1);
  const ackTimeoutMs = integer(values['ack-timeout'], 'ack-timeout', 1);
  if (values.offset !== undefined && values.offset !== 'earliest' && values.offset !== 'latest') {
    throw new BusError('BUSBAR_ERR_USAGE', `--offset takes earliest or latest, not '${values.offset}'`);
  }
  const noAck = values['no-ack'] === true;
  const bus = await connect(values);
  const consumer = bus.consumer({
    consumerGroup: group,
    messageTypes: [type],
    offset: values.offset as 'earliest' | 'latest' | undefined,
    ackTimeoutMs,
    prefetch: count === undefined ? 16 : Math.min(count, 16),
  });
  const stop = () => void consumer.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let received = 0;
  try {
    while (count === undefined || received < count) {
      const message = await consumer.receive({ timeout: timeout ?? 0 });
      if (!message) break;
      received++;
      const line = values.json ? JSON.stringify({ ...message.toJSON(), body: printable(message) }) : printable(message);
      await new Promise<void>((resolve, reject) => ctx.out.write(`${line}\n`, (e) => (e ? reject(e) : resolve())));
      if (!noAck) await message.ack();
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    // --no-ack leaves the messages leased, as a crashed consumer would: they return after the ack timeout.
    if (!noAck) await bus.close();
  }
}

export async function types(argv: string[], ctx: CommandContext): Promise<void> {
  const { values, positionals } = parse('types', argv, { partitions: { type: 'string' }, json: { type: 'boolean' } });
  const action = positionals[0] ?? 'list';
  const bus = await connect(values);
  try {
    const admin = bus.admin();
    if (action === 'list') {
      const list = await admin.listMessageTypes();
      if (values.json) for (const t of list) ctx.out.write(`${JSON.stringify(t)}\n`);
      else for (const t of list) ctx.out.write(`${t.type}\t${t.partitions} partition(s)\n`);
    } else if (action === 'create') {
      const partitions = integer(values.partitions, 'partitions', 1);
      const done = await admin.registerMessageType(requireArg(positionals[1], 'message type', 'types'), { partitions });
      ctx.out.write(`${registrationLine(done)}\n`);
    } else if (action === 'delete') {
      await admin.deregisterMessageType(requireArg(positionals[1], 'message type', 'types'));
    } else {
      throw new BusError(
        'BUSBAR_ERR_USAGE',
        `unknown action '${action}': use busbar types list|create <type>|delete <type>`,
      );
    }
  } finally {
    await bus.close();
  }
}

export async function purge(argv: string[]): Promise<void> {
  const { values, positionals } = parse('purge', argv, {});
  const type = requireArg(positionals[0], 'message type', 'purge');
  const bus = await connect(values);
  try {
    await bus.admin().purge(type);
  } finally {
    await bus.close();
  }
}

function formatStats(stats: TypeStats[]): string {
  const rows = [['type', 'group', 'depth', 'bytes', 'unread', 'inflight', 'oldest age']];
  const n = (v: number) => (v < 0 ? '?' : String(v));
  for (const t of stats) {
    rows.push([t.type, '-', n(t.depth), n(t.bytes), '', '', '']);
    for (const g of t.groups) {
      const age = g.oldestAgeMs === null ? '-' : `${(g.oldestAgeMs / 1000).toFixed(1)}s`;
      rows.push(['', g.group, '', '', n(g.unread), n(g.inflight), age]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export async function stats(argv: string[], ctx: CommandContext): Promise<void> {
  const { values, positionals } = parse('stats', argv, { json: { type: 'boolean' }, watch: { type: 'string' } });
  const intervalMs = values.watch === undefined ? undefined : (integer(values.watch || '2000', 'watch', 100) ?? 2000);
  const bus = await connect(values);
  let running = true;
  const stop = () => {
    running = false;
  };
  process.once('SIGINT', stop);
  try {
    do {
      const result = await bus.admin().stats(positionals[0]);
      if (values.json) ctx.out.write(`${JSON.stringify({ time: new Date().toISOString(), types: result })}\n`);
      else ctx.out.write(`${intervalMs ? '\x1b[2J\x1b[H' : ''}${formatStats(result)}\n`);
      if (intervalMs) await new Promise((resolve) => setTimeout(resolve, intervalMs));
    } while (intervalMs && running);
  } finally {
    process.off('SIGINT', stop);
    await bus.close();
  }
}

/** `npm start` until the REST gateway lands: a short send/receive round trip on the embedded broker. */
export async function demo(argv: string[], ctx: CommandContext): Promise<void> {
  const { values } = parse('demo', argv, {});
  const bus = await connect(values);
  try {
    const type = 'busbar-demo';
    const consumer = bus.consumer({ consumerGroup: 'demo', messageTypes: [type], offset: 'latest' });
    await consumer.ready;
    await bus.send(type, { hello: 'world', at: new Date().toISOString() });
    const message = await consumer.receive({ timeout: 5000 });
    if (!message) throw new BusError('BUSBAR_ERR_TIMEOUT', 'the demo message did not come back within 5 s');
    await message.ack();
    ctx.out.write(`busbar is working on ${bus.transport.name} (${describeBroker(bus.config)}):\n`);
    ctx.out.write(`  sent and received ${JSON.stringify(message.body)} as ${message.id}\n`);
    ctx.out.write(`try: npx busbar send alerts hello && npx busbar receive alerts --group g --count 1\n`);
    await consumer.close();
  } finally {
    await bus.close();
  }
}
