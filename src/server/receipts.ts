/**
 * Receipts: signed tokens over (type, group, message id, delivery, owner replica). A client cannot forge one, nor
 * move one to another group, type, message or delivery, because every field is under the signature.
 *
 * The signature costs one HMAC per pull, not one per message. A pull is signed as a whole: its part of every
 * receipt, `<key id>.<pull>` where `pull` is base64url JSON of (type, group, owner, pull id), gives a pull key
 * K = HMAC-SHA256(secret, pull) that never leaves the gateway. Each message's receipt then adds its index in the
 * pull, its message id and a tag over both under that key:
 *
 *   `<key id>.<pull>.<index>.<message id, base64url>.<tag>`,  tag = SHA3-256(K ‖ index ‖ message id)[..22 chars]
 *
 * SHA-3 has no length extension, so a secret-key prefix makes it a MAC (the construction KMAC builds on); it costs
 * a fraction of an HMAC. The tag (132 bits) binds the message id and the delivery (the pull id is unique per pull,
 * the index per message in it); K binds type, group and owner. So each receipt stays individually verifiable and
 * ackable, by any replica with the same secret, after a restart too (it is then recognised as expired, not forged).
 *
 * The key id (8 characters derived from the secret, never the secret itself) tells a receipt signed under another
 * secret apart from a forged one, so replicas that were given different `receiptSecret`s get an error that says so.
 * `owner` is the URL of the replica that holds the lease: any replica with the same secret verifies a receipt, and
 * hands a foreign one to its owner (replicas.ts).
 */
import { createHmac, createSecretKey, hash, type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import { httpError } from './errors.ts';

export interface ReceiptClaims {
  readonly type: string;
  readonly group: string;
  readonly messageId: string;
  /** The pull that delivered it: unique per pull, so a receipt of an earlier delivery cannot settle a later one. */
  readonly pull: string;
  /** Its place in that pull. */
  readonly index: number;
  /** The URL other replicas reach the leasing replica at ('' when it was issued by a lone gateway). */
  readonly owner: string;
}

const MAX_RECEIPT_LENGTH = 2048;
const B64URL = /^[A-Za-z0-9_-]+$/;
const INDEX = /^(?:0|[1-9][0-9]{0,5})$/;
const CONTEXT = 'busbar-receipt-v3.';
const TAG_CHARS = 22;

export const SECRET_HINT =
  'every replica behind one load balancer must be given the same server.receiptSecret (or BUSBAR_RECEIPT_SECRET)';

/** The signing side of one pull: `sign(index, messageId)` per message, after one HMAC for the pull. */
export interface PullSigner {
  readonly pull: string;
  sign(index: number, messageId: string): string;
}

/** A pull part already checked in this request: its fields, and its key (made once, on the first slow check). */
interface KnownPull {
  readonly fields: readonly [string, string, string, string] | undefined;
  key?: string;
}

/** Per-request memory of the pull parts met so far: a batch of receipts from one pull parses and keys it once. */
export type VerifyCache = Map<string, KnownPull>;

export class ReceiptSigner {
  // A KeyObject made once: handing createHmac raw bytes re-imports the key on every pull.
  readonly #secret: KeyObject;
  /** Names the secret in every receipt (a truncated HMAC of a constant: it reveals nothing about the secret). */
  readonly keyId: string;
  /** True when the secret came from the config (shared by replicas), false when made up for this process. */
  readonly shared: boolean;
  // Pull ids only need to be unique (the signature makes them unforgeable): a random run prefix and a counter.
  readonly #run = randomBytes(9).toString('base64url');
  #count = 0;

  /** `secret` from the config keeps receipts of a previous run recognisable (as expired rather than forged). */
  constructor(secret?: string) {
    this.shared = secret !== undefined;
    this.#secret = createSecretKey(secret ? Buffer.from(secret, 'utf8') : randomBytes(32));
    this.keyId = createHmac('sha256', this.#secret).update('busbar-key-id').digest('base64url').slice(0, 8);
  }

  /** The pull's key, as text to prefix (never sent anywhere). */
  #pullKey(pullPart: string): string {
    return createHmac('sha256', this.#secret).update(CONTEXT).update(pullPart).digest('base64url');
  }

  /** Starts signing the receipts of one pull of (type, group) leased by `owner`. */
  openPull(type: string, group: string, owner: string): PullSigner {
    const pull = `${this.#run}${(this.#count++).toString(36)}`;
    const pullPart = Buffer.from(JSON.stringify([type, group, owner, pull])).toString('base64url');
    const key = this.#pullKey(pullPart);
    const prefix = `${this.keyId}.${pullPart}.`;
    return {
      pull,
      sign(index: number, messageId: string): string {
        const id = Buffer.from(messageId).toString('base64url');
        return `${prefix}${index}.${id}.${tagOf(key, index, id)}`;
      },
    };
  }

  /**
   * The claims of a genuine receipt; throws BUSBAR_ERR_INVALID_RECEIPT (400) for anything else. `issued(pull, index)`
   * may give the receipt this signer issued there (a lease still outstanding): the receipt is then compared with it
   * in constant time instead of computing its tag. `cache` spares parsing and keying one pull again per receipt.
   */
  verify(
    receipt: unknown,
    issued?: (pull: string, index: number) => string | undefined,
    cache: VerifyCache = new Map(),
  ): ReceiptClaims {
    const bad = (why: string) =>
      httpError('BUSBAR_ERR_INVALID_RECEIPT', `${why}: send receipts exactly as a pull or stream returned them`);
    if (typeof receipt !== 'string' || receipt.length === 0 || receipt.length > MAX_RECEIPT_LENGTH) {
      throw bad('a receipt must be a non-empty string of at most 2048 characters');
    }
    const [keyId, pullPart, indexText, id, tag, extra] = receipt.split('.');
    if (
      !keyId ||
      !pullPart ||
      !indexText ||
      !id ||
      !tag ||
      extra !== undefined ||
      !INDEX.test(indexText) ||
      tag.length !== TAG_CHARS ||
      !B64URL.test(tag) ||
      !B64URL.test(id)
    ) {
      throw bad('malformed receipt');
    }
    if (keyId !== this.keyId) {
      throw httpError(
        'BUSBAR_ERR_INVALID_RECEIPT',
        `the receipt was signed under another receipt secret (key id ${keyId}; this gateway's is ${this.keyId}): ` +
          `it comes from a gateway that was given a different secret, or from before a secret change, or it is ` +
          `forged. ${SECRET_HINT}; nothing was settled`,
      );
    }
    let known = cache.get(pullPart);
    if (!known) {
      known = { fields: parsePull(pullPart) };
      cache.set(pullPart, known);
    }
    const index = Number(indexText);
    const fields = known.fields;
    const issuedHere = fields && issued?.(fields[3], index);
    let genuine: boolean;
    if (issuedHere !== undefined) {
      genuine = sameText(receipt, issuedHere);
    } else {
      // A malformed pull part is keyed and compared all the same, so it costs what a forged one does.
      known.key ??= this.#pullKey(pullPart);
      genuine = sameText(tag, tagOf(known.key, index, id));
    }
    if (!genuine) throw bad('receipt signature does not match (forged or altered)');
    if (!fields) throw bad('malformed receipt');
    const [type, group, owner, pull] = fields;
    return { type, group, owner, pull, index, messageId: Buffer.from(id, 'base64url').toString('utf8') };
  }
}

function tagOf(key: string, index: number, id: string): string {
  return hash('sha3-256', `${key}.${index}.${id}`, 'base64url').slice(0, TAG_CHARS);
}

function sameText(given: string, expected: string): boolean {
  const a = Buffer.from(given, 'latin1');
  const b = Buffer.from(expected, 'latin1');
  return a.length === b.length && timingSafeEqual(a, b);
}

function parsePull(pullPart: string): KnownPull['fields'] {
  if (!B64URL.test(pullPart)) return undefined;
  try {
    const fields: unknown = JSON.parse(Buffer.from(pullPart, 'base64url').toString('utf8'));
    if (Array.isArray(fields) && fields.length === 4 && fields.every((f) => typeof f === 'string')) {
      return fields as unknown as [string, string, string, string];
    }
  } catch {}
  return undefined;
}
