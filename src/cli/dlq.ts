/** `busbar dlq list|peek|redrive|purge <type>`: the dead-letter operations of admin.deadLetters and friends. */
import type { DeadLetter } from '../bus/dead-letters.ts';
import { BusError } from '../errors.ts';
import { wireBody } from '../server/wire.ts';
import { integer, parse } from './args.ts';
import { type CommandContext, connect, requireArg } from './common.ts';

export const DLQ_HELP = `Usage: busbar dlq list <type> [--limit N] [--json]
       busbar dlq peek <type> [--id ID] [--limit N]
       busbar dlq redrive <type> (--id ID [--id ID ...] | --all)
       busbar dlq purge <type>

The dead letters of a type are in <type>.dlq (a handler or consumer put them there after maxAttempts). These
commands work the same on every broker:
  list      one line per dead letter: id, attempts, group, when, reason (oldest first; nothing is removed)
  peek      the dead letters in full, one JSON object per line (body as JSON, text, or base64), or the one --id names
  redrive   send dead letters back to their original type (same id, body, key and headers) and remove them:
            those named by --id, or every one with --all
  purge     remove every dead letter of the type

  --limit N   at most N dead letters (default 100)
  --json      list as JSON lines`;

function line(d: DeadLetter): string {
  const when = d.deadLetteredAt ?? '-';
  const reason = (d.reason ?? '-').replace(/\s+/g, ' ');
  return `${d.id}\tattempts=${d.attempts ?? '-'}\tgroup=${d.group ?? '-'}\t${when}\t${reason}`;
}

function full(d: DeadLetter): string {
  const m = d.message;
  return JSON.stringify({
    id: d.id,
    originalType: d.originalType,
    group: d.group,
    reason: d.reason,
    attempts: d.attempts,
    deadLetteredAt: d.deadLetteredAt,
    source: m.source,
    time: m.time,
    contentType: m.contentType,
    key: m.key,
    headers: m.headers,
    ...wireBody(m.body, m.contentType),
  });
}

export async function dlq(argv: string[], ctx: CommandContext): Promise<void> {
  const { values, positionals } = parse('dlq', argv, {
    limit: { type: 'string' },
    json: { type: 'boolean' },
    id: { type: 'string', multiple: true },
    all: { type: 'boolean' },
  });
  const [action, typeArg] = positionals;
  if (!action || !['list', 'peek', 'redrive', 'purge'].includes(action)) {
    throw new BusError(
      'BUSBAR_ERR_USAGE',
      `${action ? `unknown action '${action}'` : 'missing action'}: use busbar dlq list|peek|redrive|purge <type>`,
    );
  }
  const type = requireArg(typeArg, 'message type', 'dlq');
  const limit = integer(values.limit, 'limit', 1, 10_000);
  if (action === 'redrive' && !values.all && !values.id?.length) {
    throw new BusError('BUSBAR_ERR_USAGE', 'busbar dlq redrive needs --id ID (one or more) or --all');
  }
  if (action === 'redrive' && values.all && values.id?.length) {
    throw new BusError('BUSBAR_ERR_USAGE', 'busbar dlq redrive takes --id or --all, not both');
  }
  const bus = await connect(values);
  try {
    const admin = bus.admin();
    if (action === 'list') {
      const list = await admin.deadLetters(type, { limit });
      for (const d of list) ctx.out.write(`${values.json ? full(d) : line(d)}\n`);
      if (!values.json) process.stderr.write(`${list.length} dead letter(s) of '${type}'\n`);
    } else if (action === 'peek') {
      if (values.id?.length) {
        for (const id of values.id) {
          const found = await admin.peekDeadLetter(type, id);
          if (!found)
            throw new BusError(
              'BUSBAR_ERR_NOT_FOUND',
              `no dead letter '${id}' of '${type}': see busbar dlq list ${type}`,
            );
          ctx.out.write(`${full(found)}\n`);
        }
      } else {
        for (const d of await admin.deadLetters(type, { limit })) ctx.out.write(`${full(d)}\n`);
      }
    } else if (action === 'redrive') {
      const result = await admin.redriveDeadLetters(type, values.all ? {} : { ids: values.id });
      for (const id of result.redriven) ctx.out.write(`redriven ${id}\n`);
      process.stderr.write(`redrove ${result.redriven.length} dead letter(s) to '${type}'\n`);
      if (result.missing.length > 0) {
        throw new BusError(
          'BUSBAR_ERR_NOT_FOUND',
          `no dead letter ${result.missing.map((id) => `'${id}'`).join(', ')} of '${type}' (the others were redriven): see busbar dlq list ${type}`,
        );
      }
    } else {
      const removed = await admin.purgeDeadLetters(type);
      ctx.out.write(`purged the dead letters of '${type}'${removed === undefined ? '' : ` (${removed})`}\n`);
    }
  } finally {
    await bus.close();
  }
}
