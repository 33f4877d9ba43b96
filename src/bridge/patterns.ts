/**
 * Which source types a bridge moves, and what each is called at the target.
 *
 * A type pattern is a type name in which `*` stands for one dot-separated part or a piece of one (`orders.*` matches
 * `orders.created`, not `orders.eu.created`; `order-*` matches `order-eu`) and `**` for any run of characters, dots
 * included (`orders.**` matches both). A name without `*` is exact. A rename `from=to` maps an exact name, or a
 * pattern whose wildcards `to` reuses in order: `legacy.*=shop.*` sends `legacy.orders` to `shop.orders`.
 */
import { BusError, checkTypeName } from '../errors.ts';

/** Characters a type name may hold, and the wildcards; anything else in a pattern is a typo. */
const PATTERN = /^[A-Za-z0-9._*-]{1,200}$/;

export interface TypePattern {
  /** As the user wrote it. */
  readonly text: string;
  /** True when the pattern has no wildcard: it names one type. */
  readonly exact: boolean;
  /** The wildcards' matches, in order, or null when `type` does not match. */
  match(type: string): string[] | null;
}

export function parsePattern(text: string, what = 'type pattern'): TypePattern {
  if (typeof text !== 'string' || !PATTERN.test(text) || text.includes('..') || text.includes('***')) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `invalid ${what} ${JSON.stringify(text)}: write a type name (A-Z a-z 0-9 . _ -), with * for one part of a ` +
        `dotted name (orders.*) or ** for any run of characters (orders.**)`,
    );
  }
  if (!text.includes('*')) {
    checkTypeName(text);
    return { text, exact: true, match: (type) => (type === text ? [] : null) };
  }
  const source = text
    .split(/(\*\*|\*)/)
    .map((part) => (part === '**' ? '(.+)' : part === '*' ? '([^.]+)' : part.replace(/[.-]/g, '\\$&')))
    .join('');
  const regex = new RegExp(`^${source}$`);
  return {
    text,
    exact: false,
    match: (type) => {
      const found = regex.exec(type);
      return found ? found.slice(1) : null;
    },
  };
}

/** Splits `a,b.*` (the CLI's --types) into patterns; blanks between commas are ignored. */
export function parsePatternList(list: string | readonly string[]): TypePattern[] {
  const items = typeof list === 'string' ? list.split(',') : list.flatMap((item) => item.split(','));
  return items
    .map((item) => item.trim())
    .filter((item) => item !== '')
    .map((item) => parsePattern(item));
}

export interface Rename {
  readonly from: TypePattern;
  readonly to: string;
}

/** `from=to`, as --rename takes it. */
export function parseRename(text: string): Rename {
  const eq = text.indexOf('=');
  if (eq <= 0 || eq === text.length - 1) {
    throw new BusError('BUSBAR_ERR_INVALID_ARGUMENT', `a rename is from=to (e.g. orders=shop.orders), not '${text}'`);
  }
  return makeRename(text.slice(0, eq), text.slice(eq + 1));
}

export function makeRename(fromText: string, to: string): Rename {
  const from = parsePattern(fromText, 'rename source');
  const wildcards = (s: string) => (s.match(/\*\*|\*/g) ?? []).length;
  parsePattern(to, 'rename target');
  if (wildcards(to) > wildcards(from.text)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `rename ${fromText}=${to}: the target has more wildcards than the source; each * in the target takes the ` +
        `matching * of the source, in order`,
    );
  }
  return { from, to };
}

/** The target's name for `type`: the first rename that matches, else the same name. */
export function targetTypeOf(type: string, renames: readonly Rename[]): string {
  for (const { from, to } of renames) {
    const parts = from.match(type);
    if (!parts) continue;
    let i = 0;
    const renamed = to.replace(/\*\*|\*/g, () => parts[i++] ?? '');
    return checkTypeName(renamed);
  }
  return type;
}
