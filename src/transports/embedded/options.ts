/**
 * `embedded:` URL and options: where the database file lives and how hard each commit is pushed to disk.
 * `embedded:` (the XDG data dir), `embedded:/abs/bus.db`, `embedded:./rel.db`, `embedded:rel.db`, `embedded:~/bus.db`,
 * `embedded:///abs/bus.db`; options from the query string or the config file's `options`.
 */
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { BusError } from '../../errors.ts';
import type { TransportConfig } from '../../transport/contract.ts';

export type SyncMode = 'normal' | 'full';

export interface EmbeddedOptions {
  /** Absolute path of the database file. */
  readonly path: string;
  /** `normal` (default): WAL with synchronous=NORMAL; `full`: synchronous=FULL, every commit is fsynced. */
  readonly sync: SyncMode;
  /** How long a write waits for another process's write lock before failing. */
  readonly busyTimeoutMs: number;
  /** How often a waiting consumer checks whether another process changed the file. */
  readonly pollMs: number;
  /** How often retention is enforced on a timer (it is also enforced after publishes). */
  readonly retentionIntervalMs: number;
}

export const DEFAULT_SYNC: SyncMode = 'normal';
export const DEFAULT_BUSY_TIMEOUT_MS = 10_000;
export const DEFAULT_POLL_MS = 5;
export const DEFAULT_RETENTION_INTERVAL_MS = 1_000;

const KNOWN = ['sync', 'busyTimeoutMs', 'pollMs', 'retentionIntervalMs'];

export function defaultDatabasePath(env: NodeJS.ProcessEnv = process.env): string {
  const base =
    env.XDG_DATA_HOME && isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : join(homedir(), '.local', 'share');
  return join(base, 'busbar', 'bus.db');
}

export function parseEmbeddedOptions(config: TransportConfig, cwd: string = process.cwd()): EmbeddedOptions {
  const url = config.url;
  if (!/^embedded:/i.test(url)) {
    throw new BusError('BUSBAR_ERR_INVALID_URL', `not an embedded URL: ${JSON.stringify(url)}: use embedded:[path]`);
  }
  const rest = url.slice('embedded:'.length);
  const queryAt = rest.indexOf('?');
  const rawPath = decodeURIComponent(queryAt >= 0 ? rest.slice(0, queryAt) : rest);
  const query = Object.fromEntries(new URLSearchParams(queryAt >= 0 ? rest.slice(queryAt + 1) : ''));
  const options: Record<string, string | number | boolean> = { ...query, ...config.options };
  for (const name of Object.keys(options)) {
    if (!KNOWN.includes(name)) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_URL',
        `unknown embedded option '${name}' in ${JSON.stringify(url)}: use ${KNOWN.join(', ')} (e.g. embedded:./bus.db?sync=full)`,
      );
    }
  }
  const sync = String(options.sync ?? DEFAULT_SYNC).toLowerCase();
  if (sync !== 'normal' && sync !== 'full') {
    throw new BusError(
      'BUSBAR_ERR_INVALID_URL',
      `embedded option sync must be 'normal' or 'full', not ${JSON.stringify(options.sync)}`,
    );
  }
  return Object.freeze({
    path: resolvePath(rawPath, cwd),
    sync,
    busyTimeoutMs: nonNegative(options, 'busyTimeoutMs', DEFAULT_BUSY_TIMEOUT_MS),
    pollMs: positive(options, 'pollMs', DEFAULT_POLL_MS),
    retentionIntervalMs: positive(options, 'retentionIntervalMs', DEFAULT_RETENTION_INTERVAL_MS),
  });
}

function resolvePath(raw: string, cwd: string): string {
  if (raw === '' || raw === '//') return defaultDatabasePath();
  if (raw.startsWith('///')) return raw.slice(2);
  if (raw.startsWith('//')) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_URL',
      `embedded URLs take a file path, not a host: ${JSON.stringify(`embedded:${raw}`)}: use embedded:/abs/bus.db or embedded:./bus.db`,
    );
  }
  if (raw === '~' || raw.startsWith('~/')) return join(homedir(), raw.slice(1));
  return resolve(cwd, raw);
}

function number(options: Record<string, unknown>, name: string, fallback: number): number {
  const value = options[name];
  if (value === undefined) return fallback;
  const parsed = typeof value === 'number' ? value : Number(value);
  if (!Number.isFinite(parsed)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_URL',
      `embedded option ${name} must be a number of ms, not ${JSON.stringify(value)}`,
    );
  }
  return parsed;
}

function positive(options: Record<string, unknown>, name: string, fallback: number): number {
  const value = number(options, name, fallback);
  if (value <= 0) throw new BusError('BUSBAR_ERR_INVALID_URL', `embedded option ${name} must be > 0, not ${value}`);
  return value;
}

function nonNegative(options: Record<string, unknown>, name: string, fallback: number): number {
  const value = number(options, name, fallback);
  if (value < 0) throw new BusError('BUSBAR_ERR_INVALID_URL', `embedded option ${name} must be >= 0, not ${value}`);
  return value;
}
