import { registrationLine } from '../bus/admin.ts';
import { BusError } from '../errors.ts';
import { describeBroker } from '../server/banner.ts';
import { integer, parse } from './args.ts';
import { type CommandContext, connect, requireArg } from './common.ts';

export { receive } from './receive.ts';
export { send } from './send.ts';
export { stats } from './stats.ts';
export type { CommandContext };

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

/** `busbar groups create <type> <group> [--offset latest|earliest]`: a group that keeps what is sent before it reads. */
export async function groups(argv: string[], ctx: CommandContext): Promise<void> {
  const { values, positionals } = parse('groups', argv, { offset: { type: 'string' } });
  const action = positionals[0];
  if (action !== 'create') {
    throw new BusError('BUSBAR_ERR_USAGE', `unknown action '${action ?? ''}': use busbar groups create <type> <group>`);
  }
  const type = requireArg(positionals[1], 'message type', 'groups');
  const group = requireArg(positionals[2], 'consumer group', 'groups');
  const offset = values.offset ?? 'latest';
  if (offset !== 'earliest' && offset !== 'latest') {
    throw new BusError('BUSBAR_ERR_USAGE', `--offset takes earliest or latest, not '${offset}'`);
  }
  const bus = await connect(values);
  try {
    await bus.admin().createConsumerGroup(type, group, { offset });
    ctx.out.write(`consumer group '${group}' on '${type}' keeps every message sent from now on until it reads them\n`);
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
    ctx.out.write(`busbar is working on ${bus.transportName} (${describeBroker(bus.config)}):\n`);
    ctx.out.write(`  sent and received ${JSON.stringify(message.body)} as ${message.id}\n`);
    ctx.out.write(`try: npx busbar send alerts hello && npx busbar receive alerts --group g --count 1\n`);
    await consumer.close();
  } finally {
    await bus.close();
  }
}
