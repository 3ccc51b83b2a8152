// etcd's history as the writer committed it: the revision of every operation and, for every
// watched view, the fingerprint of its value after that operation. Index 0 is the seed.
import { createHash } from 'node:crypto';
import { applyOp, diffKeys, fingerprint, VIEWS, type Op, type State } from './model.js';

/** XOR of a hash per entry: order-free, and updated per changed key. */
export class StateHash {
  private readonly entries = new Map<string, { value: string; hash: bigint }>();
  value = 0n;

  set(key: string, v: string): void {
    const old = this.entries.get(key);
    if (old?.value === v) return;
    if (old) this.value ^= old.hash;
    const hash = createHash('sha1').update(key).update('\0').update(v).digest().readBigUInt64BE(0);
    this.entries.set(key, { value: v, hash });
    this.value ^= hash;
  }

  delete(key: string): void {
    const old = this.entries.get(key);
    if (!old) return;
    this.value ^= old.hash;
    this.entries.delete(key);
  }

  reset(state: Iterable<[string, string]>): void {
    const next = new Map(state);
    for (const k of [...this.entries.keys()]) if (!next.has(k)) this.delete(k);
    for (const [k, v] of next) this.set(k, v);
  }
}

/** Operations kept for replaying a state in reports (findings are about recent states). */
const REPLAY_WINDOW = 2000;

export class History {
  readonly state: State;
  /** revisions[i]: the etcd revision of operation i (strictly increasing). */
  readonly revisions: number[] = [];
  /** "op 45 put-pod" per operation ("seed" for index 0). */
  private readonly labels: string[] = [];
  /**
   * The operations after `base` (for reports: a state is replayed from the base). Only a recent
   * window is kept, so a long soak does not hold every value ever written.
   */
  private readonly recentOps: Op[] = [];
  private base: { index: number; state: State };
  /** hashes[i]: StateHash of the kept state after operation i. */
  readonly hashes: bigint[] = [];
  private readonly stateHash = new StateHash();
  /** fps[v][i]: fingerprint of VIEWS[v] after operation i. */
  readonly fps: string[][] = VIEWS.map(() => []);
  /** Per view: fingerprint → the operation indices whose result has it (ascending). */
  private readonly where: Array<Map<string, number[]>> = VIEWS.map(() => new Map<string, number[]>());
  private readonly listeners: Array<() => void> = [];

  constructor(seed: State, seedRevision: number) {
    this.base = { index: 0, state: new Map(seed) };
    this.state = new Map(seed);
    this.push(seedRevision, undefined, undefined);
  }

  get length(): number { return this.revisions.length; }
  get lastRevision(): number { return this.revisions[this.revisions.length - 1]; }

  onRecord(listener: () => void): void { this.listeners.push(listener); }

  record(revision: number, op: Op): void {
    if (revision <= this.lastRevision) throw new Error(`soak internal: op ${op.id} committed at ${revision}, not after ${this.lastRevision}`);
    const touched = applyOp(this.state, op);
    this.push(revision, op, touched);
    for (const l of this.listeners) l();
  }

  private push(revision: number, op: Op | undefined, touched: Set<string> | undefined): void {
    const i = this.revisions.length;
    this.revisions.push(revision);
    this.labels.push(op ? `op ${op.id} ${op.kind}` : 'seed');
    if (op) {
      this.recentOps.push(op);
      if (this.recentOps.length > 2 * REPLAY_WINDOW) {
        for (const old of this.recentOps.splice(0, REPLAY_WINDOW)) applyOp(this.base.state, old);
        this.base.index += REPLAY_WINDOW;
      }
    }
    this.stateHash.reset(this.state);
    this.hashes.push(this.stateHash.value);
    VIEWS.forEach((view, v) => {
      const fp = touched && !touched.has(view.range) ? this.fps[v][i - 1] : fingerprint(view.compute(this.state));
      this.fps[v].push(fp);
      const list = this.where[v].get(fp);
      if (list) list.push(i);
      else this.where[v].set(fp, [i]);
    });
  }

  /** The index of the last operation at or before `revision` (-1 before the seed). */
  indexAt(revision: number): number {
    let lo = 0;
    let hi = this.revisions.length - 1;
    if (revision < this.revisions[0]) return -1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.revisions[mid] <= revision) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** The first operation index ≥ from whose view value has fingerprint fp, or -1. */
  firstMatch(view: number, fp: string, from: number): number {
    const list = this.where[view].get(fp);
    if (!list) return -1;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid] < from) lo = mid + 1;
      else hi = mid;
    }
    return lo < list.length ? list[lo] : -1;
  }

  /** The last operation index < before whose view value has fingerprint fp, or -1. */
  lastMatchBefore(view: number, fp: string, before: number): number {
    const list = this.where[view].get(fp);
    if (!list) return -1;
    let best = -1;
    for (const i of list) { if (i < before) best = i; else break; }
    return best;
  }

  /** The state after operation i, replayed (for reports only); undefined when i left the window. */
  stateAt(i: number): State | undefined {
    if (i < this.base.index) return undefined;
    const state = new Map(this.base.state);
    for (let k = this.base.index + 1; k <= i && k - this.base.index - 1 < this.recentOps.length; k++) applyOp(state, this.recentOps[k - this.base.index - 1]);
    return state;
  }

  /** The value of VIEWS[view] after operation i (for reports only). */
  viewAt(view: number, i: number): unknown {
    const state = this.stateAt(i);
    return state && VIEWS[view].compute(state);
  }

  /** The diffKeys() between the view after operation i and `have` (for reports). */
  diffAgainst(view: number, i: number, have: string): string {
    let value: unknown;
    try { value = JSON.parse(have); } catch { return '(not JSON)'; }
    const want = this.viewAt(view, i);
    if (want === undefined) return '(that state is no longer kept)';
    const keys = diffKeys(want, value);
    return keys.length > 8 ? `${keys.slice(0, 8).join(' ')} …(${keys.length})` : keys.join(' ');
  }

  /** "rev 123 (op 45 put-pod)" */
  describe(i: number): string {
    if (i < 0) return 'before the seed';
    return `rev ${this.revisions[i]} (${this.labels[i]})`;
  }
}
