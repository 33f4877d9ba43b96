/**
 * A fixed set of names recognised by their bytes: wire decoders (Kafka headers, Redis stream fields) meet the same few
 * attribute names on every message, and matching bytes spares turning each name into a string and comparing strings.
 */
export class ByteNames<T> {
  /** Candidates by byte length: a name is compared only with names as long as it. */
  readonly #byLength: { bytes: Buffer; value: T }[][] = [];

  constructor(entries: readonly (readonly [name: string, value: T])[]) {
    for (const [name, value] of entries) {
      const bytes = Buffer.from(name, 'utf8');
      this.#byLength[bytes.length] ??= [];
      this.#byLength[bytes.length]!.push({ bytes, value });
    }
  }

  /** The value given for the name `raw` spells, or undefined when it is none of them. */
  match(raw: Uint8Array): T | undefined {
    const candidates = this.#byLength[raw.length];
    if (candidates === undefined) return undefined;
    for (const { bytes, value } of candidates) {
      let i = 0;
      while (i < bytes.length && bytes[i] === raw[i]) i++;
      if (i === bytes.length) return value;
    }
    return undefined;
  }
}
