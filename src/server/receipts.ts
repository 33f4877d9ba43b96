/**
 * Receipts: HMAC-SHA256-signed tokens over (type, group, message id, delivery nonce). A client cannot forge one,
 * nor move one to another group or type, because every field is under the signature.
 */
import { createHmac, createSecretKey, type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import { httpError } from './errors.ts';

export interface ReceiptClaims {
  readonly type: string;
  readonly group: string;
  readonly messageId: string;
  /** Unique per delivery, so a receipt of an earlier delivery of the same message cannot settle a later one. */
  readonly nonce: string;
}

const MAX_RECEIPT_LENGTH = 2048;
const B64URL = /^[A-Za-z0-9_-]+$/;
const CONTEXT = 'busbar-receipt-v1.';

export class ReceiptSigner {
  // A KeyObject made once: handing createHmac raw bytes re-imports the key on every receipt.
  readonly #secret: KeyObject;
  // Nonces only need to be unique (the signature makes them unforgeable): a random run prefix and a counter.
  readonly #run = randomBytes(9).toString('base64url');
  #count = 0;

  /** `secret` from the config keeps receipts of a previous run recognisable (as expired rather than forged). */
  constructor(secret?: string) {
    this.#secret = createSecretKey(secret ? Buffer.from(secret, 'utf8') : randomBytes(32));
  }

  newNonce(): string {
    return `${this.#run}${(this.#count++).toString(36)}`;
  }

  #mac(payload: string): Buffer {
    return createHmac('sha256', this.#secret).update(CONTEXT).update(payload).digest();
  }

  sign(claims: ReceiptClaims): string {
    const payload = Buffer.from(JSON.stringify([claims.type, claims.group, claims.messageId, claims.nonce])).toString(
      'base64url',
    );
    return `${payload}.${this.#mac(payload).toString('base64url')}`;
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
    const [payload, mac, extra] = receipt.split('.');
    if (!payload || !mac || extra !== undefined || !B64URL.test(payload) || !B64URL.test(mac)) {
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
    if (!Array.isArray(fields) || fields.length !== 4 || !fields.every((f) => typeof f === 'string')) {
      // Still compare the signature first, so that a malformed payload and a forged one cost the same.
      if (!genuine(undefined)) throw bad('receipt signature does not match (forged, altered, or from another gateway)');
      throw bad('malformed receipt');
    }
    const [type, group, messageId, nonce] = fields as string[];
    const claims = { type: type!, group: group!, messageId: messageId!, nonce: nonce! };
    if (!genuine(claims)) throw bad('receipt signature does not match (forged, altered, or from another gateway)');
    return claims;
  }
}
