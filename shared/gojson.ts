// JSON encoding that produces the same bytes as Go's encoding/json (API.md §6), which is
// what every existing lainlet client has been parsing for years.
//
// Differences from JSON.stringify that matter:
//  * `<`, `>`, `&`, U+2028 and U+2029 are escaped as \u003c \u003e \u0026 \u2028 \u2029;
//  * control characters other than \n \r \t are written \u00XX (Go before 1.22 never wrote \b or \f);
//  * lone surrogates (Go: invalid UTF-8) become U+FFFD instead of a \udXXX escape;
//  * map keys are sorted byte-wise by their UTF-8 encoding (code point order), not by UTF-16 units;
//  * -0 is written "-0".

// Not in TypeScript's ES2023 lib, but present in Node 20 (V8 11.3).
declare global {
  interface String {
    toWellFormed(): string;
  }
}

/** Characters that make a string leave the fast path: anything JSON.stringify or Go would escape or alter. */
// eslint-disable-next-line no-control-regex -- the control characters are the point
const NEEDS_ESCAPE = /[\u0000-\u001f"\\<>&\u2028\u2029\ud800-\udfff]/;

/**
 * Fix-ups applied to JSON.stringify's output. An escaped backslash is matched as a unit so that
 * the `\\` in `\\b` (a backslash followed by the letter b) is never mistaken for a `\b` escape.
 */
const STRINGIFY_FIXUPS = /\\\\|\\b|\\f|[<>&\u2028\u2029]/g;

function fixup(match: string): string {
  switch (match) {
    case '\\b': return '\\u0008';
    case '\\f': return '\\u000c';
    case '<': return '\\u003c';
    case '>': return '\\u003e';
    case '&': return '\\u0026';
    case '\u2028': return '\\u2028';
    case '\u2029': return '\\u2029';
    default: return match; // an escaped backslash stays as it is
  }
}

/** A JSON string literal, byte-identical to Go's json.Marshal of the same string. */
export function encodeString(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return '"' + s + '"';
  // toWellFormed() returns a well-formed string itself, so only strings with lone surrogates are copied.
  const json = JSON.stringify(s.toWellFormed());
  return json.replace(STRINGIFY_FIXUPS, fixup);
}

/**
 * A number as Go writes a float64: same thresholds for exponent form as JS (1e21 and 1e-7),
 * same shortest round-trip digits; only negative zero differs.
 */
export function encodeNumber(n: number): string {
  if (!Number.isFinite(n)) throw new RangeError(`cannot encode ${n} as JSON`);
  if (Object.is(n, -0)) return '-0';
  return String(n);
}

/**
 * Orders strings by their UTF-8 bytes, which is code point order (Go sorts map keys this way).
 * JS's default comparison uses UTF-16 code units and puts astral characters (surrogate pairs,
 * 0xD800-0xDFFF) before U+E000-U+FFFF; only at the first differing unit does that matter.
 */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let ca = a.charCodeAt(i);
    let cb = b.charCodeAt(i);
    if (ca === cb) continue;
    if (ca >= 0xd800 && cb >= 0xd800) {
      // Move surrogates above U+E000-U+FFFF, keeping everything else in place.
      ca = ca >= 0xe000 ? ca - 0x800 : ca + 0x2000;
      cb = cb >= 0xe000 ? cb - 0x800 : cb + 0x2000;
    }
    return ca - cb;
  }
  return a.length - b.length;
}

/**
 * Encodes a value decoded from arbitrary JSON the way Go re-encodes an `interface{}`:
 * every object is a map[string]interface{} (keys sorted byte-wise), numbers are float64.
 * Only what JSON.parse produces is accepted.
 */
export function encodeGeneric(value: unknown): string {
  switch (typeof value) {
    case 'string': return encodeString(value);
    case 'number': return encodeNumber(value);
    case 'boolean': return value ? 'true' : 'false';
    case 'object': break;
    default: throw new TypeError(`cannot encode a ${typeof value} as JSON`);
  }
  if (value === null) return 'null';
  if (Array.isArray(value)) return encodeArray(value, encodeGeneric);
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort(compareUtf8);
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    if (i > 0) out += ',';
    out += encodeString(keys[i]) + ':' + encodeGeneric(obj[keys[i]]);
  }
  return out + '}';
}

function encodeArray(items: readonly unknown[], encodeItem: (v: unknown) => string): string {
  let out = '[';
  for (let i = 0; i < items.length; i++) {
    if (i > 0) out += ',';
    out += encodeItem(items[i]);
  }
  return out + ']';
}

/** A []string that may be nil: `null` stays `null` (Go keeps nil slices as null). */
export function encodeStringsOrNull(items: readonly string[] | null): string {
  return items === null ? 'null' : encodeArray(items, (s) => encodeString(s as string));
}
