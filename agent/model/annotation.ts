// The stream ports a proc declares in its annotation (API.md §1.5, §4 streamprocs).
//
// lainlet decodes the annotation with Go's json into `{ports: [{srcport, dstport, proto}]}` and
// ignores the error: a syntax error yields no ports, a wrongly typed port field is left 0 while
// the rest is kept, keys match case-insensitively.
import { field, isObject } from './gofields.js';

export interface StreamPort {
  /** The port streamrouter listens on ("srcport"). */
  listen: number;
  /** The container port it forwards to ("dstport"). */
  upstream: number;
}

const NO_PORTS: readonly StreamPort[] = Object.freeze([]);

/** A Go int field decoded leniently: anything that is not an integer number becomes 0. */
function intOrZero(v: unknown): number {
  return typeof v === 'number' && Number.isInteger(v) && Math.abs(v) < 2 ** 63 ? v : 0;
}

export function parseStreamPorts(annotation: string): readonly StreamPort[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(annotation);
  } catch {
    return NO_PORTS;
  }
  if (!isObject(parsed)) return NO_PORTS;
  const ports = field(parsed, 'ports');
  if (!Array.isArray(ports) || ports.length === 0) return NO_PORTS;
  return ports.map((port): StreamPort => {
    if (!isObject(port)) return { listen: 0, upstream: 0 };
    return { listen: intOrZero(field(port, 'srcport')), upstream: intOrZero(field(port, 'dstport')) };
  });
}
