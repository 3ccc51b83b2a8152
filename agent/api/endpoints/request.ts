// An ApiRequest from a request target ("/v2/procwatcher/?appname=hello"), with Go's query
// semantics (Request.FormValue as of Go 1.10): pairs split on "&" and ";", "+" is a space, %XX is
// decoded, a pair with a bad escape is dropped, the first value of a name wins.
import { normalizeIp } from '../../auth.js';
import type { ApiRequest } from '../types.js';

/** Go's url.QueryUnescape; undefined for a malformed escape. Invalid UTF-8 becomes U+FFFD. */
export function queryUnescape(s: string): string | undefined {
  if (s.indexOf('%') < 0) return s.indexOf('+') < 0 ? s : s.replace(/\+/g, ' ');
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    if (ch === 0x25 /* % */) {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (ch === 0x2b /* + */) {
      bytes.push(0x20);
    } else {
      for (const b of Buffer.from(s[i], 'utf8')) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** The query's values, first value per name. */
export function parseQuery(query: string): Map<string, string> {
  const values = new Map<string, string>();
  let start = 0;
  // Pairs end at "&", ";" or the end (query.split(/[&;]/) without the array and the regex).
  for (let i = 0; i <= query.length; i++) {
    const ch = i < query.length ? query.charCodeAt(i) : 0x26;
    if (ch !== 0x26 /* & */ && ch !== 0x3b /* ; */) continue;
    if (i > start) addPair(values, query.slice(start, i));
    start = i + 1;
  }
  return values;
}

function addPair(values: Map<string, string>, pair: string): void {
  const eq = pair.indexOf('=');
  const name = queryUnescape(eq < 0 ? pair : pair.slice(0, eq));
  const value = queryUnescape(eq < 0 ? '' : pair.slice(eq + 1));
  if (name === undefined || value === undefined) return;
  if (!values.has(name)) values.set(name, value);
}

/** The route path: the URL path without its query and without one trailing "/" (the root stays "/"). */
export function routePath(target: string): string {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

export function requestFromUrl(target: string, remoteIp: string): ApiRequest {
  const q = target.indexOf('?');
  const values = parseQuery(q < 0 ? '' : target.slice(q + 1));
  return {
    path: routePath(target),
    remoteIp: normalizeIp(remoteIp),
    query: (name) => values.get(name) ?? '',
  };
}
