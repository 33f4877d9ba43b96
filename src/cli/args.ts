import { type ParseArgsConfig, parseArgs } from 'node:util';
import { BusError } from '../errors.ts';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export const COMMON_OPTIONS = {
  broker: { type: 'string' },
  config: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionSpec;

/** node:util parseArgs, with its errors turned into one-line usage errors that point at --help. */
export function parse<T extends OptionSpec>(command: string, argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...options }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new BusError(
      'BUSBAR_ERR_USAGE',
      `${oneLine((error as Error).message, argv)}: see 'busbar ${command} --help'`,
      {
        cause: error,
      },
    );
  }
}

/**
 * parseArgs explains some mistakes over three lines; the CLI promises one. A value that starts with '-' (`--count -1`)
 * is "ambiguous" to it: say how to pass it instead.
 */
function oneLine(message: string, argv: string[]): string {
  const ambiguous = /^Option '([^']+)' argument is ambiguous/.exec(message);
  if (ambiguous) {
    const forms = ambiguous[1]!.split(/[ ,]+/).filter((f) => f.startsWith('-'));
    const option = forms.at(-1)!;
    const value = argv[argv.findIndex((a) => forms.includes(a)) + 1] ?? '-...';
    const joined = option.startsWith('--') ? `${option}=${value}` : `${option}${value}`;
    return `${option} is followed by '${value}', which looks like an option: write ${joined} to pass it as the value`;
  }
  const [first = message] = message.split('\n');
  return first.replace(/\. To specify a positional argument.*$/, '').replace(/\.$/, '');
}

export function integer(
  value: string | undefined,
  name: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new BusError('BUSBAR_ERR_USAGE', `--${name} must be a whole number ${range}, not '${value}'`);
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
