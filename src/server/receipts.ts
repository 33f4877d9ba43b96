/**
 * Receipts: HMAC-SHA256-signed tokens over (type, group, message id, delivery nonce, owner replica). A client cannot
 * forge one, nor move one to another group or type, because every field is under the signature.
 *
 * Form: `<key id>.<payload>.<mac>`. The key id (8 characters derived from the secret, never the secret itself)
 * tells a receipt signed under another secret apart from a forged one, so replicas that were given different
 * `receiptSecret`s get an error that says so. `owner` is the URL of the replica that holds the lease: any replica
 * with the same secret verifies a receipt, and hands a foreign one to its owner (replicas.ts).
 */
import { createHmac, createSecretKey, type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import { httpError } from './errors.ts';

export interface ReceiptClaims {
  readonly type: string;
  readonly group: string;
  readonly messageId: string;
  /** Unique per delivery, so a receipt of an earlier delivery of the same message cannot settle a later one. */
  readonly nonce: string;
  /** The URL other replicas reach the leasing replica at ('' when it was issued by a lone gateway). */
  readonly owner: string;
}

const MAX_RECEIPT_LENGTH = 2048;
const B64URL = /^[A-Za-z0-9_-]+$/;
const CONTEXT = 'busbar-receipt-v2.';

export const SECRET_HINT =
  'every replica behind one load balancer must be given the same server.receiptSecret (or BUSBAR_RECEIPT_SECRET)';

export class ReceiptSigner {
  // A KeyObject made once: handing createHmac raw bytes re-imports the key on every receipt.
  readonly #secret: KeyObject;
  /** Names the secret in every receipt (a truncated HMAC of a constant: it reveals nothing about the secret). */
  readonly keyId: string;
  /** True when the secret came from the config (shared by replicas), false when made up for this process. */
  readonly shared: boolean;
  // Nonces only need to be unique (the signature makes them unforgeable): a random run prefix and a counter.
  readonly #run = randomBytes(9).toString('base64url');
  #count = 0;

  /** `secret` from the config keeps receipts of a previous run recognisable (as expired rather than forged). */
  constructor(secret?: string) {
    this.shared = secret !== undefined;
    this.#secret = createSecretKey(secret ? Buffer.from(secret, 'utf8') : randomBytes(32));
    this.keyId = createHmac('sha256', this.#secret).update('busbar-key-id').digest('base64url').slice(0, 8);
  }

  newNonce(): string {
    return `${this.#run}${(this.#count++).toString(36)}`;
  }

  #mac(payload: string): Buffer {
    return createHmac('sha256', this.#secret).update(CONTEXT).update(payload).digest();
  }

  sign(claims: ReceiptClaims): string {
    const payload = Buffer.from(
      JSON.stringify([claims.type, claims.group, claims.messageId, claims.nonce, claims.owner]),
    ).toString('base64url');
    return `${this.keyId}.${payload}.${this.#mac(payload).toString('base64url')}`;
  }

  /**
   * The claims of a genuine receipt; throws BUSBAR_ERR_INVALID_RECEIPT (400) for anything else. `issued(nonce)` may
   * give the receipt this signer issued with that nonce (a lease still outstanding): the receipt is then compared
   * with it in constant time instead of recomputing the HMAC, the costliest part of settling.
   */
  verify(receipt: unknown, issued?: (nonce: string) => string | undefined): ReceiptClaims {
    const bad = (why: string) =>
      httpError('BUSBAR_ERR_INVALID_RECEIPT', `${why}: send receipts exactly as a pull or stream returned them`);
    if (typeof receipt !== 'string' || receipt.length === 0 || receipt.length > MAX_RECEIPT_LENGTH) {
      throw bad('a receipt must be a non-empty string of at most 2048 characters');
    }
    const [keyId, payload, mac, extra] = receipt.split('.');
    if (!keyId || !payload || !mac || extra !== undefined || !B64URL.test(payload) || !B64URL.test(mac)) {
      throw bad('malformed receipt');
    }
    let fields: unknown;
    try {
      fields = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      fields = undefined;
    }
    const genuine = (claims: ReceiptClaims | undefined): boolean => {
      const known = claims && issued?.(claims.nonce);
      const [given, expected] =
        known === undefined
          ? [Buffer.from(mac, 'base64url'), this.#mac(payload)]
          : [Buffer.from(receipt, 'latin1'), Buffer.from(known, 'latin1')];
      return given.length === expected.length && timingSafeEqual(given, expected);
    };
    const forged = () => {
      if (keyId !== this.keyId) {
        return httpError(
          'BUSBAR_ERR_INVALID_RECEIPT',
          `the receipt was signed under another receipt secret (key id ${keyId}; this gateway's is ${this.keyId}): ` +
            `it comes from a gateway that was given a different secret, or from before a secret change, or it is ` +
            `forged. ${SECRET_HINT}; nothing was settled`,
        );
      }
      return bad('receipt signature does not match (forged or altered)');
    };
    if (
      !Array.isArray(fields) ||
      fields.length !== 5 ||
      !fields.every((f) => typeof f === 'string') ||
      keyId !== this.keyId
    ) {
      // Still compare the signature first, so that a malformed payload and a forged one cost the same.
      if (!genuine(undefined)) throw forged();
      throw bad('malformed receipt');
    }
    const [type, group, messageId, nonce, owner] = fields as string[];
    const claims = { type: type!, group: group!, messageId: messageId!, nonce: nonce!, owner: owner! };
    if (!genuine(claims)) throw forged();
    return claims;
  }
}
