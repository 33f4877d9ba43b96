/**
 * A fix for rhea 3.0.5's coalescing of dispositions. Settling several deliveries in one tick sends one disposition
 * frame per run of consecutive delivery ids with the same outcome. rhea's `write_dispositions` (lib/session.js)
 * compares outcomes only once a run holds two deliveries, so the second delivery always joins the first's run:
 * `accept()` on delivery 0 and `modified()` on delivery 1 in the same tick go out as ONE frame, first 0, last 1,
 * state accepted. The broker then drops a message busbar meant to return (an ack beside a nack, or beside the close
 * that hands held deliveries back): a silent loss.
 *
 * The patch splits the session's pending dispositions into runs of equivalent outcomes and lets rhea write each run
 * on its own, where its coalescing is correct. It wraps the prototype of rhea's internal `Incoming` once, reached
 * through a session, because rhea does not export the class.
 *
 * It also teaches rhea what the transactional acks of transactions.ts use: one state object (a transaction's
 * `transactional-state`) is equivalent to itself, so the acks of a transaction coalesce like plain `accepted` ones
 * (rhea batches `accepted` only); and the coordinator terminus (0x30) and the `declared` (0x33) and
 * `transactional-state` (0x34) outcomes pass through as the described values they are, where rhea, which does not
 * know them, would print a warning to the console for each.
 */
import { createRequire } from 'node:module';
import rhea, { type Session } from 'rhea';

interface PendingDisposition {
  readonly state: unknown;
  readonly settled: boolean;
}

interface Incoming {
  updated: PendingDisposition[];
  process(session: unknown): void;
}

const PATCHED = Symbol.for('busbar.amqp10.dispositions');
const TRANSACTION_TYPES = new Set([0x30, 0x33, 0x34]);

interface Described {
  descriptor?: { value?: unknown };
}

const outcomes = rhea.message as unknown as {
  are_outcomes_equivalent(a: unknown, b: unknown): boolean;
  unwrap_outcome(outcome: unknown): unknown;
  [PATCHED]?: true;
};
const originalEquivalent = outcomes.are_outcomes_equivalent;
const equivalent = (a: unknown, b: unknown): boolean => (a !== undefined && a === b) || originalEquivalent(a, b);

/** Installs the module-level patches once per process (rhea's message and terminus modules are singletons). */
function teachRhea(): void {
  if (outcomes[PATCHED]) return;
  outcomes.are_outcomes_equivalent = equivalent;
  const unwrapOutcome = outcomes.unwrap_outcome;
  outcomes.unwrap_outcome = (outcome: unknown) =>
    TRANSACTION_TYPES.has(Number((outcome as Described | undefined)?.descriptor?.value))
      ? outcome
      : unwrapOutcome(outcome);
  // Not exported by rhea's main module, but the same singleton its links use.
  const terminus = createRequire(import.meta.url)('rhea/lib/terminus.js') as { unwrap(field: unknown): unknown };
  const unwrapTerminus = terminus.unwrap;
  terminus.unwrap = (field: unknown) =>
    TRANSACTION_TYPES.has(Number((field as Described | undefined)?.descriptor?.value)) ? field : unwrapTerminus(field);
  outcomes[PATCHED] = true;
}

/** Splits `updated` into runs that rhea's coalescing writes correctly: same outcome and same settled flag. */
export function runsOf(updated: readonly PendingDisposition[]): PendingDisposition[][] {
  const runs: PendingDisposition[][] = [];
  for (const delivery of updated) {
    const run = runs.at(-1);
    const last = run?.at(-1);
    if (run && last && last.settled === delivery.settled && equivalent(last.state, delivery.state)) run.push(delivery);
    else runs.push([delivery]);
  }
  return runs;
}

/** Installs the fix on rhea's Incoming prototype (once per process), from any session. */
export function fixDispositions(session: Session): void {
  teachRhea();
  const incoming = (session as unknown as { incoming?: Incoming }).incoming;
  const proto = incoming && (Object.getPrototypeOf(incoming) as Incoming & { [PATCHED]?: true });
  if (!proto || proto[PATCHED] || typeof proto.process !== 'function') return;
  const original = proto.process;
  proto.process = function process(this: Incoming, owner: unknown): void {
    if (this.updated.length > 1) {
      const runs = runsOf(this.updated);
      for (const run of runs.slice(0, -1)) {
        this.updated = run;
        original.call(this, owner);
      }
      this.updated = runs.at(-1) ?? [];
    }
    original.call(this, owner);
  };
  proto[PATCHED] = true;
}
