/**
 * `embedded:` URL and options: where the database file lives and how hard each commit is pushed to disk.
 * `embedded:` (the XDG data dir), `embedded:/abs/bus.db`, `embedded:./rel.db`, `embedded:rel.db`, `embedded:~/bus.db`,
 * `embedded:///abs/bus.db`; options from the query string or the config file's `options`.
 */
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { BusError } from '../../errors.ts';
import type { TransportConfig } from '../../transport/contract.ts';
import { OptionReader } from '../../transport/options.ts';

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
  // One error code for a bad option whether it came from the query string or the config file.
  const reader = new OptionReader('embedded', options, KNOWN);
  const sync = reader.oneOf<SyncMode>('sync', ['normal', 'full'], DEFAULT_SYNC);
  return Object.freeze({
    path: resolvePath(rawPath, cwd),
    sync,
    busyTimeoutMs: reader.number('busyTimeoutMs', DEFAULT_BUSY_TIMEOUT_MS),
    pollMs: reader.number('pollMs', DEFAULT_POLL_MS, { min: Number.MIN_VALUE }),
    retentionIntervalMs: reader.number('retentionIntervalMs', DEFAULT_RETENTION_INTERVAL_MS, { min: Number.MIN_VALUE }),
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
