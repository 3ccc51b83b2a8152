// The etcd v2 keys API backend (DESIGN.md, Data flow 1), for clusters whose deployd still
// writes v2: that keyspace is invisible to the v3 API. A list is one recursive GET; the watch
// is a loop of long polls on `waitIndex`, one event per poll, so every v2 event (one index) is
// one RevisionChange. The revision is etcd's v2 index (X-Etcd-Index, modifiedIndex).
//
// Seen with etcd 3.4 (--enable-v2):
// - Only the last 1000 v2 events are kept, counting writes anywhere in the keyspace (and
//   etcd's own hidden ones: a fresh member starts at index ~3, a restart adds one), so a poll
//   from an older index fails with errorCode 401: the history is lost and the owner re-lists.
// - A long poll gets its headers at once; X-Etcd-Index is then the index at which etcd checked
//   its history and registered the poll, the body comes when a matching event does.
// - A directory delete or a directory's TTL expiry is ONE event on the directory key, with
//   nothing for the keys inside: it becomes a delTree.
// - The event history survives a restart (replayed from the WAL), so a watch resumes there.
// - A plain GET is answered from the member's own copy: a member cut off from the others (a
//   minority) answers with its old state. `quorum=true` sends the read through raft
//   (linearizable): such a member fails it (5xx or no answer: Unreachable) and the next
//   endpoint is asked. Lists and revision reads use it. The index is cluster-wide, so a watch
//   goes on from the same index on another member. (A long poll on a minority member only
//   waits: it ends after pollReissueMs like any idle poll.)
import { Backoff } from '../../shared/backoff.js';
import { HUB_DEFAULTS } from '../defaults.js';
import { CompactedError, type ListResult, type RevisionChange, type Store, type StoreSource, type StoreWatch, type WatchHandlers } from './types.js';

export interface Etcd2StoreOptions {
  /** e.g. ["http://10.0.0.1:4001"]; a request that cannot reach one moves on to the next. */
  endpoints: string[];
  /** How long a request may wait for its response headers before the endpoint counts as unreachable (ms; default HUB_DEFAULTS.etcd2RequestTimeoutMs). */
  requestTimeoutMs?: number;
  /** An idle long poll is aborted and re-issued after this long (ms; default HUB_DEFAULTS.etcd2PollReissueMs). */
  pollReissueMs?: number;
}

const KEY_NOT_FOUND = 100;
const EVENT_INDEX_CLEARED = 401;

interface V2Node {
  key?: string;
  value?: string;
  dir?: boolean;
  nodes?: V2Node[];
  modifiedIndex?: number;
}

interface V2Event {
  action?: string;
  node?: V2Node;
  prevNode?: V2Node;
}

interface V2Error {
  errorCode?: number;
  message?: string;
  cause?: string;
}

interface Answer {
  status: number;
  /** X-Etcd-Index (NaN when missing). */
  index: number;
  /** The parsed JSON body; undefined when the body was empty. */
  body: unknown;
}

/** The endpoint could not be reached or did not answer properly: retry, maybe on another endpoint. */
class Unreachable extends Error {}

/** An idle long poll reached pollReissueMs; `index` is its X-Etcd-Index. */
class PollIdle extends Error {
  constructor(readonly index: number) { super('long poll idle'); }
}

class Cancelled extends Error {}

export class Etcd2Store implements Store {
  readonly description: string;
  private readonly endpoints: string[];
  /** The endpoint requests go to, until it fails. */
  private active = 0;
  private readonly requestTimeoutMs: number;
  private readonly pollReissueMs: number;
  private readonly liveWatches = new Set<{ stop: AbortController; done: Promise<void> }>();

  constructor(opts: Etcd2StoreOptions) {
    if (opts.endpoints.length === 0) throw new Error('etcd2 store: no endpoints');
    this.endpoints = opts.endpoints.map((e) => e.replace(/\/+$/, ''));
    this.description = `etcd2 ${this.endpoints.join(',')}`;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? HUB_DEFAULTS.etcd2RequestTimeoutMs;
    this.pollReissueMs = opts.pollReissueMs ?? HUB_DEFAULTS.etcd2PollReissueMs;
  }

  async currentRevision(): Promise<number> {
    // Any key answers with X-Etcd-Index, a missing one (404) most cheaply.
    const answer = await this.request(`${keysPath('/_lainlet_revision_probe')}?quorum=true`, this.requestTimeoutMs);
    return requireIndex(answer, 'revision probe');
  }

  async list(prefix: string, atRevision?: number): Promise<ListResult> {
    const path = dirPath(prefix);
    const answer = await this.request(`${keysPath(path)}?recursive=true&sorted=true&quorum=true`, HUB_DEFAULTS.etcd2ListBodyTimeoutMs);
    const revision = requireIndex(answer, `list ${path}`);
    const missing = answer.status === 404 && (answer.body as V2Error | undefined)?.errorCode === KEY_NOT_FOUND;
    if (answer.status !== 200 && !missing) throw new Error(`etcd2 list ${path}: HTTP ${answer.status} ${JSON.stringify(answer.body)}`);
    // v2 keeps no old versions of the tree: only the current index can be read.
    if (atRevision !== undefined && atRevision !== revision) {
      throw new CompactedError(`etcd v2 has no historical reads: asked for index ${atRevision}, current is ${revision}`);
    }
    if (missing) return { revision, kvs: [] };
    const kvs: Array<[string, string]> = [];
    flatten((answer.body as { node?: V2Node } | undefined)?.node, kvs);
    // sorted=true sorts each directory's children, but "/a/b-x" < "/a/b/c" in byte order while
    // a depth-first walk yields b's children first: sort the flat list as the other stores do.
    kvs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return { revision, kvs: kvs.filter(([k]) => k.startsWith(prefix)) };
  }

  async watch(prefix: string, afterRevision: number, handlers: WatchHandlers): Promise<StoreWatch> {
    const stop = new AbortController();
    const done = this.follow(prefix, afterRevision + 1, handlers, stop.signal).catch((err: Error) => {
      // A throwing handler must not leave the watch dead without a word.
      if (!stop.signal.aborted) handlers.onLost(`etcd2 watch failed: ${err.message}`);
    });
    const entry = { stop, done };
    this.liveWatches.add(entry);
    void done.finally(() => this.liveWatches.delete(entry));
    return {
      cancel: async () => {
        stop.abort();
        await done;
      },
    };
  }

  async close(): Promise<void> {
    const all = [...this.liveWatches];
    for (const w of all) w.stop.abort();
    await Promise.all(all.map((w) => w.done));
  }

  /**
   * The watch loop: long-polls from `next`, hands each event on, and moves `next` past it.
   * Connection trouble is retried from the same `next`, so nothing is lost; a cleared index
   * or an answer it cannot interpret ends the watch with onLost (see readPollAnswer).
   */
  private async follow(prefix: string, next: number, h: WatchHandlers, stop: AbortSignal): Promise<void> {
    const path = dirPath(prefix);
    const backoff = new Backoff(HUB_DEFAULTS.storeRetryBaseMs, HUB_DEFAULTS.storeRetryCapMs);
    let disconnected = false;
    const reachable = () => {
      if (!disconnected) return;
      disconnected = false;
      h.onReconnected();
    };
    let polledOn: string | undefined;
    let why = 'first watch';
    while (!stop.aborted) {
      const endpoint = this.endpoint();
      if (endpoint !== polledOn) {
        const previous = polledOn === undefined ? undefined : { id: '', name: '', url: polledOn };
        if (previous) this.sourceMoves++;
        polledOn = endpoint;
        h.onSource?.({ id: '', name: '', url: endpoint }, previous, why);
      }
      let answer: Answer;
      // Aborted when another request found this endpoint failing (a quorum read that a minority
      // member cannot answer): the poll moves on from the same index instead of waiting there.
      const poll = new AbortController();
      const onStop = () => poll.abort();
      stop.addEventListener('abort', onStop, { once: true });
      const entry = { endpoint, abort: () => poll.abort() };
      this.polls.add(entry);
      try {
        answer = await this.get(endpoint, `${keysPath(path)}?wait=true&recursive=true&waitIndex=${next}`, {
          signal: poll.signal, bodyTimeoutMs: this.pollReissueMs, idleIsNormal: true, onHeaders: reachable,
        });
      } catch (err) {
        if (stop.aborted) return;
        if (poll.signal.aborted) {
          why = `a read on ${endpoint} failed: ${this.lastFailure}`;
          continue;
        }
        if (err instanceof PollIdle) {
          next = afterIdlePoll(err, next, h);
          backoff.reset();
          continue;
        }
        if (err instanceof Unreachable) {
          if (!disconnected) {
            disconnected = true;
            why = `long poll failed: ${err.message}`;
            h.onDisconnected(err.message);
          }
          this.failed(endpoint);
          if (!(await sleep(backoff.next(), stop))) return;
          continue;
        }
        h.onLost(`etcd2 watch from index ${next}: ${(err as Error).message}`);
        return;
      }
      finally {
        this.polls.delete(entry);
        stop.removeEventListener('abort', onStop);
      }
      const read = readPollAnswer(answer, next, prefix);
      if ('lost' in read) {
        h.onLost(read.lost);
        return;
      }
      if ('again' in read) {
        if (!(await sleep(backoff.next(), stop))) return;
        continue;
      }
      next = read.revision + 1;
      backoff.reset();
      if (read.change) h.onChanges([read.change]);
      else h.onProgress(read.revision);
    }
  }

  /** One GET with the endpoint rotation of one-shot requests: each endpoint is tried once. */
  private async request(pathAndQuery: string, bodyTimeoutMs: number): Promise<Answer> {
    let lastError: Error | undefined;
    for (let i = 0; i < this.endpoints.length; i++) {
      const endpoint = this.endpoint();
      try {
        return await this.get(endpoint, pathAndQuery, { bodyTimeoutMs });
      } catch (err) {
        if (!(err instanceof Unreachable)) throw err;
        lastError = err;
        this.failed(endpoint, err.message);
      }
    }
    throw lastError!;
  }

  /**
   * One GET on one endpoint. The headers must come within requestTimeoutMs and the body
   * within bodyTimeoutMs of them; a timeout, a refused or cut connection and a 5xx are all
   * Unreachable (an idle long poll is PollIdle instead when idleIsNormal). A body that is not
   * JSON is a plain Error.
   */
  private async get(
    endpoint: string,
    pathAndQuery: string,
    opts: { bodyTimeoutMs: number; signal?: AbortSignal; idleIsNormal?: boolean; onHeaders?: () => void },
  ): Promise<Answer> {
    const url = endpoint + pathAndQuery;
    const { status, index, text } = await this.fetchText(endpoint, url, opts);
    // etcd answers 5xx while it has no leader or cannot commit: try again, maybe elsewhere.
    if (status >= 500) throw new Unreachable(`${endpoint}: HTTP ${status} ${text.slice(0, 200)}`);
    return { status, index, body: parseBody(url, status, text) };
  }

  /** The transport of get(): status, X-Etcd-Index and body text, under its two deadlines and the caller's cancel. */
  private async fetchText(
    endpoint: string,
    url: string,
    opts: { bodyTimeoutMs: number; signal?: AbortSignal; idleIsNormal?: boolean; onHeaders?: () => void },
  ): Promise<{ status: number; index: number; text: string }> {
    const ctl = new AbortController();
    const onCancel = () => ctl.abort(new Cancelled('cancelled'));
    if (opts.signal?.aborted) throw new Cancelled('cancelled');
    opts.signal?.addEventListener('abort', onCancel, { once: true });
    let timer = setTimeout(() => ctl.abort(new Unreachable(`${endpoint}: no response within ${this.requestTimeoutMs} ms`)), this.requestTimeoutMs);
    try {
      const res = await fetch(url, { signal: ctl.signal });
      clearTimeout(timer);
      const status = res.status;
      const index = Number(res.headers.get('x-etcd-index') ?? NaN);
      if (status < 500) opts.onHeaders?.();
      timer = setTimeout(
        () => ctl.abort(opts.idleIsNormal ? new PollIdle(index) : new Unreachable(`${endpoint}: response body not complete within ${opts.bodyTimeoutMs} ms`)),
        opts.bodyTimeoutMs,
      );
      return { status, index, text: await res.text() };
    } catch (err) {
      if (ctl.signal.aborted && ctl.signal.reason instanceof Error) throw ctl.signal.reason;
      // undici: TypeError "fetch failed" (refused, reset, DNS) or "terminated" (cut mid-body).
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new Unreachable(`${endpoint}: ${(err as Error).message}${cause ? ` (${cause.code ?? cause.message})` : ''}`);
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onCancel);
    }
  }

  private endpoint(): string { return this.endpoints[this.active]; }

  /** The endpoint requests (the long poll included) go to now. */
  get source(): StoreSource { return { id: '', name: '', url: this.endpoints[this.active] }; }

  /** Times the long poll moved to another endpoint. */
  sourceMoves = 0;

  /** Long polls in flight, by endpoint. */
  private readonly polls = new Set<{ endpoint: string; abort: () => void }>();
  private lastFailure = '';

  /** Moves on to the next endpoint, unless another request has done so already; a long poll still on it moves too. */
  private failed(endpoint: string, why = ''): void {
    if (this.endpoints[this.active] !== endpoint) return;
    this.active = (this.active + 1) % this.endpoints.length;
    this.lastFailure = why;
    if (this.endpoints.length > 1) for (const p of this.polls) if (p.endpoint === endpoint) p.abort();
  }
}

/**
 * etcd searched its history from `next` up to idle.index (under its store lock) when it
 * registered the idle poll, and would have answered at once had an event matched: nothing under
 * the prefix changed up to there. Starting the next poll after it keeps a quiet prefix from
 * failing as "cleared" once 1000 writes elsewhere pass. (Only a body held up for pollReissueMs
 * behind headers that did arrive could defeat this; etcd writes such a body right after the
 * headers.) Returns the index to poll from next.
 */
function afterIdlePoll(idle: PollIdle, next: number, h: WatchHandlers): number {
  if (!Number.isFinite(idle.index) || idle.index < next) return next;
  h.onProgress(idle.index);
  return idle.index + 1;
}

/**
 * What a long poll's answer means for the watch: the event at `revision` (its change, or null
 * for one that changed no leaf under the prefix); `again` when etcd ended the poll without an
 * event (it does so when it drops a watcher; nothing was delivered, so polling again from the
 * same index loses nothing); `lost` when the history no longer reaches `next` or the answer
 * cannot be read.
 */
function readPollAnswer(answer: Answer, next: number, prefix: string):
  { revision: number; change: RevisionChange | null } | { again: true } | { lost: string } {
  if (answer.status === 200 && answer.body === undefined) return { again: true };
  if (answer.status !== 200) {
    const e = answer.body as V2Error | undefined;
    if (e?.errorCode === EVENT_INDEX_CLEARED) return { lost: `etcd v2 event history no longer reaches index ${next} (current ${answer.index}): ${e.cause ?? e.message}` };
    return { lost: `etcd2 watch from index ${next}: HTTP ${answer.status} ${JSON.stringify(answer.body)}` };
  }
  const ev = answer.body as V2Event;
  const revision = ev.node?.modifiedIndex;
  if (typeof revision !== 'number' || revision < next || typeof ev.node?.key !== 'string') {
    return { lost: `etcd2 watch from index ${next}: unexpected event ${JSON.stringify(ev)}` };
  }
  const change = toChange(ev, prefix);
  if (change === 'unknown') return { lost: `etcd2 watch: unknown action ${JSON.stringify(ev.action)} at index ${revision}` };
  return { revision, change };
}

/** A body as JSON (undefined when empty); one that is not JSON is an Error naming the request. */
function parseBody(url: string, status: number, text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`GET ${url}: HTTP ${status}, body is not JSON: ${text.slice(0, 200)}`);
  }
}

/**
 * The v2 event as a RevisionChange; null when it changed no leaf under the prefix (a directory
 * was created or had its TTL refreshed); 'unknown' for an action this code does not know.
 */
export function toChange(ev: V2Event, prefix: string): RevisionChange | null | 'unknown' {
  const node = ev.node!;
  const key = node.key!;
  const revision = node.modifiedIndex!;
  const isDir = node.dir === true || ev.prevNode?.dir === true;
  switch (ev.action) {
    case 'set':
    case 'create':
    case 'update':
    case 'compareAndSwap':
      if (isDir || !key.startsWith(prefix)) return null;
      return { revision, puts: [[key, node.value ?? '']], dels: [] };
    case 'delete':
    case 'compareAndDelete':
    case 'expire':
      // One event stands for the whole directory: the hub removes key and key + "/…".
      if (isDir) return { revision, puts: [], dels: [], delTrees: [key] };
      if (!key.startsWith(prefix)) return null;
      return { revision, puts: [], dels: [key] };
    default:
      return 'unknown';
  }
}

/** Appends every leaf under `node` (v2 lists directories as nested nodes). */
function flatten(node: V2Node | undefined, out: Array<[string, string]>): void {
  if (!node) return;
  if (node.dir) {
    for (const child of node.nodes ?? []) flatten(child, out);
  } else if (typeof node.key === 'string') {
    out.push([node.key, node.value ?? '']);
  }
}

/** "/lain/" → "/lain": v2 lists and watches directories, and its paths have no trailing slash. */
function dirPath(prefix: string): string {
  return prefix.replace(/\/+$/, '');
}

/** "/lain/config" → "/v2/keys/lain/config", each segment URL-encoded. */
function keysPath(path: string): string {
  return '/v2/keys/' + path.split('/').filter(Boolean).map(encodeURIComponent).join('/');
}

function requireIndex(answer: Answer, what: string): number {
  if (!Number.isFinite(answer.index)) throw new Error(`etcd2 ${what}: the answer (HTTP ${answer.status}) has no X-Etcd-Index`);
  return answer.index;
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
