// etcd's history as the writer committed it: the revision of every operation and, for every
// watched view, the fingerprint of its value after that operation. Index 0 is the seed.
import { applyOp, diffKeys, fingerprint, VIEWS, type Op, type State } from './model.js';

export class History {
  readonly state: State;
  /** revisions[i]: the etcd revision of operation i (strictly increasing). */
  readonly revisions: number[] = [];
  readonly ops: Array<Op | undefined> = [];
  /** fps[v][i]: fingerprint of VIEWS[v] after operation i. */
  readonly fps: string[][] = VIEWS.map(() => []);
  /** Per view: fingerprint → the operation indices whose result has it (ascending). */
  private readonly where: Array<Map<string, number[]>> = VIEWS.map(() => new Map());
  private readonly listeners: Array<() => void> = [];

  private readonly seed: State;

  constructor(seed: State, seedRevision: number) {
    this.seed = new Map(seed);
    this.state = new Map(seed);
    this.push(seedRevision, undefined, undefined);
  }

  get length(): number { return this.revisions.length; }
  get lastRevision(): number { return this.revisions[this.revisions.length - 1]!; }

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
    this.ops.push(op);
    VIEWS.forEach((view, v) => {
      const fp = touched && !touched.has(view.range) ? this.fps[v]![i - 1]! : fingerprint(view.compute(this.state));
      this.fps[v]!.push(fp);
      const list = this.where[v]!.get(fp);
      if (list) list.push(i);
      else this.where[v]!.set(fp, [i]);
    });
  }

  /** The index of the last operation at or before `revision` (-1 before the seed). */
  indexAt(revision: number): number {
    let lo = 0;
    let hi = this.revisions.length - 1;
    if (revision < this.revisions[0]!) return -1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.revisions[mid]! <= revision) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** The first operation index ≥ from whose view value has fingerprint fp, or -1. */
  firstMatch(view: number, fp: string, from: number): number {
    const list = this.where[view]!.get(fp);
    if (!list) return -1;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid]! < from) lo = mid + 1;
      else hi = mid;
    }
    return lo < list.length ? list[lo]! : -1;
  }

  /** The last operation index < before whose view value has fingerprint fp, or -1. */
  lastMatchBefore(view: number, fp: string, before: number): number {
    const list = this.where[view]!.get(fp);
    if (!list) return -1;
    let best = -1;
    for (const i of list) { if (i < before) best = i; else break; }
    return best;
  }

  /** The value of VIEWS[view] after operation i (replayed from the seed: for reports only). */
  viewAt(view: number, i: number): unknown {
    const state = new Map(this.seed);
    for (let k = 1; k <= i && k < this.ops.length; k++) applyOp(state, this.ops[k]!);
    return VIEWS[view]!.compute(state);
  }

  /** "~key -key +key" between the view after operation i and `have` (for reports). */
  diffAgainst(view: number, i: number, have: string): string {
    let value: unknown;
    try { value = JSON.parse(have); } catch { return '(not JSON)'; }
    const keys = diffKeys(this.viewAt(view, i), value);
    return keys.length > 8 ? `${keys.slice(0, 8).join(' ')} …(${keys.length})` : keys.join(' ');
  }

  /** "rev 123 (op 45 put-pod)" */
  describe(i: number): string {
    if (i < 0) return 'before the seed';
    const op = this.ops[i];
    return `rev ${this.revisions[i]} (${op ? `op ${op.id} ${op.kind}` : 'seed'})`;
  }
}
