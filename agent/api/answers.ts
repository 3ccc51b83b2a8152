// Rendered answers, computed once per (endpoint, scope, index generation) and shared by every
// GET and every event stream that needs them.
import type { IndexName } from '../indexes/index.js';
import type { Answer, Endpoint } from './types.js';

interface Cached {
  generation: number;
  answer: Answer;
}

export class AnswerCache {
  private readonly cache = new Map<string, Cached>();
  /** UTF-8 bytes of cached answers: a 1.4 MB body is encoded once, not once per request. */
  private readonly encoded = new WeakMap<Answer, Buffer>();
  renders = 0;
  hits = 0;

  constructor(
    private readonly generation: (index: IndexName) => number,
    /** Scopes come from query strings: bound the map so odd queries cannot grow it forever. */
    private readonly maxEntries = 10_000,
  ) {}

  get(endpoint: Endpoint, scope: string): Answer {
    const key = endpoint.path + '\u0000' + scope;
    const gen = this.generation(endpoint.index);
    const hit = this.cache.get(key);
    if (hit && hit.generation === gen) {
      this.hits++;
      return hit.answer;
    }
    const answer = safeRender(endpoint, scope);
    this.renders++;
    if (!hit && this.cache.size >= this.maxEntries) this.cache.clear();
    this.cache.set(key, { generation: gen, answer });
    return answer;
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
