/**
 * Range leases (schema 2): one `leases` row leases a run of consecutive unkeyed messages of a type to one
 * subscription. A claim writes one row per run instead of one pending row per message, and acks that arrive in order
 * move the run's start instead of deleting a row each: these row writes were most of consume+ack's cost (a profile
 * put 36% of a consumer's CPU in inserting and deleting pending rows; BENCHMARKS.md). Keyed messages keep their pending rows (per-key order needs
 * them), so a run never spans a keyed message of its type. docs/wire/embedded.md gives the rules.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { toMessage } from './rows.ts';
import type { Claimed } from './store.ts';

interface Run {
  readonly first: number;
  readonly last: number;
  readonly attempt: number;
  readonly leaseUntil: number;
  readonly owner: string | null;
}

export class Leases {
  readonly #s: Record<string, StatementSync>;

  constructor(db: DatabaseSync, messageColumns: string) {
    const prepare = (sql: string) => {
      const statement = db.prepare(sql);
      statement.setReturnArrays(true);
      return statement;
    };
    this.#s = {
      at: prepare(
        `SELECT first_seq, last_seq, attempt, lease_until, owner FROM leases
         WHERE type = ? AND grp = ? AND first_seq <= ? ORDER BY first_seq DESC LIMIT 1`,
      ),
      add: prepare(
        'INSERT INTO leases (type, grp, first_seq, last_seq, attempt, lease_until, owner) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      remove: prepare('DELETE FROM leases WHERE type = ? AND grp = ? AND first_seq = ?'),
      moveFirst: prepare('UPDATE leases SET first_seq = ? WHERE type = ? AND grp = ? AND first_seq = ?'),
      take: prepare(
        'UPDATE leases SET attempt = ?, lease_until = ?, owner = ? WHERE type = ? AND grp = ? AND first_seq = ?',
      ),
      count: prepare('SELECT count(*) FROM messages WHERE type = ? AND seq BETWEEN ? AND ?'),
      next: prepare('SELECT seq FROM messages WHERE type = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT 1'),
      memberSeqs: prepare('SELECT seq FROM messages WHERE type = ? AND seq BETWEEN ? AND ? ORDER BY seq'),
      members: prepare(
        `SELECT m.seq, ${messageColumns} FROM messages m WHERE m.type = ? AND m.seq BETWEEN ? AND ? ORDER BY m.seq LIMIT ?`,
      ),
      ready: prepare(
        `SELECT first_seq, last_seq, attempt FROM leases WHERE type = ?1 AND grp = ?2 AND lease_until BETWEEN 0 AND ?3
         ORDER BY lease_until, first_seq LIMIT 1`,
      ),
      returned: prepare(
        'INSERT INTO pending (type, grp, seq, key, attempt, lease_until, not_before, owner) VALUES (?, ?, ?, NULL, ?, 0, ?, NULL)',
      ),
      release: prepare(
        'UPDATE leases SET lease_until = 0, owner = NULL WHERE type = ? AND grp = ? AND owner = ? AND lease_until > 0',
      ),
      removeOne: prepare('DELETE FROM leases WHERE type = ? AND grp = ? AND first_seq = ?3 AND last_seq = ?3'),
      // The run that starts at ?3 starts at its next member instead (none left: no change, the long way removes it).
      ackFirst: prepare(
        `UPDATE leases SET first_seq = (SELECT min(seq) FROM messages WHERE type = ?1 AND seq > ?3 AND seq <= leases.last_seq)
         WHERE type = ?1 AND grp = ?2 AND first_seq = ?3 AND last_seq > ?3
           AND EXISTS (SELECT 1 FROM messages WHERE type = ?1 AND seq > ?3 AND seq <= leases.last_seq)`,
      ),
      stats: prepare(
        `SELECT count(*), coalesce(sum(l.lease_until > ?1), 0), min(m.seq) FROM leases l
         JOIN messages m ON m.type = l.type AND m.seq BETWEEN l.first_seq AND l.last_seq
         WHERE l.type = ?2 AND l.grp = ?3`,
      ),
      trim: prepare('DELETE FROM leases WHERE type = ? AND last_seq < ?'),
      purge: prepare('DELETE FROM leases WHERE type = ?'),
    };
  }

  /** Leases the run first..last (consecutive unkeyed messages of `type`, as a claim read them). */
  add(type: string, group: string, first: number, last: number, leaseUntil: number, owner: string): void {
    this.#s.add!.run(type, group, first, last, 1, leaseUntil, owner);
  }

  /** The run that holds `seq`, if one does. */
  #at(type: string, group: string, seq: number): Run | undefined {
    const row = this.#s.at!.get(type, group, seq) as unknown as [number, number, number, number, string | null];
    if (row === undefined || row[1] < seq) return undefined;
    return { first: row[0], last: row[1], attempt: row[2], leaseUntil: row[3], owner: row[4] };
  }

  /**
   * Settles acked messages: takes them out of their runs. Returns those that are in no run (keyed messages, or rows
   * another program made pending), ascending, whose pending rows the caller deletes.
   */
  ack(type: string, group: string, acked: readonly number[]): number[] {
    const seqs = ascending(acked);
    // One ack per commit (each ack awaited) is usually of a run's first member: the run's start moves on, or a run
    // of one goes. One statement (two for the run's last), where finding the run and its next member took four.
    if (seqs.length === 1) {
      const seq = seqs[0]!;
      if (this.#s.ackFirst!.run(type, group, seq).changes === 1) return [];
      if (this.#s.removeOne!.run(type, group, seq).changes === 1) return [];
    }
    const rest: number[] = [];
    for (let i = 0; i < seqs.length; ) {
      const run = this.#at(type, group, seqs[i]!);
      if (!run) {
        rest.push(seqs[i++]!);
        continue;
      }
      let end = i + 1;
      while (end < seqs.length && seqs[end]! <= run.last) end++;
      this.#cut(type, group, run, seqs.slice(i, end));
      i = end;
    }
    return rest;
  }

  /**
   * Removes members (ascending) from a run. Acks in delivery order remove a prefix: the run's start moves on. Any
   * other pattern splits the run into the pieces left, each leased as the run was.
   */
  #cut(type: string, group: string, run: Run, seqs: readonly number[]): void {
    const s = this.#s;
    const top = seqs[seqs.length - 1]!;
    if (top === run.last && top === run.first) {
      // A run of one (each ack awaited: one message per claim): no member to look up.
      s.remove!.run(type, group, run.first);
      return;
    }
    // A prefix starts at the run's first member (a run whose first members were trimmed just takes the long way).
    const prefix =
      seqs[0] === run.first &&
      (seqs.length === 1 || (s.count!.get(type, run.first, top) as unknown as [number])[0] === seqs.length);
    if (prefix) {
      const next = s.next!.get(type, top, run.last) as unknown as [number] | undefined;
      if (next === undefined) s.remove!.run(type, group, run.first);
      else s.moveFirst!.run(next[0], type, group, run.first);
      return;
    }
    s.remove!.run(type, group, run.first);
    let j = 0;
    let first = -1;
    let last = -1;
    for (const [seq] of s.memberSeqs!.all(type, run.first, run.last) as unknown as [number][]) {
      while (j < seqs.length && seqs[j]! < seq) j++;
      if (j < seqs.length && seqs[j] === seq) {
        if (first >= 0) s.add!.run(type, group, first, last, run.attempt, run.leaseUntil, run.owner);
        first = -1;
        continue;
      }
      if (first < 0) first = seq;
      last = seq;
    }
    if (first >= 0) s.add!.run(type, group, first, last, run.attempt, run.leaseUntil, run.owner);
  }

  /**
   * A nack of a message in a run, by the holder of that very delivery, moves it out of the run into a ready pending
   * row (due at `notBefore`). Returns false when `seq` is in no run (the caller nacks its pending row instead).
   */
  nack(type: string, group: string, seq: number, owner: string, attempt: number, notBefore: number): boolean {
    const run = this.#at(type, group, seq);
    if (!run) return false;
    if (run.owner === owner && run.attempt === attempt) {
      this.#cut(type, group, run, [seq]);
      this.#s.returned!.run(type, group, seq, attempt, notBefore);
    }
    return true;
  }

  /**
   * Leases up to `wanted` messages of runs that are ready (returned by a closing subscription, or expired) to
   * `owner`, a run at a time; the part of a run beyond `wanted` stays ready. Returns how many it took. The caller
   * probes first whether any run is ready (one statement for pending rows and runs).
   */
  claim(
    type: string,
    group: string,
    owner: string,
    wanted: number,
    leaseUntil: number,
    now: number,
    out: Claimed[],
  ): number {
    const s = this.#s;
    let taken = 0;
    while (taken < wanted) {
      const run = s.ready!.get(type, group, now) as unknown as [number, number, number] | undefined;
      if (run === undefined) break;
      const [first, last] = run;
      const attempt = run[2] + 1;
      const left = wanted - taken;
      const rows = s.members!.all(type, first, last, left + 1) as unknown as unknown[][];
      if (rows.length === 0) {
        // Every member was trimmed.
        s.remove!.run(type, group, first);
        continue;
      }
      if (rows.length <= left) {
        s.take!.run(attempt, leaseUntil, owner, type, group, first);
      } else {
        // The rest of the run, from the member after the part taken (read as row `left`), stays ready.
        s.moveFirst!.run(rows[left]![0] as number, type, group, first);
        rows.length = left;
        s.add!.run(type, group, first, rows[left - 1]![0] as number, attempt, leaseUntil, owner);
      }
      for (const row of rows) {
        const seq = row[0] as number;
        out.push({ type, seq, attempt, message: toMessage(type, seq, row, 1) });
      }
      taken += rows.length;
    }
    return taken;
  }

  release(type: string, group: string, owner: string): void {
    this.#s.release!.run(type, group, owner);
  }

  /**
   * Adds to `pending` (the group's pending rows: how many, how many leased now, the lowest seq) the same figures of
   * its runs' messages.
   */
  stats(type: string, group: string, now: number, pending: PendingStats): PendingStats {
    const runs = this.#s.stats!.get(now, type, group) as unknown as PendingStats;
    const min = pending[2] === null ? runs[2] : runs[2] === null ? pending[2] : Math.min(pending[2], runs[2]);
    return [pending[0] + runs[0], pending[1] + runs[1], min];
  }

  /** Drops runs whose every member is below `cutoff` (trimmed); a run that straddles it just has fewer members. */
  trim(type: string, cutoff: number): void {
    this.#s.trim!.run(type, cutoff);
  }

  purge(type: string): void {
    this.#s.purge!.run(type);
  }
}

/** Seqs in ascending order without duplicates (acks usually arrive in order already). */
function ascending(seqs: readonly number[]): number[] {
  let sorted = true;
  for (let i = 1; i < seqs.length && sorted; i++) sorted = seqs[i - 1]! < seqs[i]!;
  if (sorted) return seqs as number[];
  return [...new Set(seqs)].sort((a, b) => a - b);
}

type PendingStats = [count: number, inflight: number, minSeq: number | null];
