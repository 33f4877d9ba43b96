/**
 * The type registry, kept in the broker because AMQP 0-9-1 cannot list queues (and the management plugin may be
 * off). One durable quorum queue holds one JSON document: `{ types: { <type>: { at, deleted?, groups: { <g>: at } } } }`.
 * An update takes every document with basic.get, merges them, applies the change, publishes the result with a
 * confirm and only then acks what it took, so a crash loses nothing. Two writers that race each publish a document;
 * the next reader merges them (last writer wins per type, deletions are timestamped tombstones), so updates are never
 * lost, only briefly split.
 */
import type { Channel, ConfirmChannel, GetMessage } from 'amqplib';
import { REGISTRY_QUEUE } from './wire.ts';

export interface TypeEntry {
  at: number;
  deleted?: boolean;
  groups: Record<string, number>;
}

export interface RegistryDocument {
  types: Record<string, TypeEntry>;
}

/** How long a reader waits for a document that another client holds for a moment. */
const HELD_RETRY_MS = 25;
const HELD_RETRIES = 20;
/** Before this process has seen a document, an empty queue is most likely a new registry: look only briefly. */
const FIRST_LOOK_RETRIES = 3;

/** Tombstones older than this are dropped: by then no split document can still hold the type. */
const TOMBSTONE_TTL_MS = 60 * 60 * 1000;

export function mergeDocuments(documents: readonly RegistryDocument[], now = Date.now()): RegistryDocument {
  const types: Record<string, TypeEntry> = {};
  for (const document of documents) {
    for (const [type, entry] of Object.entries(document.types ?? {})) {
      const current = types[type];
      if (!current) {
        types[type] = { ...entry, groups: { ...entry.groups } };
        continue;
      }
      const newer = entry.at > current.at ? entry : current;
      const groups = newer.deleted ? {} : { ...current.groups, ...entry.groups };
      types[type] = newer.deleted ? { at: newer.at, deleted: true, groups } : { at: newer.at, groups };
    }
  }
  for (const [type, entry] of Object.entries(types)) {
    if (entry.deleted && now - entry.at > TOMBSTONE_TTL_MS) delete types[type];
  }
  return { types };
}

function parse(message: GetMessage): RegistryDocument {
  try {
    const parsed = JSON.parse(message.content.toString('utf8')) as RegistryDocument;
    return parsed && typeof parsed.types === 'object' ? parsed : { types: {} };
  } catch {
    return { types: {} };
  }
}

export class Registry {
  readonly #channel: () => Promise<ConfirmChannel>;
  #declared = false;
  /** Whether a document was ever seen: an empty queue then means another client holds it for a moment. */
  #seen = false;
  /** Updates from this process run one at a time, so they never hide the document from each other. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(channel: () => Promise<ConfirmChannel>) {
    this.#channel = channel;
  }

  async read(): Promise<RegistryDocument> {
    return this.update(() => false);
  }

  /** Applies `change` (returning true when it changed the document) and stores the result. */
  update(change: (document: RegistryDocument) => boolean): Promise<RegistryDocument> {
    const run = this.#queue.then(() => this.#update(change));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #update(change: (document: RegistryDocument) => boolean): Promise<RegistryDocument> {
    const channel = await this.#channel();
    if (!this.#declared) {
      await channel.assertQueue(REGISTRY_QUEUE, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
      this.#declared = true;
    }
    const taken = await this.#takeAll(channel);
    const merged = mergeDocuments(taken.map(parse));
    const changed = change(merged);
    try {
      if (changed || taken.length !== 1) {
        await new Promise<void>((resolve, reject) =>
          channel.sendToQueue(
            REGISTRY_QUEUE,
            Buffer.from(JSON.stringify(merged)),
            { persistent: true, contentType: 'application/json' },
            (error) => (error ? reject(error) : resolve()),
          ),
        );
        for (const message of taken) channel.ack(message);
      } else {
        for (const message of taken) channel.nack(message, false, true);
      }
    } catch (error) {
      for (const message of taken) channel.nack(message, false, true);
      throw error;
    }
    return merged;
  }

  async #takeAll(channel: Channel): Promise<GetMessage[]> {
    const taken: GetMessage[] = [];
    for (let retry = 0; ; retry++) {
      for (;;) {
        const message = await channel.get(REGISTRY_QUEUE, { noAck: false });
        if (!message) break;
        taken.push(message);
      }
      if (taken.length > 0 || retry >= (this.#seen ? HELD_RETRIES : FIRST_LOOK_RETRIES)) break;
      await new Promise((resolve) => setTimeout(resolve, HELD_RETRY_MS));
    }
    if (taken.length > 0) this.#seen = true;
    return taken;
  }
}
