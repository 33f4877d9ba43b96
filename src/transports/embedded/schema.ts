/**
 * Opening the database file: create its folder, set the pragmas every connection needs, and create (or check) the
 * schema. docs/wire/embedded.md explains each table to readers in other languages.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import { BusError } from '../../errors.ts';
import type { EmbeddedOptions } from './options.ts';
import { loadSqlite } from './sqlite.ts';

/** `PRAGMA application_id` of a busbar database: 'busb' in ASCII. */
export const APPLICATION_ID = 0x62757362;
/** 2 added `leases` (range leases). A version 1 file is upgraded in place: its rows mean the same in version 2. */
export const SCHEMA_VERSION = 2;
export const DEFAULT_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS types (
  name TEXT PRIMARY KEY,
  partitions INTEGER NOT NULL DEFAULT 1,
  max_age_ms INTEGER,
  max_bytes INTEGER,
  depth INTEGER NOT NULL DEFAULT 0,
  bytes INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  type TEXT NOT NULL,
  id TEXT,
  source TEXT,
  time TEXT,
  content_type TEXT,
  key TEXT,
  headers TEXT,
  body BLOB NOT NULL,
  size INTEGER NOT NULL,
  published_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_type ON messages (type, seq);
CREATE TABLE IF NOT EXISTS groups (
  type TEXT NOT NULL,
  grp TEXT NOT NULL,
  cursor INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (type, grp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
  type TEXT NOT NULL,
  grp TEXT NOT NULL,
  seq INTEGER NOT NULL,
  key TEXT,
  attempt INTEGER NOT NULL,
  lease_until INTEGER NOT NULL,
  not_before INTEGER NOT NULL,
  owner TEXT,
  PRIMARY KEY (type, grp, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_by_key ON pending (type, grp, key, seq) WHERE key IS NOT NULL;
CREATE INDEX IF NOT EXISTS pending_by_lease ON pending (type, grp, lease_until);
CREATE TABLE IF NOT EXISTS leases (
  type TEXT NOT NULL,
  grp TEXT NOT NULL,
  first_seq INTEGER NOT NULL,
  last_seq INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  lease_until INTEGER NOT NULL,
  owner TEXT,
  PRIMARY KEY (type, grp, first_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS leases_by_lease ON leases (type, grp, lease_until);
`;

export function openDatabase(options: EmbeddedOptions): DatabaseSync {
  const { DatabaseSync } = loadSqlite();
  const { path } = options;
  try {
    mkdirSync(dirname(path), { recursive: true });
  } catch (error) {
    throw new BusError(
      'BUSBAR_ERR_CONFIG_FILE',
      `cannot create the folder for the embedded bus file ${path}: ${(error as Error).message}: choose a writable path, e.g. embedded:./bus.db`,
      { cause: error },
    );
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { timeout: options.busyTimeoutMs });
  } catch (error) {
    throw new BusError(
      'BUSBAR_ERR_CONFIG_FILE',
      `cannot open the embedded bus file ${path}: ${(error as Error).message}: check that the path is a writable file`,
      { cause: error },
    );
  }
  try {
    prepare(db, options);
    return db;
  } catch (error) {
    db.close();
    if (error instanceof BusError) throw error;
    throw new BusError(
      'BUSBAR_ERR_CONFIG_FILE',
      `cannot use ${path} as an embedded bus file: ${(error as Error).message}: point embedded: at a busbar database or a new file`,
      { cause: error },
    );
  }
}

function prepare(db: DatabaseSync, options: EmbeddedOptions): void {
  const applicationId = pragma(db, 'application_id');
  if (applicationId !== APPLICATION_ID) {
    const tables = db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table'").get() as { n: number };
    if (applicationId !== 0 || tables.n > 0) {
      throw new BusError(
        'BUSBAR_ERR_CONFIG_FILE',
        `${options.path} is a SQLite database of another application, not a busbar bus file: point embedded: at a busbar database or a new file`,
      );
    }
  }
  db.exec('PRAGMA journal_mode = WAL');
  db.exec(`PRAGMA synchronous = ${options.sync === 'full' ? 'FULL' : 'NORMAL'}`);
  db.exec('PRAGMA foreign_keys = OFF');
  db.exec('BEGIN IMMEDIATE');
  try {
    const version = pragma(db, 'user_version');
    if (version > SCHEMA_VERSION) {
      throw new BusError(
        'BUSBAR_ERR_CONFIG_FILE',
        `${options.path} has busbar schema version ${version}, newer than this busbar (${SCHEMA_VERSION}): upgrade busbar`,
      );
    }
    db.exec(SCHEMA);
    db.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    db.exec('COMMIT');
  } catch (error) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw error;
  }
}

function pragma(db: DatabaseSync, name: string): number {
  const row = db.prepare(`PRAGMA ${name}`).get() as Record<string, number> | undefined;
  return row ? Number(Object.values(row)[0]) : 0;
}
