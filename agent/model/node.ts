// A node value under /lain/nodes/nodes (API.md §1.4): any JSON object, re-encoded the way Go
// re-encodes a map[string]interface{} (keys sorted, numbers as float64). lainlet skips values
// that are not an object or null.
import { encodeGeneric } from '../../shared/gojson.js';
import { DecodeError, parseJson } from './gofields.js';

function assertFiniteNumbers(value: unknown): void {
  if (typeof value === 'number') {
    // Go's float64 decoding rejects numbers out of range; JSON.parse turns them into Infinity.
    if (!Number.isFinite(value)) throw new DecodeError('number out of float64 range');
    return;
  }
  if (value === null || typeof value !== 'object') return;
  for (const item of Array.isArray(value) ? value : Object.values(value)) assertFiniteNumbers(item);
}

/** The value's Go re-encoding ("null" for a JSON null); throws DecodeError for anything else. */
export function decodeNodeValue(raw: string): string {
  const value = parseJson(raw);
  if (value === null) return 'null';
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new DecodeError(`node: cannot decode ${Array.isArray(value) ? 'array' : typeof value} into map`);
  }
  assertFiniteNumbers(value);
  return encodeGeneric(value);
}
