/**
 * The `busbar` command. Errors print as `busbar: <message> (<code>)` without a stack; exit 2 for usage and
 * configuration errors, 1 otherwise.
 */
import { BusError, isBusError } from '../errors.ts';
import { BRIDGE_HELP } from './bridge.ts';
import { type CommandContext, demo, groups, purge, receive, send, stats, types } from './commands.ts';
import { DLQ_HELP, dlq } from './dlq.ts';
import { PEEK_HELP, peek } from './peek.ts';
import { RECEIVE_HELP } from './receive.ts';
import { RELAY_HELP } from './relay-help.ts';
import { SEND_HELP } from './send.ts';
import { SPOOL_HELP } from './spool.ts';
import { STATS_HELP } from './stats.ts';
import { version } from './version.ts';

const COMMON = `Options for every command:
  --broker URL     broker URL (embedded:[path] | memory: | amqp:// | amqp10:// | kafka:// | nats:// | redis:// |
                   mqtt:// | stomp:// | zeromq://)
  --config FILE    config file (JSON, YAML, or CORTX message_bus.conf)
  -h, --help       show help`;

const HELP: Record<string, string> = {
  '': `busbar — a message bus for any component on any node

Usage: busbar <command> [options]

Commands:
  send <type> [body...]       send messages (bodies from args, or one per line from stdin)
  receive <type> --group G    receive messages and print one per line
  types list|create|delete    list, register or deregister message types
  groups create <type> <grp>  create a consumer group before its first consumer (it misses nothing sent meanwhile)
  purge <type>                remove every stored message of a type
  stats [type]                depth, unread, in-flight and oldest age per group
  peek <type>                 show stored messages without consuming them
  dlq list|peek|redrive|purge <type>   dead letters: list, show, send back to the type, remove
  serve                       run the REST gateway and the web console (at /)
  spool status|flush          what a producer's spool holds; send it to the broker now
  bridge --from URL --to URL  move messages from one broker to another
  relay --outbox URL          send what an app wrote to its transactional outbox
  demo                        send and receive one message to check the setup
  version                     print busbar's version (also -v, --version)

${COMMON}

The broker comes from --broker, env BUSBAR_BROKER, --config / BUSBAR_CONFIG / ./busbar.config.{json,yaml},
/etc/busbar/message_bus.conf, or else the embedded broker in a local file.`,
  send: `${SEND_HELP}

${COMMON}`,
  receive: `${RECEIVE_HELP}

${COMMON}`,
  types: `Usage: busbar types list [--json] | create <type> [--partitions N] | delete <type>

create on an existing type grows it to N partitions (as CORTX's add_concurrency) and says so; fewer partitions than
it has is an error (partitions never shrink). Deleting a type that does not exist is an error, never a silent no-op.

${COMMON}`,
  groups: `Usage: busbar groups create <type> <group> [--offset latest|earliest]

Creates the consumer group now, so that every message sent from now on (latest, the default) or every message kept
(earliest, where the broker keeps a log) waits for the group's first consumer. An existing group is left as it is.
Brokers that cannot hold messages for a group without a consumer refuse (see docs/transports.md).

${COMMON}`,
  purge: `Usage: busbar purge <type>

Removes every stored message of the type; consumer groups stay and have nothing unread. A type that does not
exist is an error.

${COMMON}`,
  stats: `${STATS_HELP}

${COMMON}`,
  spool: `${SPOOL_HELP}

${COMMON}`,
  peek: `${PEEK_HELP}

${COMMON}`,
  dlq: `${DLQ_HELP}

${COMMON}`,
  serve: `Usage: busbar serve [--host H] [--port P] [--insecure]

Runs the REST gateway (default 127.0.0.1:8080) on the configured broker (embedded unless --broker / --config say
otherwise); with the embedded broker the banner names its database file. Listening beyond loopback needs bearer
tokens in the config's server section, or --insecure. Stops cleanly on SIGINT / SIGTERM (also when started through
npx or npm start and npm is stopped); a second signal exits at once. See docs/rest.md.

${COMMON}`,
  bridge: `${BRIDGE_HELP}

Other options:
  --config FILE    config file (JSON, YAML, or CORTX message_bus.conf) for both sides' settings other than the
                   broker (timeouts, TLS); --from and --to name the brokers
  -h, --help       show help`,
  relay: `${RELAY_HELP}

${COMMON}`,
  demo: `Usage: busbar demo

Sends one message and receives it back, to check that the broker works.

${COMMON}`,
};

type Command = (argv: string[], ctx: CommandContext) => Promise<void>;

const COMMANDS: Record<string, Command> = {
  send,
  receive,
  types,
  groups,
  purge,
  stats,
  dlq,
  peek,
  demo,
  spool: async (argv, ctx) => {
    const { spool } = await import('./spool.ts');
    await spool(argv, ctx);
  },
  bridge: async (argv, ctx) => {
    const { bridgeCommand } = await import('./bridge.ts');
    await bridgeCommand(argv, ctx);
  },
  serve: async (argv, ctx) => {
    const { serve } = await import('./serve.ts');
    await serve(argv, ctx);
  },
  relay: async (argv, ctx) => {
    const { relay } = await import('./relay.ts');
    await relay(argv, ctx);
  },
};

export async function main(argv: string[], ctx: CommandContext): Promise<number> {
  const [name = '', ...rest] = argv;
  try {
    if (name === '' || name === '--help' || name === '-h' || name === 'help') {
      ctx.out.write(`${HELP[rest[0] ?? ''] ?? HELP['']}\n`);
      return 0;
    }
    if (name === '--version' || name === '-v' || name === 'version') {
      ctx.out.write(`${version()}\n`);
      return 0;
    }
    const command = COMMANDS[name];
    if (!command) {
      throw new BusError(
        'BUSBAR_ERR_USAGE',
        `unknown command '${name}': use one of ${Object.keys(COMMANDS).join(', ')} (busbar --help)`,
      );
    }
    if (rest.includes('--help') || rest.includes('-h')) {
      ctx.out.write(`${HELP[name]}\n`);
      return 0;
    }
    await command(rest, ctx);
    return 0;
  } catch (error) {
    if (isBusError(error)) {
      process.stderr.write(`busbar: ${error.message} (${error.code})\n`);
      return error.isUsageError ? 2 : 1;
    }
    process.stderr.write(`busbar: ${(error as Error)?.message ?? String(error)}\n`);
    return 1;
  }
}
