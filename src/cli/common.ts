import { MessageBus } from '../bus/bus.ts';
import { BusError } from '../errors.ts';

export interface CommandContext {
  out: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
}

export async function connect(values: {
  broker?: string | undefined;
  config?: string | undefined;
}): Promise<MessageBus> {
  return MessageBus.connect({ broker: values.broker, config: values.config });
}

export function requireArg(value: string | undefined, what: string, command: string): string {
  if (!value) throw new BusError('BUSBAR_ERR_USAGE', `missing ${what}: see 'busbar ${command} --help'`);
  return value;
}

/**
 * An AbortSignal that fires on the first SIGINT or SIGTERM, so a long-running command can finish what it holds and
 * exit 0 instead of being killed. Call the returned function to remove the handlers.
 */
export function stopOnSignals(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    },
  };
}
