import { type ParseArgsConfig, parseArgs } from 'node:util';
import { BusError } from '../errors.ts';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export const COMMON_OPTIONS = {
  broker: { type: 'string' },
  config: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionSpec;

/** node:util parseArgs, with its errors turned into usage errors that point at --help. */
export function parse<T extends OptionSpec>(command: string, argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...options }, allowPositionals: true, strict: true });
  } catch (error) {
    const message = (error as Error).message.replace(/\. To specify a positional argument.*$/s, '');
    throw new BusError('BUSBAR_ERR_USAGE', `${message.replace(/\.$/, '')}: see 'busbar ${command} --help'`, {
      cause: error,
    });
  }
}

export function integer(value: string | undefined, name: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new BusError('BUSBAR_ERR_USAGE', `--${name} must be a whole number >= ${min}, not '${value}'`);
  }
  return n;
}

export function headers(values: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of values ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new BusError('BUSBAR_ERR_USAGE', `--header takes key=value, not '${pair}'`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}
