import { existsSync } from 'node:fs';
import { message } from '../bus/producer.ts';
import { BusError } from '../errors.ts';
import { DEFAULT_SOURCE } from '../message/envelope.ts';
import { defaultSpoolPath, SpoolFile, SpoolSender } from '../reliability/spool.ts';
import { integer, parse } from './args.ts';
import { type CommandContext, connect, requireArg } from './common.ts';

export const SPOOL_HELP = `Usage: busbar spool status [--spool FILE | --producer ID] [--json]
       busbar spool flush  [--spool FILE | --producer ID] [--retry-failed] [--timeout MS]

A producer's spool is the local file holding the messages it accepted while the broker did not confirm them; the
producer replays it by itself once the broker is back, and so does the next process that opens the same file.

  status           messages and bytes waiting, oldest age, messages the broker refused for good (failed, with the
                   reason), and the owning process
  flush            sends what waits to the broker (--broker / --config) now, in order, and exits 0 once the spool
                   is empty; refused while a live producer owns the file (it flushes by itself)
  --spool FILE     the spool file (a producer's spool.path)
  --producer ID    the producer id whose default spool file to use (<XDG data dir>/busbar/spool/<ID>.db)
  --retry-failed   flush: put failed messages back in line first
  --timeout MS     flush: give up after MS milliseconds (exit 1, nothing lost); default: wait
  --json           status: one JSON object`;

function spoolPath(values: { spool?: string | undefined; producer?: string | undefined }): string {
  if (values.spool) return values.spool;
  if (values.producer) return defaultSpoolPath(values.producer);
  throw new BusError(
    'BUSBAR_ERR_USAGE',
    "name the spool with --spool FILE or --producer ID: see 'busbar spool --help'",
  );
}

export async function spool(argv: string[], ctx: CommandContext): Promise<void> {
  const { values, positionals } = parse('spool', argv, {
    spool: { type: 'string' },
    producer: { type: 'string' },
    json: { type: 'boolean' },
    'retry-failed': { type: 'boolean' },
    timeout: { type: 'string' },
  });
  const action = requireArg(positionals[0], 'action (status | flush)', 'spool');
  const path = spoolPath(values);
  // A mistyped path must not look like an empty spool (nor create one).
  if (!existsSync(path)) {
    throw new BusError(
      'BUSBAR_ERR_USAGE',
      `no spool file at ${path}: give the path the producer's spool option names (--spool FILE), or its producer id (--producer ID)`,
    );
  }
  if (action === 'status') {
    const file = SpoolFile.open(path);
    try {
      const counts = file.counts();
      const owner = file.owner();
      const status = {
        path: file.path,
        messages: counts.messages,
        bytes: counts.bytes,
        oldestAgeMs: counts.oldestAt === undefined ? 0 : Math.max(0, Date.now() - counts.oldestAt),
        failed: counts.failed,
        failures: file.failures(),
        owner: owner?.alive ? { pid: owner.pid, host: owner.host, since: new Date(owner.since).toISOString() } : null,
      };
      if (values.json) {
        ctx.out.write(`${JSON.stringify(status)}\n`);
        return;
      }
      ctx.out.write(`${status.path}\n`);
      ctx.out.write(`  waiting: ${status.messages} message(s), ${status.bytes} bytes`);
      ctx.out.write(status.messages > 0 ? `, oldest ${Math.round(status.oldestAgeMs / 1000)} s old\n` : '\n');
      ctx.out.write(`  failed:  ${status.failed} message(s)${status.failed > 0 ? ' (flush --retry-failed)' : ''}\n`);
      for (const f of status.failures) ctx.out.write(`    ${f.count} of '${f.type}': ${f.reason}\n`);
      ctx.out.write(
        status.owner
          ? `  owner:   process ${status.owner.pid} on ${status.owner.host} since ${status.owner.since}\n`
          : '  owner:   none (the next producer or busbar spool flush replays it)\n',
      );
    } finally {
      file.close();
    }
    return;
  }
  if (action !== 'flush') {
    throw new BusError('BUSBAR_ERR_USAGE', `unknown action '${action}': use busbar spool status|flush`);
  }
  const timeoutMs = integer(values.timeout, 'timeout', 1);
  const bus = await connect(values);
  let sender: SpoolSender | undefined;
  try {
    sender = new SpoolSender(path, {
      mode: 'through',
      maxBatch: 500,
      drainOnCloseMs: 0,
      publish: async (type, batch) => {
        await bus.sendBatch(
          type,
          batch.map((m) =>
            message(m.body, {
              id: m.id,
              time: m.time,
              key: m.key,
              headers: { ...m.headers },
              contentType: m.contentType,
              source: m.source || DEFAULT_SOURCE,
            }),
          ),
        );
      },
      onFailure: (error) => process.stderr.write(`busbar: ${error.message} (${error.code})\n`),
      retryFailed: values['retry-failed'] === true,
    });
    const before = sender.stats().messages;
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      sender.drained().then(() => true),
      new Promise<boolean>((resolve) => {
        if (timeoutMs !== undefined) timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    const after = sender.stats();
    if (!drained) {
      throw new BusError(
        'BUSBAR_ERR_TIMEOUT',
        `the spool ${path} did not drain within ${timeoutMs} ms (${after.messages} message(s) still waiting; ` +
          `last error: ${after.lastError ?? 'none'}); nothing was lost: run it again once the broker answers`,
      );
    }
    ctx.out.write(
      `sent ${after.replayed} of ${before} message(s) from ${path}; ${after.failed} failed message(s) kept\n`,
    );
  } finally {
    await sender?.close();
    await bus.close();
  }
}
