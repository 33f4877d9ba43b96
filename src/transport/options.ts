/**
 * The options toolkit every transport reads its TransportConfig with: one error code (BUSBAR_ERR_INVALID_CONFIG)
 * and one message shape for a bad option, whether it came from the URL's query string or the config file.
 *   unknown <transport> option 'x': use one of a, b, c
 *   invalid <transport> option 'x': expected <what>; got <value>
 * Read once in the transport's factory, then freeze what it built.
 */
import { readFileSync } from 'node:fs';
import { BusError } from '../errors.ts';
import type { TlsConfig, TransportConfig } from './contract.ts';

type OptionValue = string | number | boolean;

/** The error for a bad transport setting; `label` names the transport as users know it (`RabbitMQ`, `kafka`). */
export function invalidOption(label: string, key: string, expected: string, got: unknown): BusError {
  return new BusError(
    'BUSBAR_ERR_INVALID_CONFIG',
    `invalid ${label} option '${key}': expected ${expected}; got ${JSON.stringify(got)}`,
  );
}

export interface NumberRange {
  /** Smallest value allowed (inclusive); default 0. */
  readonly min?: number;
  /** Largest value allowed (inclusive); default Number.MAX_SAFE_INTEGER. */
  readonly max?: number;
}

/** Reads the `options` of a TransportConfig: refuses unknown keys at once, then parses each known one on demand. */
export class OptionReader {
  readonly label: string;
  readonly #options: Readonly<Record<string, OptionValue>>;

  constructor(label: string, options: Readonly<Record<string, OptionValue>>, known: readonly string[]) {
    this.label = label;
    this.#options = options;
    for (const key of Object.keys(options)) {
      if (!known.includes(key)) {
        throw new BusError(
          'BUSBAR_ERR_INVALID_CONFIG',
          `unknown ${label} option '${key}': use one of ${known.join(', ')}`,
        );
      }
    }
  }

  raw(key: string): OptionValue | undefined {
    return this.#options[key];
  }

  has(key: string): boolean {
    return this.#options[key] !== undefined;
  }

  invalid(key: string, expected: string, got: unknown = this.#options[key]): BusError {
    return invalidOption(this.label, key, expected, got);
  }

  /** A whole number (a string of digits counts) within range, or `fallback` when absent. */
  integer(key: string, fallback: number, range: NumberRange = {}): number {
    const value = this.#number(key, fallback, range, true);
    return value;
  }

  /** Any finite number within range (e.g. a fraction of a second), or `fallback` when absent. */
  number(key: string, fallback: number, range: NumberRange = {}): number {
    return this.#number(key, fallback, range, false);
  }

  /** A non-empty string, or `fallback` when absent or empty. */
  string(key: string): string | undefined;
  string(key: string, fallback: string): string;
  string(key: string, fallback?: string): string | undefined {
    const raw = this.#options[key];
    return raw === undefined || raw === '' ? fallback : String(raw);
  }

  /** One of `choices` (compared case-insensitively, returned as listed), or `fallback` when absent. */
  oneOf<T extends string>(key: string, choices: readonly T[], fallback: T): T {
    const raw = this.#options[key];
    if (raw === undefined) return fallback;
    const found = choices.find((choice) => choice.toLowerCase() === String(raw).toLowerCase());
    if (found === undefined) throw this.invalid(key, `one of ${choices.join(', ')}`, raw);
    return found;
  }

  /** true/false (also the strings `true`/`false`/`1`/`0`), or `fallback` when absent. */
  flag(key: string, fallback: boolean): boolean {
    const raw = this.#options[key];
    if (raw === undefined) return fallback;
    if (raw === true || raw === 'true' || raw === '1' || raw === 1) return true;
    if (raw === false || raw === 'false' || raw === '0' || raw === 0) return false;
    throw this.invalid(key, 'true or false', raw);
  }

  #number(key: string, fallback: number, range: NumberRange, whole: boolean): number {
    const raw = this.#options[key];
    if (raw === undefined) return fallback;
    const value = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
    const min = range.min ?? 0;
    const max = range.max ?? Number.MAX_SAFE_INTEGER;
    if (
      typeof value !== 'number' ||
      !Number.isFinite(value) ||
      (whole && !Number.isInteger(value)) ||
      value < min ||
      value > max
    ) {
      const kind = whole ? 'a whole number' : 'a number';
      const bounds = range.max === undefined ? `>= ${min}` : `from ${min} to ${max}`;
      throw this.invalid(key, `${kind} ${bounds}`, raw);
    }
    return value;
  }
}

/** `host:port` or `[v6]:port` or a bare host; the port defaults. Throws the transport's invalid-option error. */
export function parseEndpoint(label: string, endpoint: string, defaultPort: number): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d+))?$/.exec(endpoint.trim());
  const host = match?.[1] ?? match?.[2];
  const port = match?.[3] === undefined ? defaultPort : Number(match[3]);
  if (!host || !(port > 0 && port < 65536)) {
    throw invalidOption(
      label,
      'endpoints',
      `host:port with a port from 1 to 65535, e.g. 127.0.0.1:${defaultPort}`,
      endpoint,
    );
  }
  return { host, port };
}

/** Reads one PEM file named in the TLS settings; a file that cannot be read is a config error naming it. */
export function readPem(path: string | undefined, what: 'ca' | 'cert' | 'key'): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (error) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_CONFIG',
      `cannot read the TLS ${what} file ${path}: ${(error as Error).message}; check tls.${what} in the config`,
      { cause: error },
    );
  }
}

/** The TLS files read into memory, with only the fields that were set (node:tls options take them as they are). */
export interface TlsFiles {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized?: boolean;
}

export function readTlsFiles(tls: TlsConfig | undefined): TlsFiles {
  const files: TlsFiles = {};
  const ca = readPem(tls?.ca, 'ca');
  const cert = readPem(tls?.cert, 'cert');
  const key = readPem(tls?.key, 'key');
  if (ca) files.ca = ca;
  if (cert) files.cert = cert;
  if (key) files.key = key;
  if (tls?.rejectUnauthorized !== undefined) files.rejectUnauthorized = tls.rejectUnauthorized;
  return files;
}

/** Reads a TransportConfig's options for the transport named `label` (see OptionReader). */
export function optionsOf(label: string, config: TransportConfig, known: readonly string[]): OptionReader {
  return new OptionReader(label, config.options, known);
}
