import { startServer } from '../server/index.ts';
import { integer, parse } from './args.ts';
import type { CommandContext } from './commands.ts';

/** `busbar serve`: the REST gateway on the configured broker until SIGINT / SIGTERM. */
export async function serve(argv: string[], ctx: CommandContext): Promise<void> {
  const { values } = parse('serve', argv, {
    host: { type: 'string' },
    port: { type: 'string', short: 'p' },
    insecure: { type: 'boolean' },
  });
  const server = await startServer({
    config: { broker: values.broker, config: values.config },
    host: values.host,
    port: integer(values.port, 'port', 0),
    insecure: values.insecure,
    handleSignals: true,
    print: (text) => ctx.out.write(`${text}\n`),
  });
  await server.closed;
}
