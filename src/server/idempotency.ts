/**
 * Idempotency-Key: a retried POST with the same key (and the same request) gets the first answer again instead of
 * publishing twice; a retry that arrives while the first is still in progress waits for it. A failed attempt is
 * forgotten, so its retry publishes. Keys are remembered per caller for limits.idempotencyTtlMs: in this process,
 * and, with a shared store (idempotency-store.ts), in a store every replica reads, so that a retry landing on
 * another replica, or on a restarted one, gets the first answer too.
 */
import { createHash, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { isBusError } from '../errors.ts';
import { httpError } from './errors.ts';
import type { SharedIdempotencyStore } from './idempotency-store.ts';

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

  #shared: SharedIdempotencyStore | undefined;
  readonly #pendingMs: number;

  /**
   * `pendingMs`: how long a key claimed in the shared store by a publish still in progress holds off retries
   * elsewhere (longer than a publish may take; if the claiming replica dies, a retry publishes after it).
   */
  constructor(maxEntries: number, ttlMs: number, pendingMs = 30_000) {
    this.#maxEntries = maxEntries;
    this.#ttlMs = ttlMs;
    this.#pendingMs = pendingMs;
  }

  /** Shares answers with the other replicas through `store` from now on. */
  share(store: SharedIdempotencyStore): void {
    this.#shared = store;
  }

  get shared(): SharedIdempotencyStore | undefined {
    return this.#shared;
  }

  async close(): Promise<void> {
    const store = this.#shared;
    this.#shared = undefined;
    await store?.close().catch(() => {});
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
    const shared = this.#shared;
    const answer = shared ? this.#runShared(shared, id, key, print, publish) : publish();
    const entry: Entry = { fingerprint: print, answer, expiresAt: now + this.#ttlMs };
    this.#entries.set(id, entry);
    answer.catch(() => {
      if (this.#entries.get(id) === entry) this.#entries.delete(id);
    });
    return answer;
  }

  /** Claims the key in the shared store, publishes and keeps the answer; or waits for the replica that claimed it. */
  async #runShared(
    store: SharedIdempotencyStore,
    id: string,
    key: string,
    print: string,
    publish: () => Promise<StoredAnswer>,
  ): Promise<StoredAnswer> {
    const storeId = createHash('sha256').update(id).digest('base64url');
    const deadline = Date.now() + this.#pendingMs;
    const unreachable = (error: unknown) =>
      httpError(
        'BUSBAR_ERR_BROKER',
        `the idempotency store (${store.where}) failed: ${(error as Error).message}; nothing was published: retry`,
        { status: 503 },
      );
    for (let pause = 10; ; pause = Math.min(pause * 2, 250)) {
      const token = randomUUID();
      let claim: Awaited<ReturnType<SharedIdempotencyStore['claim']>>;
      try {
        claim = await store.claim(storeId, token, print, this.#pendingMs);
      } catch (error) {
        throw isBusError(error) && error.details?.http ? error : unreachable(error);
      }
      if (claim.state === 'claimed') {
        let answer: StoredAnswer;
        try {
          answer = await publish();
        } catch (error) {
          await store.release(storeId, token).catch(() => {});
          throw error;
        }
        // If this fails the key stays claimed until pendingMs passes; a retry after that publishes again.
        await store.complete(storeId, token, print, answer, this.#ttlMs).catch(() => {});
        return answer;
      }
      if (claim.fingerprint !== print) {
        throw httpError(
          'BUSBAR_ERR_IDEMPOTENCY_KEY',
          `Idempotency-Key '${key}' was already used for a different request: use a new key for a new request`,
        );
      }
      if (claim.state === 'done') return claim.answer;
      if (Date.now() >= deadline) {
        throw httpError(
          'BUSBAR_ERR_TIMEOUT',
          `a request with Idempotency-Key '${key}' is still in progress on another gateway replica: retry with the same key`,
          { status: 503 },
        );
      }
      await sleep(pause);
    }
  }

  #evict(now: number): void {
    // Insertion order is expiry order (one TTL for all), so the oldest entries are first.
    for (const [id, entry] of this.#entries) {
      if (entry.expiresAt > now && this.#entries.size < this.#maxEntries) break;
      this.#entries.delete(id);
    }
  }
}
