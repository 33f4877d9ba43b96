/** `busbar peek <type> [--from POSITION|TIME] [--count N]`: browse stored messages without consuming them. */
import { peekedJson } from '../server/routes/peek.ts';
import { integer, parse } from './args.ts';
import { type CommandContext, connect, requireArg } from './common.ts';

export const PEEK_HELP = `Usage: busbar peek <type> [--from POSITION|TIME] [--count N]

Shows stored messages of a type, oldest first, one JSON object per line (position, id, attributes, headers, and the
body as JSON, text, or base64 for anything else), without consuming them: no consumer group moves. Transports that
cannot browse say so (the peek row of docs/transports.md).

  --from X    start at position X (one a previous peek printed) or, for an RFC 3339 time (2026-01-31T12:00:00Z),
              at the first message stored at or after it
  --count N   at most N messages, 1 to 1000 (default 20)`;

const TIME = /^\d{4}-\d{2}-\d{2}([T ]|$)/;

export async function peek(argv: string[], ctx: CommandContext): Promise<void> {
  const { values, positionals } = parse('peek', argv, { from: { type: 'string' }, count: { type: 'string' } });
  const type = requireArg(positionals[0], 'message type', 'peek');
  const count = integer(values.count, 'count', 1, 1000);
  const from = values.from;
  const bus = await connect(values);
  try {
    const request = from !== undefined && TIME.test(from) ? { fromTime: from, count } : { from, count };
    for (const found of await bus.admin().peek(type, request)) ctx.out.write(`${JSON.stringify(peekedJson(found))}\n`);
  } finally {
    await bus.close();
  }
}
