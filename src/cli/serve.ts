import { type RunningServer, startServer } from '../server/index.ts';
import { integer, parse } from './args.ts';
import type { CommandContext } from './commands.ts';
import { exitCodeOf, onStop } from './signals.ts';

/** `busbar serve`: the REST gateway on the configured broker until SIGINT / SIGTERM (or npx / npm ending). */
export async function serve(argv: string[], ctx: CommandContext): Promise<void> {
  const { values } = parse('serve', argv, {
    host: { type: 'string' },
    port: { type: 'string', short: 'p' },
    insecure: { type: 'boolean' },
  });
  // Handlers first: a signal sent as soon as the banner appears must find them in place.
  let server: RunningServer | undefined;
  const stopHandlers = onStop((reason) => {
    const why = reason === 'parent exited' ? 'npx / npm, which started busbar, ended' : reason;
    if (!server) {
      // Still connecting (possibly for the broker's whole connect timeout): nothing is served or held yet.
      process.stderr.write(`busbar: ${why} while starting: not starting the gateway\n`);
      process.exit(exitCodeOf(reason));
    }
    process.stderr.write(`busbar: ${why}: stopping the gateway\n`);
    // Drains: no new pulls; what clients hold may still be settled (through any replica) for server.drainMs.
    void server.drain();
  });
  try {
    server = await startServer({
      config: { broker: values.broker, config: values.config },
      host: values.host,
      port: integer(values.port, 'port', 0, 65_535),
      insecure: values.insecure,
      print: (text) => ctx.out.write(`${text}\n`),
    });
    await server.closed;
  } finally {
    stopHandlers();
  }
}
