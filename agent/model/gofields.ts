// Reading JSON.parse output the way Go's encoding/json fills a struct:
//  * object keys match field names exactly, else case-insensitively (Go's fold rules);
//  * `null` leaves a field at its zero value;
//  * a value of the wrong type is an error (Go fails the whole Unmarshal).
// We read only the fields lainlet uses and are lenient where JSON.parse cannot tell the
// difference (`1.0` for an int; API.md §11 item 2 allows either).

export class DecodeError extends Error {}

export type JsonObject = Record<string, unknown>;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Go's case folding for field names (bytes.EqualFold plus the two non-ASCII letters that fold
 * to ASCII: U+017F ſ → s and U+212A K (Kelvin) → k).
 */
function foldKey(s: string): string {
  return s.toLowerCase().replace(/\u017f/g, 's').replace(/\u212a/g, 'k');
}

/** The value of the object key matching Go field `name`: exact match first, else the last case-insensitive one. */
export function field(obj: JsonObject, name: string): unknown {
  const exact = obj[name];
  if (exact !== undefined || Object.hasOwn(obj, name)) return exact;
  const folded = foldKey(name);
  let found: unknown = undefined;
  for (const key in obj) {
    if (foldKey(key) === folded) found = obj[key];
  }
  return found;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function mismatch(path: string, want: string, got: unknown): DecodeError {
  return new DecodeError(`${path}: cannot decode ${typeName(got)} into ${want}`);
}

/** Largest magnitude Go's int64 holds; JSON.parse has already rounded anything bigger. */
const INT64_LIMIT = 2 ** 63;

export function readString(obj: JsonObject, name: string, path: string): string {
  const v = field(obj, name);
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw mismatch(`${path}.${name}`, 'string', v);
  return v;
}

export function readInt(obj: JsonObject, name: string, path: string): number {
  const v = field(obj, name);
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number') throw mismatch(`${path}.${name}`, 'int', v);
  if (!Number.isInteger(v) || Math.abs(v) >= INT64_LIMIT) {
    throw new DecodeError(`${path}.${name}: ${v} is not an int64`);
  }
  return v;
}

/** An object field; `undefined` when absent or null (the Go zero value). */
export function readObject(obj: JsonObject, name: string, path: string): JsonObject | undefined {
  const v = field(obj, name);
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw mismatch(`${path}.${name}`, 'object', v);
  return v;
}

/** A slice field; `null` when absent or null (a nil slice). */
export function readArray(obj: JsonObject, name: string, path: string): unknown[] | null {
  const v = field(obj, name);
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v)) throw mismatch(`${path}.${name}`, 'array', v);
  return v as unknown[];
}

/** A []string field; `null` for a nil slice. A null element decodes to "" as in Go. */
export function readStrings(obj: JsonObject, name: string, path: string): string[] | null {
  const items = readArray(obj, name, path);
  if (items === null) return null;
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (item === null) { items[i] = ''; continue; }
    if (typeof item !== 'string') throw mismatch(`${path}.${name}[${i}]`, 'string', item);
  }
  return items as string[];
}

/** Each element of a slice of structs, or undefined for a null element (the zero struct). */
export function structElements(items: unknown[] | null, path: string): Array<JsonObject | undefined> {
  if (items === null) return [];
  return items.map((item, i) => {
    if (item === null) return undefined;
    if (!isObject(item)) throw mismatch(`${path}[${i}]`, 'object', item);
    return item;
  });
}

/** Parses JSON, turning a syntax error into a DecodeError. */
export function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch (err) {
    throw new DecodeError(`invalid JSON: ${(err as Error).message}`);
  }
}
