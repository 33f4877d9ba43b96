/**
 * `busbar relay --outbox URL`: moves messages from a transactional outbox to the broker until stopped. Several
 * relays may run on one outbox (PostgreSQL: each holds its lanes while it sends; SQLite: they take turns).
 */
import { BusError } from '../errors.ts';
import { PgOutbox } from '../reliability/outbox/pg.ts';
import type { Relay } from '../reliability/outbox/relay.ts';
import { SqliteOutbox } from '../reliability/outbox/sqlite.ts';
import { integer, parse } from './args.ts';
import { type CommandContext, connect, stopOnSignals } from './common.ts';

interface Outbox {
  install(): unknown;
  relay(bus: Parameters<PgOutbox['relay']>[0], options: Parameters<PgOutbox['relay']>[1]): Relay;
  close(): unknown;
}

function openOutbox(
  url: string,
  table: string | undefined,
  schema: string | undefined,
  leaseMs: number | undefined,
): Outbox {
  if (/^postgres(ql)?:\/\//.test(url)) {
    if (leaseMs !== undefined) {
      throw new BusError('BUSBAR_ERR_USAGE', '--lease-ms is for a SQLite outbox; PostgreSQL relays hold row locks');
    }
    return new PgOutbox({ connectionString: url, table, schema });
  }
  if (url.startsWith('sqlite:')) {
    if (schema) throw new BusError('BUSBAR_ERR_USAGE', '--schema is for a PostgreSQL outbox; a SQLite file has none');
    return new SqliteOutbox({ path: url.slice('sqlite:'.length), table, leaseMs });
  }
  throw new BusError(
    'BUSBAR_ERR_USAGE',
    `--outbox ${JSON.stringify(url)}: give postgres://user@host:5432/db or sqlite:/path/to/app.db`,
  );
}

export async function relay(argv: string[], ctx: CommandContext): Promise<void> {
  const { values } = parse('relay', argv, {
    outbox: { type: 'string' },
    table: { type: 'string' },
    schema: { type: 'string' },
    batch: { type: 'string' },
    'poll-ms': { type: 'string' },
    'lease-ms': { type: 'string' },
    install: { type: 'boolean' },
  });
  if (!values.outbox) throw new BusError('BUSBAR_ERR_USAGE', "missing --outbox URL: see 'busbar relay --help'");
  const outbox = openOutbox(values.outbox, values.table, values.schema, integer(values['lease-ms'], 'lease-ms', 1));
  const batchSize = integer(values.batch, 'batch', 1);
  const pollMs = integer(values['poll-ms'], 'poll-ms', 1);
  const stop = stopOnSignals();
  const bus = await connect(values);
  try {
    if (values.install) await outbox.install();
    const running = outbox.relay(bus, { batchSize, pollMs });
    let lastError = '';
    running.on('error', (error) => {
      // Once per change of cause, not once per retry.
      if (error.message !== lastError) process.stderr.write(`busbar relay: ${error.message} (retrying)\n`);
      lastError = error.message;
    });
    running.on('relayed', () => {
      lastError = '';
    });
    ctx.out.write(`busbar relay: ${values.outbox.replace(/\/\/[^@/]*@/, '//')} -> ${bus.transportName}\n`);
    await new Promise<void>((resolve) => {
      if (stop.signal.aborted) resolve();
      stop.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await running.close();
    ctx.out.write(`busbar relay: stopped after ${running.relayed} message(s)\n`);
  } finally {
    stop.dispose();
    await outbox.close();
    await bus.close();
  }
}
