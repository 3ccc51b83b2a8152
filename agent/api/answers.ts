// Rendered answers, computed once per (endpoint, scope, index generation) and shared by every
// GET and every event stream that needs them. An answer is dropped once its index has moved on
// (it can never be served again) or when nobody asked for it during a whole sweep period (an
// all-apps coreinfo answer is 1.4 MB of string plus 1.4 MB of bytes): asked for again, it is
// rendered again, from the same indexes, into the same bytes.
import type { IndexName } from '../indexes/index.js';
import type { Answer, Endpoint } from './types.js';

/** A cached answer and, once a GET has asked for them, its UTF-8 bytes. */
export interface CachedAnswer {
  generation: number;
  answer: Answer;
  /** The body's bytes: a 1.4 MB body is encoded once, not once per request. */
  bytes?: Buffer;
  /** Asked for since the last sweep. */
  used: boolean;
}

/** How often unasked-for and outdated answers are dropped (an answer unasked-for lives one to two periods). */
export const ANSWER_SWEEP_MS = 60_000;

export class AnswerCache {
  /** endpoint → scope → answer: two lookups, no key string built per request. */
  private readonly cache = new Map<Endpoint, Map<string, CachedAnswer>>();
  private size = 0;
  /** UTF-8 bytes of answers given to bytes(). */
  private readonly encoded = new WeakMap<Answer, Buffer>();
  renders = 0;
  hits = 0;
  /** Answers dropped by sweep(). */
  dropped = 0;
  private readonly sweeper?: NodeJS.Timeout;

  constructor(
    private readonly generation: (index: IndexName) => number,
    /** Scopes come from query strings: bound the map so odd queries cannot grow it forever. */
    private readonly maxEntries = 10_000,
    /** Period of sweep() (0: never by itself); the timer does not keep the process alive. */
    sweepMs = ANSWER_SWEEP_MS,
  ) {
    if (sweepMs > 0) this.sweeper = setInterval(() => this.sweep(), sweepMs).unref();
  }

  /** Stops the sweeps: a stopped agent's cache is not kept alive by its timer. */
  close(): void {
    clearInterval(this.sweeper);
  }

  /** Entries held. */
  get held(): number {
    return this.size;
  }

  /**
   * Drops every answer whose index has changed since it was rendered, and every answer nobody
   * asked for since the previous sweep; the others are kept and marked unasked-for.
   */
  sweep(): void {
    for (const [endpoint, scopes] of this.cache) {
      const gen = this.generation(endpoint.index);
      for (const [scope, cached] of scopes) {
        if (cached.used && cached.generation === gen) {
          cached.used = false;
        } else {
          scopes.delete(scope);
          this.size--;
          this.dropped++;
        }
      }
      if (scopes.size === 0) this.cache.delete(endpoint);
    }
  }

  get(endpoint: Endpoint, scope: string): Answer {
    return this.entry(endpoint, scope).answer;
  }

  /** The current answer's cache entry; its `bytes` may be set by the caller (see encodedBody). */
  entry(endpoint: Endpoint, scope: string): CachedAnswer {
    const gen = this.generation(endpoint.index);
    let scopes = this.cache.get(endpoint);
    const hit = scopes?.get(scope);
    if (hit !== undefined && hit.generation === gen) {
      this.hits++;
      hit.used = true;
      return hit;
    }
    const cached: CachedAnswer = { generation: gen, answer: safeRender(endpoint, scope), used: true };
    this.renders++;
    if (hit === undefined && this.size >= this.maxEntries) {
      this.cache.clear();
      this.size = 0;
      scopes = undefined;
    }
    if (scopes === undefined) this.cache.set(endpoint, (scopes = new Map<string, CachedAnswer>()));
    if (hit === undefined) this.size++;
    scopes.set(scope, cached);
    return cached;
  }

  /** The entry's body as bytes, encoded once per entry and shared by every request. */
  encodedBody(entry: CachedAnswer): Buffer {
    return (entry.bytes ??= this.bytes(entry.answer));
  }

  /** The answer's body as bytes, encoded once per answer object and shared by every request. */
  bytes(answer: Answer): Buffer {
    let bytes = this.encoded.get(answer);
    if (!bytes) {
      bytes = Buffer.from(answer.body);
      this.encoded.set(answer, bytes);
    }
    return bytes;
  }
}

/** render() must not throw (API.md §11 item 4), but if it does, the client gets a one-line 500. */
function safeRender(endpoint: Endpoint, scope: string): Answer {
  try {
    return endpoint.render(scope);
  } catch (err) {
    return { status: 500, body: `internal error rendering ${endpoint.path}: ${(err as Error).message}` };
  }
}
