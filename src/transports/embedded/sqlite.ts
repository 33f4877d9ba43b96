/**
 * node:sqlite is fetched when a database is opened, not imported: on a Node.js without it (or with one that lacks what
 * busbar uses) the rest of busbar still loads, and opening an embedded bus fails with one BusError that says what to do.
 */
import type * as Sqlite from 'node:sqlite';
import { BusError } from '../../errors.ts';

/**
 * The Node.js releases whose node:sqlite binds numbered parameters (`?1`) by position (22.20, 24.7); older ones also
 * lack statement.setReturnArrays and database.isTransaction (22.16, 24.0). package.json `engines` says the same.
 */
export const SQLITE_NODE_VERSIONS = '^22.20.0 || >=24.7.0';

export function sqliteSupported(version: string = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  if (major === 22) return minor >= 20;
  if (major === 24) return minor >= 7;
  return major > 24;
}

export function loadSqlite(): typeof Sqlite {
  if (!sqliteSupported()) {
    throw new BusError(
      'BUSBAR_ERR_UNSUPPORTED',
      `the embedded broker needs Node.js 22.20+ or 24.7+ (node:sqlite), and this is Node.js ${process.version}: ` +
        'upgrade Node.js (24 LTS), or use memory: or a network broker (amqp://, kafka://, nats://, redis://, mqtt://), ' +
        'which do not need node:sqlite',
    );
  }
  return process.getBuiltinModule('node:sqlite');
}
