/**
 * Idempotency-Key: a retried POST with the same key (and the same request) gets the first answer again instead of
 * publishing twice; a retry that arrives while the first is still in progress waits for it. A failed attempt is
 * forgotten, so its retry publishes. Keys are remembered per caller, in this gateway process, for a limited time.
 */
import { createHash } from 'node:crypto';
import { httpError } from './errors.ts';

export interface StoredAnswer {
  status: number;
  body: unknown;
}

interface Entry {
  fingerprint: string;
  answer: Promise<StoredAnswer>;
  expiresAt: number;
}

const KEY = /^[\x21-\x7e]{1,200}$/;

export function fingerprint(...parts: (string | Uint8Array | undefined)[]): string {
  const hash = createHash('sha256');
  for (const part of parts) {
    hash.update(part === undefined ? '\0u' : typeof part === 'string' ? `\0s${part}` : '\0b');
    if (part instanceof Uint8Array) hash.update(part);
  }
  return hash.digest('hex');
}

export class IdempotencyCache {
  readonly #entries = new Map<string, Entry>();
  readonly #maxEntries: number;
  readonly #ttlMs: number;

  constructor(maxEntries: number, ttlMs: number) {
    this.#maxEntries = maxEntries;
    this.#ttlMs = ttlMs;
  }

  /** Throws 400 for a malformed key. */
  static check(key: string | string[] | undefined): string | undefined {
    if (key === undefined) return undefined;
    if (typeof key !== 'string' || !KEY.test(key)) {
      throw httpError(
        'BUSBAR_ERR_IDEMPOTENCY_KEY',
        'Idempotency-Key must be one header of 1-200 visible ASCII characters (a UUID is a good choice)',
        { status: 400 },
      );
    }
    return key;
  }

  /**
   * Runs `publish` once per (scope, key): later calls with the same fingerprint get the same answer, and calls
   * with another fingerprint fail with 422.
   */
  async run(scope: string, key: string, print: string, publish: () => Promise<StoredAnswer>): Promise<StoredAnswer> {
    const id = `${scope}\0${key}`;
    const now = Date.now();
    const existing = this.#entries.get(id);
    if (existing && existing.expiresAt > now) {
      if (existing.fingerprint !== print) {
        throw httpError(
          'BUSBAR_ERR_IDEMPOTENCY_KEY',
          `Idempotency-Key '${key}' was already used for a different request: use a new key for a new request`,
        );
      }
      return existing.answer;
    }
    if (existing) this.#entries.delete(id);
    this.#evict(now);
    const answer = publish();
    const entry: Entry = { fingerprint: print, answer, expiresAt: now + this.#ttlMs };
    this.#entries.set(id, entry);
    answer.catch(() => {
      if (this.#entries.get(id) === entry) this.#entries.delete(id);
    });
    return answer;
  }

  #evict(now: number): void {
    // Insertion order is expiry order (one TTL for all), so the oldest entries are first.
    for (const [id, entry] of this.#entries) {
      if (entry.expiresAt > now && this.#entries.size < this.#maxEntries) break;
      this.#entries.delete(id);
    }
  }
}
