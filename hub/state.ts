// The hub's revisioned state: the kept keys at `revision`, the delta history, and the
// encoded frames agents are sent. Each delta is encoded exactly once here; the fan-out
// sends those same bytes to every agent.
import { encodeFrame, type DeltaFrame, type SnapshotFrame } from '../shared/protocol.js';
import type { FanoutState, FrameRef, SnapshotParts, StateListener } from './fanout.js';
import { DeltaHistory, type HistoryEntry } from './history.js';
import type { RevisionChange } from './store/types.js';

export interface HubStateOptions {
  /** Keeps only keys the agents' API reads (see keyRangeFilter). */
  keep: (key: string) => boolean;
  historyMaxCount: number;
  historyMaxBytes: number;
  /** Snapshot frames are cut at about this many bytes of keys+values so no frame is huge. */
  snapshotChunkBytes?: number;
}

/** Gaps kept at most (relists within the history's span); a few per etcd outage. */
const MAX_GAPS = 64;

export class HubState implements FanoutState {
  readonly entries = new Map<string, string>();
  /** The state is complete up to this revision (0 = nothing loaded yet). */
  revision = 0;
  /**
   * The revision of the last change to the kept keys (<= revision). A delta's `prev` is this,
   * not `revision`: the state at any r in [lastChangeRev, revision] is the same, so an agent
   * that learnt `revision` from a progress frame can still apply the next delta, and the
   * history stays one unbroken chain.
   */
  lastChangeRev = 0;
  /** True while the hub cannot reach its store: agents keep being served, marked stale. */
  stale = true;
  loaded = false;
  /** The store identity the state belongs to (etcd's cluster id; '' = unknown). */
  epoch = '';
  readonly history: DeltaHistory;
  private listener?: StateListener;
  private snapshotCache?: { rev: number; frames: Buffer[] };
  private resetSnapshotCache?: { rev: number; frames: Buffer[] };
  private readonly keep: (key: string) => boolean;
  private readonly snapshotChunkBytes: number;
  /** Counters for metrics. */
  deltasPublished = 0;
  resets = 0;

  constructor(opts: HubStateOptions) {
    this.keep = opts.keep;
    this.history = new DeltaHistory(opts.historyMaxCount, opts.historyMaxBytes);
    this.snapshotChunkBytes = opts.snapshotChunkBytes ?? 512 * 1024;
  }

  setListener(listener: StateListener): void { this.listener = listener; }

  setStale(stale: boolean): void {
    if (this.stale === stale) return;
    this.stale = stale;
    // Snapshot frames carry the flag.
    this.snapshotCache = undefined;
    this.resetSnapshotCache = undefined;
    this.listener?.onProgress(this.revision, stale);
  }

  /** Applies one store revision. Keys outside the kept ranges and no-op writes are dropped. */
  apply(change: RevisionChange): void {
    if (change.revision <= this.revision) return; // already have it (e.g. replayed after a re-list)
    const puts: Array<[string, string]> = [];
    const dels: string[] = [];
    const deleted = new Set<string>();
    for (const key of change.dels) {
      if (this.entries.has(key) && this.keep(key)) { dels.push(key); deleted.add(key); }
    }
    if (change.delTrees) {
      for (const root of change.delTrees) {
        const under = root.endsWith('/') ? root : root + '/';
        for (const key of this.entries.keys()) {
          if ((key === root || key.startsWith(under)) && !deleted.has(key)) { dels.push(key); deleted.add(key); }
        }
      }
    }
    for (const [key, value] of change.puts) {
      if (!this.keep(key)) continue;
      if (this.entries.get(key) === value && !deleted.has(key)) continue;
      puts.push([key, value]);
    }
    // A key both deleted and put in one revision ends up put.
    const putKeys = new Set(puts.map(([k]) => k));
    const finalDels = putKeys.size ? dels.filter((k) => !putKeys.has(k)) : dels;
    this.commit(change.revision, puts, finalDels);
  }

  /** The store said nothing kept changed up to `rev`. */
  advance(rev: number): void {
    if (rev <= this.revision) return;
    this.revision = rev;
    this.listener?.onProgress(rev, this.stale);
  }

  /**
   * Replaces the whole state with a fresh list (first load, or after the watch lost history)
   * and publishes the difference as one delta, so agents need no snapshot for it.
   */
  replaceAll(revision: number, kvs: Iterable<[string, string]>): void {
    const next = new Map<string, string>();
    for (const [k, v] of kvs) if (this.keep(k)) next.set(k, v);
    if (!this.loaded) {
      for (const [k, v] of next) this.entries.set(k, v);
      this.revision = revision;
      this.lastChangeRev = revision;
      this.loaded = true;
      this.snapshotCache = undefined;
      this.resetSnapshotCache = undefined;
      this.listener?.onProgress(revision, this.stale);
      return;
    }
    if (revision < this.revision) {
      // The list is older than what we hold: the watch has applied later revisions already,
      // and this list cannot say which of our keys are wrong. StoreSync holds the watch's
      // changes back while it lists, so this is only a list that lost a race with a re-list.
      // (A list that is older because the store's history went back is a reset, which
      // StoreSync detects by comparing with the revision we had before the list was sent.)
      return;
    }
    const puts: Array<[string, string]> = [];
    const dels: string[] = [];
    for (const [k, v] of next) if (this.entries.get(k) !== v) puts.push([k, v]);
    for (const k of this.entries.keys()) if (!next.has(k)) dels.push(k);
    if (revision === this.revision) {
      if (puts.length > 0 || dels.length > 0) this.correct(revision, puts, dels);
      return;
    }
    // The list jumped from our revision to `revision` without seeing what happened in between:
    // an agent at a revision inside that span (it came from a hub that saw it) may hold keys
    // created and deleted in it, which the difference published now does not mention. Noted
    // before the commit: its listeners start catch-ups at once.
    this.noteGap(this.revision, revision);
    this.commit(revision, puts, dels);
  }

  /**
   * Revisions the hub never saw, as open intervals (lo, hi): the state at such a revision is
   * unknown here, so an agent at one needs a snapshot, never deltas (framesAfter).
   * Invariant: only gaps above the history's oldest revision are kept (older agents need a
   * snapshot anyway), at most MAX_GAPS of them (beyond, the history is dropped).
   */
  // Stryker disable next-line ArrayDeclaration: the replacement gap is a string, which compares false with every number: it contains no revision, and the next noteGap filters it out before counting
  private gaps: Array<[number, number]> = [];

  private noteGap(lo: number, hi: number): void {
    if (hi <= lo + 1) return;
    const oldest = this.history.oldestPrev ?? this.lastChangeRev;
    this.gaps = this.gaps.filter(([, h]) => h > oldest);
    this.gaps.push([lo, hi]);
    if (this.gaps.length > MAX_GAPS) {
      this.history.clear();
      // Stryker disable next-line ArrayDeclaration: the replacement gap is a string, which compares false with every number: it contains no revision, and the next noteGap filters it out before counting
      this.gaps = [];
    }
    this.listener?.onGaps?.(this.gaps);
  }

  /** Revisions unknown to this hub, as open intervals (see gaps); for the worker threads' view. */
  get unknownRevisions(): ReadonlyArray<readonly [number, number]> { return this.gaps; }

  /**
   * A gap the store is about to prove empty or real (StoreSync.watchSaw): an agent at a revision
   * inside it waits for the answer instead of being sent a snapshot at once.
   */
  pendingGap?: readonly [number, number];

  /** Whether the state at `rev` is about to be known (see pendingGap). */
  pending(rev: number): boolean {
    return this.pendingGap !== undefined && this.pendingGap[0] < rev && rev < this.pendingGap[1];
  }

  setPendingGap(gap: readonly [number, number] | undefined): void {
    this.pendingGap = gap;
    this.listener?.onGaps?.(this.gaps);
  }

  /** The store proved the span (lo, hi) held no change after all (StoreSync.watchSaw): it is known. */
  forgetGap(lo: number, hi: number): void {
    this.gaps = this.gaps.filter(([l, h]) => l !== lo || h !== hi);
    this.setPendingGap(undefined);
  }

  /** Whether the state at `rev` is unknown to this hub (see gaps). */
  private inGap(rev: number): boolean {
    for (const [lo, hi] of this.gaps) if (lo < rev && rev < hi) return true;
    return false;
  }

  /**
   * The delta frames that bring an agent at `rev` to the current state: [] when it is current
   * already, null when the history does not reach back that far (it needs a snapshot).
   */
  framesAfter(rev: number): HistoryEntry[] | null {
    if (this.gaps.length > 0 && this.inGap(rev)) return null;
    if (rev >= this.lastChangeRev) return [];
    if (this.history.newestRev !== this.lastChangeRev) return null;
    return this.history.framesAfter(rev);
  }

  /** The history holds its frames: they are never gone while an entry is referenced. */
  frameOf(ref: FrameRef): Buffer { return (ref as HistoryEntry).frame; }

  /** The snapshot frames of the current state, encoded once per revision and shared. */
  snapshotFrames(): SnapshotParts {
    if (this.snapshotCache?.rev !== this.revision) this.snapshotCache = { rev: this.revision, frames: this.encodeSnapshot(false) };
    return this.snapshotCache;
  }

  /** The same snapshot marked `reset` (see SnapshotFrame.reset), also encoded once per revision. */
  resetSnapshotFrames(): SnapshotParts {
    if (this.resetSnapshotCache?.rev !== this.revision) this.resetSnapshotCache = { rev: this.revision, frames: this.encodeSnapshot(true) };
    return this.resetSnapshotCache;
  }

  private encodeSnapshot(reset: boolean): Buffer[] {
    const frames: Buffer[] = [];
    let puts: Array<[string, string]> = [];
    let size = 0;
    const flush = (last: boolean) => {
      const frame: SnapshotFrame = { t: 'snap', rev: this.revision, part: frames.length, last, puts, stale: this.stale, epoch: this.epoch };
      if (reset) frame.reset = true;
      frames.push(encodeFrame(frame));
      puts = [];
      size = 0;
    };
    for (const [k, v] of this.entries) {
      puts.push([k, v]);
      size += k.length + v.length;
      if (size >= this.snapshotChunkBytes) flush(false);
    }
    flush(true);
    return frames;
  }

  private commit(rev: number, puts: Array<[string, string]>, dels: string[]): void {
    if (puts.length === 0 && dels.length === 0) {
      this.advance(rev);
      return;
    }
    for (const k of dels) this.entries.delete(k);
    for (const [k, v] of puts) this.entries.set(k, v);
    const prev = this.lastChangeRev;
    const frame: DeltaFrame = { t: 'delta', prev, rev, puts, dels };
    const bytes = encodeFrame(frame);
    this.revision = rev;
    this.lastChangeRev = rev;
    this.snapshotCache = undefined;
    this.resetSnapshotCache = undefined;
    this.history.push({ prev, rev, frame: bytes });
    this.deltasPublished++;
    this.listener?.onDelta(bytes, prev, rev);
  }

  /** Lists at our own revision that found the state wrong (see correct). */
  corrections = 0;

  /**
   * The store listed, at the very revision we hold, another state than ours: its watch missed a
   * change (seen with etcd 3.4 re-creating watches while it recovered from SIGKILL). Agents at
   * this revision hold the same wrong state and would ignore a delta that does not move the
   * revision, so: the state is corrected in place; every revision up to this one is marked
   * unknown (a gap), so that an agent resuming from any of them gets a snapshot, never the old
   * history; and the fan-out sends every connected agent a snapshot now.
   */
  private correct(rev: number, puts: Array<[string, string]>, dels: string[]): void {
    for (const k of dels) this.entries.delete(k);
    for (const [k, v] of puts) this.entries.set(k, v);
    this.corrections++;
    this.snapshotCache = undefined;
    this.resetSnapshotCache = undefined;
    this.noteGap(0, rev + 1);
    this.listener?.onCorrected?.(rev);
  }

  /**
   * The store's history is not the one this state was built from (etcd restored from an older
   * backup, or rebuilt): take the listed state as the truth, drop the history (its revisions
   * mean something else now) and tell the fan-out, which sends every agent a reset snapshot.
   */
  reset(revision: number, kvs: Iterable<[string, string]>, epoch: string): void {
    const next = new Map<string, string>();
    for (const [k, v] of kvs) if (this.keep(k)) next.set(k, v);
    this.epoch = epoch;
    this.resets++;
    this.resetTo(revision, next);
    this.loaded = true;
    this.listener?.onReset(revision);
  }

  /** Drops history and replaces the state; agents are sent a snapshot on their next resume. */
  private resetTo(rev: number, next: Map<string, string>): void {
    this.entries.clear();
    for (const [k, v] of next) this.entries.set(k, v);
    this.revision = rev;
    this.lastChangeRev = rev;
    this.history.clear();
    // Stryker disable next-line ArrayDeclaration: the replacement gap is a string, which compares false with every number: it contains no revision, and the next noteGap filters it out before counting
    this.gaps = [];
    this.snapshotCache = undefined;
    this.resetSnapshotCache = undefined;
    this.listener?.onGaps?.(this.gaps);
    this.listener?.onProgress(rev, this.stale);
  }
}
