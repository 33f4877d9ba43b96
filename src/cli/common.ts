import { MessageBus } from '../bus/bus.ts';
import { BusError } from '../errors.ts';
import { onStop } from './signals.ts';

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
 * An AbortSignal that fires on the first stop signal (see signals.ts), so a long-running command can finish what it
 * holds and exit 0 instead of being killed; a second signal exits at once. `dispose` removes the handlers.
 */
export function stopOnSignals(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const dispose = onStop(() => controller.abort());
  return { signal: controller.signal, dispose };
}
