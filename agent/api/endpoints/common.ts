// What the endpoint modules share: the request → scope rules of API.md §4, the error answers,
// and the guard that keeps an unexpected exception from escaping resolve/render.
import type { Auth } from '../../auth.js';
import type { IndexName, Indexes } from '../../indexes/index.js';
import type { Answer, ApiRequest, Endpoint } from '../types.js';

/** What every endpoint module is built from. */
export interface EndpointContext {
  readonly indexes: Indexes;
  readonly auth: Auth;
  /** The -ip flag ("" when unset): localspecquery's default node. */
  readonly nodeIp: string;
  /** This node's hostname: rebellion's notion of "local". */
  readonly hostname: string;
}

export const SUPER_REQUIRED = 'authorize failed, super required';
export const NO_PERMISSION = 'authorize failed, no permission';
export const UNKNOWN_CALLER = 'authorize failed, can not confirm the app by request ip';
export const TOO_MANY_DEAD = 'over half of the containers lost their IPs';

export type Resolution = { scope: string } | Answer;

/**
 * The routers' guard (webprocs, streamprocs): refuse with 500 when no pod, or fewer than half of
 * the pods, have an IP — a router must keep its old routes rather than drop a cluster's.
 */
export function lostTooManyIps(pods: number, alive: number): Answer | undefined {
  return pods === 0 || alive * 2 < pods ? serverError(TOO_MANY_DEAD) : undefined;
}

export function ok(body: string): Answer {
  return { status: 200, body };
}

export function badRequest(message: string): Answer {
  return { status: 400, body: message };
}

export function serverError(message: string): Answer {
  return { status: 500, body: message };
}

/** lainlet's fixPrefix: a trailing "/" unless there is one already (or the string is empty). */
export function fixPrefix(s: string): string {
  return s === '' || s.endsWith('/') ? s : s + '/';
}

/**
 * A lookup key as lainlet's watchers take it: "*" is everything (scope ""), "" is refused
 * with 500 "empty key", anything else is an exact-else-prefix key.
 */
export function keyScope(key: string): Resolution {
  if (key === '*') return { scope: '' };
  if (key === '') return serverError('empty key');
  return { scope: key };
}

/**
 * The `appname` rule shared by coreinfo, proxy, webprocs, streamprocs, ports and rebellion:
 * default "*"; a caller that may not read the app asked for gets 400, except that asking for
 * everything ("*") silently narrows to the caller's own app.
 */
export function appScope(req: ApiRequest, auth: Auth): Resolution {
  const app = req.query('appname') || '*';
  if (!auth.pass(req.remoteIp, app)) {
    if (app !== '*') return badRequest(NO_PERMISSION);
    const own = auth.appName(req.remoteIp);
    if (own === undefined) return badRequest(UNKNOWN_CALLER);
    return keyScope(fixPrefix(own));
  }
  return keyScope(app === '*' ? app : fixPrefix(app));
}

/** Concatenates encoded elements into a JSON array or object body. */
export function joinFragments(open: '[' | '{', fragments: readonly string[]): string {
  return open + fragments.join(',') + (open === '[' ? ']' : '}');
}

/**
 * A fragment built by concatenation is a tree of V8 "cons strings"; joining thousands of them
 * walks every tree on every render (measured: 4-5× slower for an all-apps answer). Converting
 * the string to a number makes V8 flatten it in place once, for the fragment's whole life.
 */
export function flatten<S extends string | undefined>(s: S): S {
  if (s !== undefined) Number(s);
  return s;
}

/**
 * `compute(item)`, computed once per item object and remembered for as long as the item lives.
 * String results are flattened (see flatten); compute() flattens strings inside other results.
 */
export function memoize<K extends object, V>(compute: (item: K) => V): (item: K) => V {
  const cache = new WeakMap<K, V>();
  return (item) => {
    let value = cache.get(item);
    if (value === undefined) {
      value = compute(item);
      if (typeof value === 'string') flatten(value);
      cache.set(item, value);
    }
    return value;
  };
}

export interface EndpointSpec {
  path: string;
  index: IndexName;
  watchable?: boolean;
  resolve(req: ApiRequest): Resolution;
  render(scope: string): Answer;
}

/** An Endpoint whose resolve and render never throw: anything unexpected becomes a one-line 500. */
export function defineEndpoint(spec: EndpointSpec): Endpoint {
  return {
    path: spec.path,
    index: spec.index,
    watchable: spec.watchable ?? true,
    resolve(req) {
      try {
        return spec.resolve(req);
      } catch (err) {
        return serverError(`internal error in ${spec.path}: ${oneLine(err)}`);
      }
    },
    render(scope) {
      try {
        return spec.render(scope);
      } catch (err) {
        return serverError(`internal error in ${spec.path}: ${oneLine(err)}`);
      }
    },
  };
}

function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s+/g, ' ').trim();
}
