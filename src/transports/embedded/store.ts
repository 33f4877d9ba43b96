/**
 * Every SQL statement of the embedded broker, prepared once per connection. Methods run inside a transaction the
 * caller opened (the engine batches many operations into one); none of them commits.
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import type { GroupStats, Offset, Retention, TransportMessage, TypeInfo, TypeStats } from '../../transport/contract.ts';
import { Leases } from './leases.ts';
import { headersText, toMessage } from './rows.ts';
import { DEFAULT_MAX_AGE_MS } from './schema.ts';

/** One claimed message: what the engine turns into a Delivery. */
export interface Claimed {
  readonly type: string;
  readonly seq: number;
  readonly attempt: number;
  readonly message: TransportMessage;
}

/** Rows per multi-row statement (at most 10 parameters each: far below SQLite's limit). */
const CHUNK = 64;
/** `pending.lease_until` of a message waiting behind an earlier pending message with the same key. */
export const BLOCKED = -1;
/** New messages looked at per claim at most: keeps one claim's transaction short when most are key-blocked. */
const MAX_SCAN = 1024;
const MESSAGE_COLUMNS = 'm.id, m.source, m.time, m.content_type, m.key, m.headers, m.body';

export class Store {
  readonly db: DatabaseSync;
  readonly #s: Record<string, StatementSync>;
  /** Statements whose SQL depends on a row count (multi-row INSERTs, IN lists), by name and count. */
  readonly #inserts = new Map<string, StatementSync>();
  readonly #leases: Leases;

  constructor(db: DatabaseSync) {
    this.db = db;
    this.#leases = new Leases(db, MESSAGE_COLUMNS);
    const prepare = (sql: string, arrays = false) => {
      const statement = db.prepare(sql);
      if (arrays) statement.setReturnArrays(true);
      return statement;
    };
    this.#s = {
      dataVersion: prepare('PRAGMA data_version', true),
      ensureType: prepare(
        'INSERT OR IGNORE INTO types (name, partitions, max_age_ms, max_bytes, created_ms) VALUES (?, ?, ?, NULL, ?)',
      ),
      count: prepare(
        'UPDATE types SET depth = depth + ?, bytes = bytes + ? WHERE name = ? RETURNING max_age_ms, max_bytes, bytes',
        true,
      ),
      group: prepare('SELECT cursor FROM groups WHERE type = ? AND grp = ?', true),
      lastSeq: prepare('SELECT max(seq) FROM messages WHERE type = ?', true),
      createGroup: prepare('INSERT OR IGNORE INTO groups (type, grp, cursor, created_ms) VALUES (?, ?, ?, ?)'),
      setCursor: prepare('UPDATE groups SET cursor = ? WHERE type = ? AND grp = ?'),
      ready: prepare(
        `SELECT p.seq, p.attempt, ${MESSAGE_COLUMNS} FROM pending p JOIN messages m ON m.seq = p.seq
         WHERE p.type = ?1 AND p.grp = ?2 AND p.lease_until BETWEEN 0 AND ?3 AND p.not_before <= ?3
           AND (p.key IS NULL OR NOT EXISTS (
             SELECT 1 FROM pending q WHERE q.type = ?1 AND q.grp = ?2 AND q.key = p.key AND q.seq < p.seq))
         ORDER BY p.lease_until, p.seq LIMIT ?4`,
        true,
      ),
      anyReady: prepare(
        `SELECT EXISTS (SELECT 1 FROM pending WHERE type = ?1 AND grp = ?2 AND lease_until BETWEEN 0 AND ?3),
                EXISTS (SELECT 1 FROM leases WHERE type = ?1 AND grp = ?2 AND lease_until BETWEEN 0 AND ?3)`,
        true,
      ),
      promote: prepare(
        `UPDATE pending SET lease_until = 0 WHERE type = ?1 AND grp = ?2 AND lease_until = ${BLOCKED}
           AND seq = (SELECT min(seq) FROM pending WHERE type = ?1 AND grp = ?2 AND key = ?3)`,
      ),
      repair: prepare(
        `UPDATE pending SET lease_until = 0 WHERE type = ?1 AND grp = ?2 AND lease_until = ${BLOCKED}
           AND NOT EXISTS (SELECT 1 FROM pending q WHERE q.type = ?1 AND q.grp = ?2 AND q.key = pending.key AND q.seq < pending.seq)`,
      ),
      allGroups: prepare('SELECT type, grp FROM groups', true),
      lease: prepare(
        'UPDATE pending SET attempt = attempt + 1, lease_until = ?, owner = ? WHERE type = ? AND grp = ? AND seq = ?',
      ),
      fresh: prepare(
        `SELECT m.seq, ${MESSAGE_COLUMNS} FROM messages m WHERE m.type = ? AND m.seq >= ? ORDER BY m.seq LIMIT ?`,
        true,
      ),
      keyPending: prepare('SELECT 1 FROM pending WHERE type = ? AND grp = ? AND key = ? LIMIT 1', true),
      addPending: prepare(
        'INSERT INTO pending (type, grp, seq, key, attempt, lease_until, not_before, owner) VALUES (?, ?, ?, ?, ?, ?, 0, ?)',
      ),
      nack: prepare(
        'UPDATE pending SET lease_until = 0, not_before = ?, owner = NULL WHERE type = ? AND grp = ? AND seq = ? AND owner = ? AND attempt = ?',
      ),
      release: prepare(
        'UPDATE pending SET lease_until = 0, owner = NULL WHERE type = ? AND grp = ? AND owner = ? AND lease_until > 0',
      ),
      deadline: prepare(
        `SELECT (SELECT min(max(lease_until, not_before)) FROM pending
                 WHERE type = ?1 AND grp = ?2 AND (lease_until > ?3 OR not_before > ?3)),
                (SELECT min(lease_until) FROM leases WHERE type = ?1 AND grp = ?2 AND lease_until > ?3)`,
        true,
      ),
      oldestLive: prepare('SELECT seq FROM messages WHERE type = ? AND published_ms >= ? ORDER BY seq LIMIT 1', true),
      sizesFromOldest: prepare('SELECT seq, size FROM messages WHERE type = ? ORDER BY seq', true),
      trimMessages: prepare('DELETE FROM messages WHERE type = ? AND seq < ? RETURNING size', true),
      trimPending: prepare('DELETE FROM pending WHERE type = ? AND seq < ?'),
      limits: prepare(
        'SELECT name, max_age_ms, max_bytes, bytes FROM types WHERE max_age_ms IS NOT NULL OR max_bytes IS NOT NULL',
        true,
      ),
      typeRow: prepare('SELECT name, partitions, max_age_ms, max_bytes, depth, bytes FROM types WHERE name = ?', true),
      typeRows: prepare('SELECT name, partitions, max_age_ms, max_bytes, depth, bytes FROM types ORDER BY name', true),
      groupRows: prepare('SELECT grp, cursor FROM groups WHERE type = ? ORDER BY grp', true),
      unreadFresh: prepare('SELECT count(*) FROM messages WHERE type = ? AND seq >= ?', true),
      firstFresh: prepare('SELECT published_ms FROM messages WHERE type = ? AND seq >= ? ORDER BY seq LIMIT 1', true),
      pendingStats: prepare(
        'SELECT count(*), coalesce(sum(lease_until > ?), 0), min(seq) FROM pending WHERE type = ? AND grp = ?',
        true,
      ),
      publishedAt: prepare('SELECT published_ms FROM messages WHERE seq = ?', true),
      growPartitions: prepare('UPDATE types SET partitions = max(partitions, ?) WHERE name = ?'),
      setRetention: prepare('UPDATE types SET max_age_ms = ?, max_bytes = ? WHERE name = ?'),
      purgeCursors: prepare('UPDATE groups SET cursor = max(cursor, ?) WHERE type = ?'),
      purgeMessages: prepare('DELETE FROM messages WHERE type = ?'),
      purgePending: prepare('DELETE FROM pending WHERE type = ?'),
      zeroCounters: prepare('UPDATE types SET depth = 0, bytes = 0 WHERE name = ?'),
      deleteGroups: prepare('DELETE FROM groups WHERE type = ?'),
      deleteType: prepare('DELETE FROM types WHERE name = ?'),
    };
  }

  /** Changes whenever another connection commits; cheap to poll. */
  dataVersion(): number {
    return (this.#s.dataVersion!.get() as unknown as [number])[0];
  }

  ensureType(type: string, partitions: number, now: number): void {
    this.#s.ensureType!.run(type, partitions, DEFAULT_MAX_AGE_MS, now);
  }

  /** Appends a batch; returns the type's limits and bytes so the caller can enforce retention. */
  insert(type: string, batch: readonly TransportMessage[], now: number): Retention & { bytes: number } {
    this.ensureType(type, 1, now);
    let bytes = 0;
    // Multi-row INSERTs: one native call per chunk instead of per message.
    for (let from = 0; from < batch.length; from += CHUNK) {
      const to = Math.min(batch.length, from + CHUNK);
      const values: SQLInputValue[] = new Array((to - from) * 10);
      let at = 0;
      for (let i = from; i < to; i++) {
        const m = batch[i]!;
        bytes += m.body.byteLength;
        values[at++] = type;
        values[at++] = m.id;
        values[at++] = m.source;
        values[at++] = m.time;
        values[at++] = m.contentType;
        values[at++] = m.key ?? null;
        values[at++] = headersText(m.headers);
        values[at++] = m.body;
        values[at++] = m.body.byteLength;
        values[at++] = now;
      }
      this.#insertRows(to - from).run(...values);
    }
    const row = this.#s.count!.get(batch.length, bytes, type) as unknown as [number | null, number | null, number];
    return { maxAgeMs: row[0] ?? undefined, maxBytes: row[1] ?? undefined, bytes: row[2] };
  }

  #insertRows(rows: number): StatementSync {
    return this.#many(`insert:${rows}`, () => {
      const values = Array(rows).fill('(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ');
      return `INSERT INTO messages (type, id, source, time, content_type, key, headers, body, size, published_ms) VALUES ${values}`;
    });
  }

  /** Creates the group at its start position unless it exists; returns its cursor. */
  attach(type: string, group: string, offset: Offset, now: number): number {
    this.ensureType(type, 1, now);
    const existing = this.#s.group!.get(type, group) as unknown as [number] | undefined;
    if (existing) return existing[0];
    const last = (this.#s.lastSeq!.get(type) as unknown as [number | null])[0];
    const cursor = offset === 'latest' ? (last ?? 0) + 1 : 0;
    this.#s.createGroup!.run(type, group, cursor, now);
    return cursor;
  }

  /**
   * Leases up to `max` messages of one group to `owner`: first pending ones that are ready and first in line for
   * their key, then ready runs (leases.ts), then new ones from the cursor. A new message whose key already has a
   * pending row waits as a ready pending row (attempt 0) behind it, so one slow key never stalls the others. New
   * unkeyed messages are leased as runs, one `leases` row each; new keyed ones as pending rows.
   */
  claim(
    type: string,
    group: string,
    owner: string,
    max: number,
    leaseUntil: number,
    now: number,
    out: Claimed[],
  ): void {
    const s = this.#s;
    let wanted = max;
    // The full queries cost several times this probe, and usually nothing is waiting to come back.
    const [anyPending, anyRun] = s.anyReady!.get(type, group, now) as unknown as [number, number];
    const returned = anyPending === 0 ? [] : s.ready!.all(type, group, now, wanted);
    for (const row of returned as unknown as unknown[][]) {
      const seq = row[0] as number;
      const attempt = (row[1] as number) + 1;
      s.lease!.run(leaseUntil, owner, type, group, seq);
      out.push({ type, seq, attempt, message: toMessage(type, seq, row, 2) });
      wanted--;
    }
    if (wanted <= 0) return;
    if (anyRun !== 0) wanted -= this.#leases.claim(type, group, owner, wanted, leaseUntil, now, out);
    if (wanted <= 0) return;
    const current = this.#s.group!.get(type, group) as unknown as [number] | undefined;
    let cursor = current ? current[0] : this.attach(type, group, 'earliest', now);
    const start = cursor;
    const keys = new Set<string>();
    let scanned = 0;
    // The run of unkeyed messages being read: rows come in seq order, and a keyed one ends the run.
    let first = -1;
    let last = -1;
    while (wanted > 0 && scanned < MAX_SCAN) {
      const rows = s.fresh!.all(type, cursor, wanted) as unknown as unknown[][];
      const leased: SQLInputValue[] = [];
      scanned += rows.length;
      for (const row of rows) {
        const seq = row[0] as number;
        const key = row[5] as string | null;
        cursor = seq + 1;
        if (key === null) {
          if (first < 0) first = seq;
          last = seq;
        } else {
          if (first >= 0) this.#leases.add(type, group, first, last, leaseUntil, owner);
          first = -1;
          if (keys.has(key) || s.keyPending!.get(type, group, key) !== undefined) {
            s.addPending!.run(type, group, seq, key, 0, BLOCKED, null);
            continue;
          }
          keys.add(key);
          leased.push(seq, key);
        }
        out.push({ type, seq, attempt: 1, message: toMessage(type, seq, row, 1) });
        wanted--;
      }
      this.#leaseFresh(type, group, owner, leaseUntil, leased);
      if (rows.length === 0 || wanted <= 0) break;
    }
    if (first >= 0) this.#leases.add(type, group, first, last, leaseUntil, owner);
    if (cursor !== start) s.setCursor!.run(cursor, type, group);
  }

  /** Inserts leased pending rows of keyed messages, given as flat (seq, key) pairs, a chunk per statement. */
  #leaseFresh(type: string, group: string, owner: string, leaseUntil: number, pairs: SQLInputValue[]): void {
    for (let from = 0; from < pairs.length; from += CHUNK * 2) {
      const chunk = pairs.slice(from, from + CHUNK * 2);
      const rows = chunk.length / 2;
      const statement = this.#many(`lease:${rows}`, () => {
        const values = Array.from({ length: rows }, (_, i) => `(?1, ?2, ?${5 + 2 * i}, ?${6 + 2 * i}, 1, ?3, 0, ?4)`);
        return `INSERT INTO pending (type, grp, seq, key, attempt, lease_until, not_before, owner) VALUES ${values.join(', ')}`;
      });
      statement.run(type, group, leaseUntil, owner, ...chunk);
    }
  }

  /**
   * Takes acked messages of one group out of their runs, deletes the pending rows of the others, a chunk per
   * statement, then makes the next message of each of their keys ready (it was blocked behind the acked one).
   */
  ack(type: string, group: string, acked: readonly number[], keys: Iterable<string>): void {
    const seqs = this.#leases.ack(type, group, acked);
    for (let from = 0; from < seqs.length; from += CHUNK) {
      const chunk = seqs.slice(from, from + CHUNK);
      const statement = this.#many(`ack:${chunk.length}`, () => {
        const list = Array(chunk.length).fill('?').join(', ');
        return `DELETE FROM pending WHERE type = ? AND grp = ? AND seq IN (${list})`;
      });
      statement.run(type, group, ...chunk);
    }
    for (const key of keys) this.#s.promote!.run(type, group, key);
  }

  /**
   * Unblocks every blocked row that has nothing before it for its key. busbar's own acks and trims keep that true;
   * this repairs what a foreign consumer that deleted a row without promoting the next one left behind.
   */
  repair(): void {
    for (const [type, group] of this.#s.allGroups!.all() as unknown as [string, string][]) {
      this.#s.repair!.run(type, group);
    }
  }

  /** A cached statement whose SQL depends on a row count. */
  #many(name: string, sql: () => string): StatementSync {
    let statement = this.#inserts.get(name);
    if (!statement) {
      statement = this.db.prepare(sql());
      this.#inserts.set(name, statement);
    }
    return statement;
  }

  /** Only the holder of this very delivery (owner and attempt) may return it: a lease lost to another stays theirs. */
  nack(type: string, group: string, seq: number, owner: string, attempt: number, notBefore: number): void {
    if (this.#leases.nack(type, group, seq, owner, attempt, notBefore)) return;
    this.#s.nack!.run(notBefore, type, group, seq, owner, attempt);
  }

  release(type: string, group: string, owner: string): void {
    this.#s.release!.run(type, group, owner);
    this.#leases.release(type, group, owner);
  }

  /** When the next lease expires or nack delay ends in the group (null: nothing is waiting on time). */
  nextDeadline(type: string, group: string, now: number): number | null {
    const [pending, run] = this.#s.deadline!.get(type, group, now) as unknown as [number | null, number | null];
    return pending === null || (run !== null && run < pending) ? run : pending;
  }

  /** Enforces age and byte limits on one type; removes pending rows of trimmed messages too. */
  trim(type: string, retention: Retention, bytes: number, now: number): void {
    let cutoff = 0;
    if (retention.maxAgeMs !== undefined) {
      const live = this.#s.oldestLive!.get(type, now - retention.maxAgeMs) as unknown as [number] | undefined;
      cutoff = live ? live[0] : Number.MAX_SAFE_INTEGER;
    }
    if (retention.maxBytes !== undefined && bytes > retention.maxBytes) {
      let excess = bytes - retention.maxBytes;
      for (const row of this.#s.sizesFromOldest!.iterate(type) as unknown as Iterable<[number, number]>) {
        if (excess <= 0) break;
        excess -= row[1];
        cutoff = Math.max(cutoff, row[0] + 1);
      }
    }
    if (cutoff === 0) return;
    let removed = 0;
    let freed = 0;
    for (const row of this.#s.trimMessages!.all(type, cutoff) as unknown as [number][]) {
      removed++;
      freed += row[0];
    }
    if (removed === 0) return;
    this.#s.trimPending!.run(type, cutoff);
    this.#leases.trim(type, cutoff);
    this.#s.count!.get(-removed, -freed, type);
    // Trimmed rows may have been first in line for their keys.
    for (const [t, group] of this.#s.allGroups!.all() as unknown as [string, string][]) {
      if (t === type) this.#s.repair!.run(type, group);
    }
  }

  trimAll(now: number): void {
    for (const row of this.#s.limits!.all() as unknown as [string, number | null, number | null, number][]) {
      this.trim(row[0], { maxAgeMs: row[1] ?? undefined, maxBytes: row[2] ?? undefined }, row[3], now);
    }
  }

  typeInfo(type: string): (TypeInfo & { depth: number; bytes: number }) | undefined {
    const row = this.#s.typeRow!.get(type) as unknown as TypeRow | undefined;
    return row && typeInfo(row);
  }

  listTypes(): (TypeInfo & { depth: number; bytes: number })[] {
    return (this.#s.typeRows!.all() as unknown as TypeRow[]).map(typeInfo);
  }

  /** Partitions only grow: a smaller number (from a racing process) changes nothing. */
  growPartitions(type: string, partitions: number): void {
    this.#s.growPartitions!.run(partitions, type);
  }

  setRetention(type: string, retention: Retention): void {
    this.#s.setRetention!.run(retention.maxAgeMs ?? null, retention.maxBytes ?? null, type);
  }

  purge(type: string): void {
    const last = (this.#s.lastSeq!.get(type) as unknown as [number | null])[0];
    if (last !== null) this.#s.purgeCursors!.run(last + 1, type);
    this.#s.purgeMessages!.run(type);
    this.#s.purgePending!.run(type);
    this.#leases.purge(type);
    this.#s.zeroCounters!.run(type);
  }

  deleteType(type: string): void {
    this.#s.purgeMessages!.run(type);
    this.#s.purgePending!.run(type);
    this.#leases.purge(type);
    this.#s.deleteGroups!.run(type);
    this.#s.deleteType!.run(type);
  }

  stats(type: string, now: number): TypeStats | undefined {
    const info = this.typeInfo(type);
    if (!info) return undefined;
    const s = this.#s;
    const groups: GroupStats[] = [];
    for (const [group, cursor] of s.groupRows!.all(type) as unknown as [string, number][]) {
      const fresh = (s.unreadFresh!.get(type, cursor) as unknown as [number])[0];
      const [pending, inflight, minPending] = this.#leases.stats(
        type,
        group,
        now,
        s.pendingStats!.get(now, type, group) as unknown as [number, number, number | null],
      );
      let oldestMs: number | null = null;
      if (minPending !== null)
        oldestMs = (s.publishedAt!.get(minPending) as unknown as [number] | undefined)?.[0] ?? null;
      const first = s.firstFresh!.get(type, cursor) as unknown as [number] | undefined;
      if (first && (oldestMs === null || first[0] < oldestMs)) oldestMs = first[0];
      groups.push({
        group,
        unread: fresh + pending,
        inflight,
        oldestAgeMs: oldestMs === null ? null : Math.max(0, now - oldestMs),
      });
    }
    return { type, depth: info.depth, bytes: info.bytes, partitions: info.partitions, groups };
  }
}

type TypeRow = [string, number, number | null, number | null, number, number];

function typeInfo(row: TypeRow): TypeInfo & { depth: number; bytes: number } {
  const retention: Retention = {};
  if (row[2] !== null) retention.maxAgeMs = row[2];
  if (row[3] !== null) retention.maxBytes = row[3];
  return { type: row[0], partitions: row[1], retention, depth: row[4], bytes: row[5] };
}
