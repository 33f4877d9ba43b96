/**
 * CloudEvents rules every binding shares (docs/wire/): which header names travel as extension attributes, how the
 * other headers ride along where a binding would read them as attributes, and the checks a received `time` and
 * `specversion` pass. The bindings differ only in where they put each kind.
 */

/**
 * The extension attribute that carries, as one JSON object of strings, the headers that cannot be attributes
 * (`x-tenant`, `busbar-dlq-reason`, ...) on bindings where every property is an attribute (MQTT 5 user properties,
 * the JSON event format), and on Kafka, NATS and AMQP the few whose own names a reader would misread (`ce_*` and
 * `content-type`, `ce-*` and `Nats-*`, `cloudEvents:*` and the broker's `x-delivery-count`).
 */
export const HEADERS_EXTENSION = 'busbarheaders';

/** Attributes busbar's envelope sets itself: a header so named is carried, but never as that attribute. */
const ENVELOPE_ATTRIBUTES = new Set(['id', 'source', 'type', 'specversion', 'time', 'datacontenttype', 'partitionkey']);

/**
 * True when a header travels as a CloudEvents extension attribute of the same name: `traceparent`, `tenant`, and the
 * optional core attributes `subject`, `dataschema` that busbar keeps as headers. CloudEvents 1.0 attribute names
 * consist of lower-case ASCII letters and digits only. Names starting with `busbar` are the bus's own bookkeeping on
 * some bindings (`busbarattempt`, `busbarheaders`), so a header so named never is one.
 */
export function isExtensionName(name: string): boolean {
  if (name.length === 0 || ENVELOPE_ATTRIBUTES.has(name) || name.startsWith('busbar')) return false;
  // A loop, not /^[a-z0-9]+$/: publishing runs this for every header of every message.
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (!((c >= 97 && c <= 122) || (c >= 48 && c <= 57))) return false;
  }
  return true;
}

/** The JSON for HEADERS_EXTENSION. */
export function packHeaders(headers: Readonly<Record<string, string>>): string {
  return JSON.stringify(headers);
}

/**
 * Adds the headers a HEADERS_EXTENSION value carries. A value that is not a JSON object of strings (a plain client's
 * own `busbarheaders`) is kept as the header of that name, so nothing is lost and it travels back the same way.
 */
export function unpackHeaders(value: string, into: Record<string, string>): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    parsed = undefined;
  }
  if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
    const entries = Object.entries(parsed);
    if (entries.every(([, v]) => typeof v === 'string')) {
      for (const [name, v] of entries) into[name] = v as string;
      return;
    }
  }
  into[HEADERS_EXTENSION] = value;
}

/**
 * RFC 3339 date-time, read leniently as the JSON Schema `date-time` format the SDKs validate with is: a space for
 * the `T` (Python's `str(datetime)`), lower-case `t` / `z`, and an offset with or without its colon.
 */
const RFC3339 = /^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?(?:([Zz])|([+-])(\d\d)(?::?(\d\d))?)$/;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysIn(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!;
}

function digits(value: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = value.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/** `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with every field in range, checked without a regular expression (4x faster). */
function isUtcForm(value: string): boolean {
  const end = value.length - 1;
  if (end < 19 || value[end] !== 'Z' || value[4] !== '-' || value[7] !== '-' || value[10] !== 'T') return false;
  if (value[13] !== ':' || value[16] !== ':') return false;
  if (end > 19 && (value[19] !== '.' || end === 20 || digits(value, 20, end) < 0)) return false;
  const year = digits(value, 0, 4);
  const month = digits(value, 5, 7);
  const day = digits(value, 8, 10);
  const hour = digits(value, 11, 13);
  const minute = digits(value, 14, 16);
  const second = digits(value, 17, 19);
  return (
    year >= 0 &&
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysIn(year, month) &&
    hour >= 0 &&
    hour <= 23 &&
    minute >= 0 &&
    minute <= 59 &&
    second >= 0 &&
    second <= 59
  );
}

/**
 * An RFC 3339 timestamp in UTC `Z` form (the form busbar writes), keeping its fraction of a second as written:
 * `2026-01-02T03:04:05.678+01:00` becomes `2026-01-02T02:04:05.678Z`. Undefined when `value` is not RFC 3339.
 * A time already in that form is returned as it is: every decoder calls this for every message.
 */
export function normaliseTime(value: string): string | undefined {
  if (isUtcForm(value)) return value;
  const m = RFC3339.exec(value);
  if (!m) return undefined;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = Number(m[6]);
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return undefined;
  // Second 60 is a leap second, which RFC 3339 allows; JavaScript's Date cannot hold one, so it becomes the next
  // minute's second 0 below.
  if (hour > 23 || minute > 59 || second > 60) return undefined;
  const fraction = m[7] ?? '';
  const utcForm = m[8] !== undefined;
  if (utcForm && second < 60) {
    return value[10] === 'T' && m[8] === 'Z' ? value : `${value.slice(0, 10)}T${value.slice(11, 19)}${fraction}Z`;
  }
  const offsetHours = utcForm ? 0 : Number(m[10]);
  const offsetMinutes = utcForm ? 0 : Number(m[11] ?? 0);
  if (offsetHours > 23 || offsetMinutes > 59) return undefined;
  const sign = m[9] === '-' ? -1 : 1;
  const local = new Date(0);
  local.setUTCFullYear(year, month - 1, day);
  local.setUTCHours(hour, minute, second, 0);
  const utc = new Date(local.getTime() - sign * (offsetHours * 60 + offsetMinutes) * 60_000);
  const utcYear = utc.getUTCFullYear();
  if (utcYear < 0 || utcYear > 9999) return undefined;
  return `${utc.toISOString().slice(0, 19)}${fraction}Z`;
}
