import { type RunningServer, startServer } from '../server/index.ts';
import { integer, parse } from './args.ts';
import type { CommandContext } from './commands.ts';
import { onStop } from './signals.ts';

/** `busbar serve`: the REST gateway on the configured broker until SIGINT / SIGTERM (or npx / npm ending). */
export async function serve(argv: string[], ctx: CommandContext): Promise<void> {
  const { values } = parse('serve', argv, {
    host: { type: 'string' },
    port: { type: 'string', short: 'p' },
    insecure: { type: 'boolean' },
  });
  // Handlers first: a signal sent as soon as the banner appears (or during start-up) must find them in place.
  let server: RunningServer | undefined;
  let stopping = false;
  const stopHandlers = onStop((reason) => {
    const why = reason === 'parent exited' ? 'npx / npm, which started busbar, ended' : reason;
    process.stderr.write(`busbar: ${why}: stopping the gateway\n`);
    stopping = true;
    void server?.close();
  });
  try {
    server = await startServer({
      config: { broker: values.broker, config: values.config },
      host: values.host,
      port: integer(values.port, 'port', 0, 65_535),
      insecure: values.insecure,
      print: (text) => ctx.out.write(`${text}\n`),
    });
    if (stopping) await server.close();
    await server.closed;
  } finally {
    stopHandlers();
  }
}
