import type { Bridge, BridgeStats } from '../bridge/bridge.ts';
import { BusError } from '../errors.ts';
import { integer, parse } from './args.ts';
import { type CommandContext, requireArg, stopOnSignals } from './common.ts';
import { Progress } from './progress.ts';

export const BRIDGE_HELP = `Usage: busbar bridge --from URL --to URL [--types a,b.*] [--group G] [--rename from=to ...]
                     [--offset earliest|latest] [--ack-timeout MS] [--prefetch N] [--batch N]
                     [--discover-interval MS] [--json]

Moves every message of the chosen types from one broker to another, until Ctrl-C / SIGTERM. A message is acked at
the source only after the target confirmed it; id, key, headers, source, time and body arrive unchanged; per type,
messages are published in the order the source delivered them. The bridge reads with a durable consumer group at
the source, so a bridge started again (after a crash, too) goes on where the last one stopped. Messages the target
had confirmed but the source had not yet recorded as acked when a bridge died come again, with the same ids.

  --from URL               the source broker (any busbar URL: kafka://, amqp://, redis://, nats://, embedded:...)
  --to URL                 the target broker
  --types LIST             comma-separated type names and patterns: * is one dotted part (orders.*), ** any run
                           (orders.**). Default: every type at the source. Names are read at once; patterns are
                           matched against the source's types at start and every --discover-interval ms, and a type
                           found later is read from the start of what the source holds for it (with --offset
                           earliest, on brokers that keep messages before a group exists).
  -g, --group G            the consumer group at the source (default busbar-bridge): the bridge's place. Two bridges
                           with the same group share the work; a bridge to a second target needs its own group.
  --rename FROM=TO         publish type FROM as TO at the target; * in FROM is taken into TO in order
                           (--rename 'legacy.*=shop.*'). Repeatable; the first match wins.
  --offset O               where the group starts on a type it never read: earliest (default) or latest
  --ack-timeout MS         the source hands a message out again if not acked within MS (default 60000)
  --prefetch N             messages read ahead per type while the target confirms (default 1000)
  --batch N                most messages per publish (default 500)
  --discover-interval MS   how often patterns look for new types (default 30000; 0: only at start)
  --json                   print the bridge's stats as one JSON object per second on stdout

On a terminal, stderr shows one line that is redrawn: messages forwarded, messages per second, and the source's
unread count for the group (lag); elsewhere that line is printed every 30 s. When the lag grows at each of three
samples in a row the bridge says that it is falling behind, and again when it caught up. Exits 0 after a stop
signal (what was read is published and acked first, for up to 10 s), 1 when the target refuses a message (nothing
of it is acked), 2 for usage errors.`;

/** How often (in 1-s ticks) the status line is printed where stderr is not a terminal. */
const LOG_EVERY_TICKS = 30;

export async function bridgeCommand(argv: string[], ctx: CommandContext): Promise<void> {
  const { values } = parse('bridge', argv, {
    from: { type: 'string' },
    to: { type: 'string' },
    types: { type: 'string', multiple: true },
    group: { type: 'string', short: 'g' },
    rename: { type: 'string', multiple: true },
    offset: { type: 'string' },
    'ack-timeout': { type: 'string' },
    prefetch: { type: 'string' },
    batch: { type: 'string' },
    'discover-interval': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.broker !== undefined) {
    throw new BusError(
      'BUSBAR_ERR_USAGE',
      `bridge takes --from and --to instead of --broker: see 'busbar bridge --help'`,
    );
  }
  const from = requireArg(values.from, '--from URL (the source broker)', 'bridge');
  const to = requireArg(values.to, '--to URL (the target broker)', 'bridge');
  if (values.offset !== undefined && values.offset !== 'earliest' && values.offset !== 'latest') {
    throw new BusError('BUSBAR_ERR_USAGE', `--offset takes earliest or latest, not '${values.offset}'`);
  }
  const { Bridge } = await import('../bridge/bridge.ts');
  const { parseRename } = await import('../bridge/patterns.ts');
  let options: Parameters<typeof Bridge.start>[0];
  try {
    options = {
      from: { broker: from, config: values.config },
      to: { broker: to, config: values.config },
      types: values.types,
      group: values.group,
      rename: (values.rename ?? []).map((text) => {
        const { from, to } = parseRename(text);
        return [from.text, to] as const;
      }),
      offset: values.offset as 'earliest' | 'latest' | undefined,
      ackTimeoutMs: integer(values['ack-timeout'], 'ack-timeout', 1),
      prefetch: integer(values.prefetch, 'prefetch', 1),
      maxBatch: integer(values.batch, 'batch', 1),
      discoverIntervalMs: integer(values['discover-interval'], 'discover-interval', 0),
    };
  } catch (error) {
    throw usage(error);
  }
  const stop = stopOnSignals();
  let bridge: Bridge;
  try {
    bridge = await Bridge.start(options).catch((error) => {
      throw usage(error);
    });
  } catch (error) {
    stop.dispose();
    throw error;
  }
  const progress = new Progress(`bridge ${bridge.stats().from} -> ${bridge.stats().to}:`);
  const say = (line: string) => {
    progress.clear();
    process.stderr.write(`busbar: ${line}\n`);
  };
  const recent = new Map<string, number>();
  bridge.on('warning', (error) => {
    // The same trouble (a broker down, retried every few seconds) is said once per 10 s, not once per retry.
    const now = Date.now();
    if ((recent.get(error.message) ?? 0) > now - 10_000) return;
    recent.set(error.message, now);
    say(`warning: ${error.message} (${error.code}); retrying`);
  });
  bridge.on('type', (lane) => say(`found type '${lane.type}': bridging it to '${lane.target}'`));
  bridge.on('behind', (s) =>
    say(
      `the bridge is falling behind: the source holds ${s.lag} unread message(s) for group '${s.group}', more at each of the last samples (${s.ratePerSec}/s forwarded)`,
    ),
  );
  bridge.on('caught-up', (s) => say(`the bridge caught up: lag ${s.lag}`));
  let ticks = 0;
  const tick = setInterval(() => {
    ticks++;
    const s = bridge.stats();
    if (values.json) ctx.out.write(`${JSON.stringify({ time: new Date().toISOString(), ...s })}\n`);
    if (process.stderr.isTTY) progress.show(statusLine(s));
    else if (ticks % LOG_EVERY_TICKS === 0) say(statusLine(s));
  }, 1000);
  try {
    const stopped = new Promise((resolve) => stop.signal.addEventListener('abort', resolve));
    await Promise.race([bridge.ready(), stopped]);
    if (!stop.signal.aborted) {
      const s = bridge.stats();
      const names = s.types.slice(0, 10).map((l) => (l.type === l.target ? l.type : `${l.type} -> ${l.target}`));
      const more = s.types.length > 10 ? `, and ${s.types.length - 10} more` : '';
      say(
        `bridge ${s.from} -> ${s.to} running, group '${s.group}', ${s.types.length} type(s): ${names.join(', ')}${more}`,
      );
      await Promise.race([bridge.done, stopped]);
    }
  } finally {
    clearInterval(tick);
    stop.dispose();
    await bridge.close();
    const s = bridge.stats();
    if (values.json) ctx.out.write(`${JSON.stringify({ time: new Date().toISOString(), ...s })}\n`);
    say(`bridge stopped: ${s.forwarded} message(s) forwarded`);
  }
  await bridge.done;
}

function statusLine(s: BridgeStats): string {
  const lag = s.lag === null ? '' : `, lag ${s.lag}`;
  const retrying = s.types.some((t) => t.state === 'retrying') ? ', target unavailable: retrying' : '';
  return `${s.forwarded} forwarded, ${s.ratePerSec}/s${lag}, ${s.types.length} type(s)${retrying}${s.behind ? ', FALLING BEHIND' : ''}`;
}

/** A bad option found by the library is a usage error on the command line (exit 2). */
function usage(error: unknown): unknown {
  if (error instanceof BusError && error.code === 'BUSBAR_ERR_INVALID_ARGUMENT') {
    return new BusError('BUSBAR_ERR_USAGE', `${error.message}: see 'busbar bridge --help'`, { cause: error });
  }
  return error;
}
