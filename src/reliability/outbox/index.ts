export type { PostgresJsSql, Queryable } from './pg.ts';
export { PgOutbox, type PgOutboxOptions } from './pg.ts';
export { Relay, type RelayEvents, type RelayOptions } from './relay.ts';
export { SqliteOutbox, type SqliteOutboxOptions } from './sqlite.ts';
