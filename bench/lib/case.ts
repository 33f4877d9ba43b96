/**
 * The case factory every bench file uses. A case says what one round of busbar does and what one round of the raw
 * client does; the factory counts what each round handled and fails the case when a round handled other than its
 * `messages`, or received a message twice, so a fast number can never come from lost or repeated work.
 */
import { randomUUID } from 'node:crypto';
import type { TransportMessage } from '../../src/transport/contract.ts';
import type { BenchCase, RunContext } from '../harness.ts';

export const BODY = new Uint8Array(100).fill(0x61);

/** A name no earlier run used: benches never share a type or group with another run, or with each other. */
export function freshName(prefix: string): string {
  return `bench-${prefix}-${randomUUID().slice(0, 8)}`;
}

/** `size` 100-byte messages as the raw side sends them: busbar's envelope, written by the wire mapping's rules. */
export function messagesOf(type: string, size: number, keys = 0): TransportMessage[] {
  const time = new Date().toISOString();
  return Array.from({ length: size }, (_, i) => ({
    id: randomUUID(),
    type,
    source: 'bench',
    time,
    contentType: 'application/octet-stream',
    ...(keys > 0 ? { key: `k${i % keys}` } : {}),
    headers: {},
    body: BODY,
  }));
}

/** Where a side first saw each message id of a case: round 0 is the warm-up. */
export type Sightings = Map<string, { round: number; attempt: number | undefined }>;

/** What one side did in one round: messages the broker confirmed or handed over, and latencies for p50 / p99. */
export class Tally {
  handled = 0;
  readonly latencies: number[] = [];
  readonly #round: number;
  readonly #seen: Sightings;
  readonly #repeats: string[] = [];

  constructor(round: number, seen: Sightings) {
    this.#round = round;
    this.#seen = seen;
  }

  /** Counts `n` messages sent (once the broker confirmed them) or consumed without reading their ids. */
  count(n = 1): void {
    this.handled += n;
  }

  /** Counts one consumed message by id: an id this case already counted is a repeat, and fails the case. */
  received(id: string, attempt?: number): void {
    const first = this.#seen.get(id);
    if (first) {
      this.#repeats.push(
        `${id} (round ${first.round}, attempt ${first.attempt ?? '?'}; again in round ${this.#round}, attempt ${attempt ?? '?'})`,
      );
    } else this.#seen.set(id, { round: this.#round, attempt });
    this.handled++;
  }

  /** Runs `step` and records how long it took as one latency sample. */
  async timed<T>(step: () => Promise<T>): Promise<T> {
    const start = performance.now();
    const result = await step();
    this.latencies.push(performance.now() - start);
    return result;
  }

  verify(expected: number, what: string): void {
    if (this.#repeats.length > 0) {
      throw new Error(`${what}: received ${this.#repeats.length} message(s) twice, e.g. ${this.#repeats[0]}`);
    }
    if (this.handled !== expected) {
      throw new Error(`${what}: handled ${this.handled} messages in a round, expected ${expected}`);
    }
  }
}

export interface CaseSpec {
  name: string;
  transport: string;
  /** Messages one round of each side must handle. */
  messages: number;
  setup?(context: RunContext): Promise<void>;
  teardown?(): Promise<void>;
  subject(tally: Tally): Promise<void>;
  baseline?(tally: Tally): Promise<void>;
}

export function defineCase(spec: CaseSpec): BenchCase {
  const side = (label: string, run: (tally: Tally) => Promise<void>) => {
    const seen: Sightings = new Map();
    let round = 0;
    return async () => {
      const tally = new Tally(round++, seen);
      await run(tally);
      tally.verify(spec.messages, `${spec.transport} '${spec.name}' (${label})`);
      return tally.latencies;
    };
  };
  const baseline = spec.baseline;
  return {
    name: spec.name,
    transport: spec.transport,
    messages: spec.messages,
    ...(spec.setup ? { setup: spec.setup } : {}),
    ...(spec.teardown ? { teardown: spec.teardown } : {}),
    subject: side('busbar', spec.subject),
    ...(baseline ? { baseline: side('baseline', baseline) } : {}),
  };
}

/** Undo steps registered as resources are made, run newest first; every step runs even when an earlier one fails. */
export class Cleanup {
  readonly #steps: (() => unknown)[] = [];

  add(step: () => unknown): void {
    this.#steps.push(step);
  }

  async run(): Promise<void> {
    const failures: unknown[] = [];
    for (const step of this.#steps.splice(0).reverse()) {
      try {
        await step();
      } catch (error) {
        failures.push(error);
      }
    }
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new AggregateError(failures, 'several bench resources failed to clean up');
  }
}
