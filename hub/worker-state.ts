// A worker thread's view of the hub's state, kept from the frame ring (hub/ring.ts): the
// FanoutState its HubServer serves agents from. The main thread owns the real HubState; here
// are only its scalars (revision, stale, …), the revisions it does not know (gaps), and the
// ring's records — deltas are fanned out as they are read, and catch-ups read the ring's
// older deltas again, without asking the main thread. Snapshots are encoded by the main
// thread once per revision and shared by every worker (fetchSnapshot).
//
// A worker that falls a whole ring behind, or finds a record overwritten while it copied it,
// has lost records: it closes its agents (they resume from their revision, here or on another
// hub) and asks the main thread where to start again (a summary at a ring sequence).
import type { FanoutState, FrameRef, SnapshotParts, StateListener } from './fanout.js';
import { RECORD_DELTA, RECORD_STATE, type RingReader } from './ring.js';

/** What a STATE record (and a summary) says: the main thread's HubState after the event. */
export interface StateSummary {
  /** What happened: a progress, a reset of the store history, a correction, the hub became current, the gaps changed. */
  ev: 'progress' | 'reset' | 'corrected' | 'current' | 'gaps' | 'summary';
  rev: number;
  lastChangeRev: number;
  stale: boolean;
  loaded: boolean;
  current: boolean;
  epoch: string;
  gaps: Array<[number, number]>;
  /** HubState.pendingGap. */
  pendingGap?: [number, number];
}

/** A delta found in the ring for a catch-up. */
interface RingRef extends FrameRef { seq: number; prev: number }

export interface RingStateEvents {
  /** The ring lost records for this worker: close every agent, then call restart() with a summary. */
  onOverrun(why: string): void;
  /** The hub became current. */
  onCurrent(): void;
  /** Asks the main thread for the snapshot of its present state. */
  fetchSnapshot(reset: boolean): void;
}

export class RingState implements FanoutState {
  revision = 0;
  lastChangeRev = 0;
  stale = true;
  loaded = false;
  epoch = '';
  current = false;
  private gaps: Array<[number, number]> = [];
  private pendingGap?: [number, number];
  private listener?: StateListener;
  /** The next ring record to read; undefined while waiting for a summary. */
  private cursor?: number;
  /** Sequence of the last record that made earlier snapshots unusable (see acceptSnapshot). */
  private invalidatedAt = -1;
  private snapshots: { plain?: SnapshotParts; reset?: SnapshotParts } = {};
  private fetching = { plain: false, reset: false };
  /** Records read, and overruns seen (metrics). */
  recordsRead = 0;
  overruns = 0;

  constructor(private readonly ring: RingReader, private readonly events: RingStateEvents) {}

  setListener(listener: StateListener): void { this.listener = listener; }

  /** Records published that this worker has not read yet. */
  get lag(): number { return this.cursor === undefined ? 0 : this.ring.written() - this.cursor; }

  /** Starts (again) from a summary the main thread took at ring sequence `seq`. */
  restart(seq: number, summary: StateSummary): void {
    this.cursor = seq;
    this.apply(summary, seq - 1);
    this.drain();
  }

  /** Reads every record published since the last call and hands each to the server. */
  drain(): void {
    if (this.cursor === undefined) return;
    const written = this.ring.written();
    if (written - this.cursor > this.ring.slots) { this.overrun(`fell ${written - this.cursor} records behind a ring of ${this.ring.slots}`); return; }
    while (this.cursor !== undefined && this.cursor < written) {
      const rec = this.ring.read(this.cursor);
      if (rec === 'pending') return;
      if (rec === 'overrun') { this.overrun(`record ${this.cursor} was overwritten before it was read`); return; }
      this.cursor++;
      this.recordsRead++;
      if (rec.kind === RECORD_DELTA) {
        this.revision = rec.rev;
        this.lastChangeRev = rec.rev;
        this.listener?.onDelta(rec.bytes, rec.prev, rec.rev);
      } else if (rec.kind === RECORD_STATE) {
        this.apply(JSON.parse(rec.bytes.toString()) as StateSummary, rec.seq);
      }
    }
  }

  private overrun(why: string): void {
    this.overruns++;
    this.cursor = undefined;
    this.loaded = false;
    this.current = false;
    this.snapshots = {};
    this.events.onOverrun(why);
  }

  private apply(s: StateSummary, seq: number): void {
    const staleChanged = s.stale !== this.stale;
    this.revision = s.rev;
    this.lastChangeRev = s.lastChangeRev;
    this.stale = s.stale;
    this.loaded = s.loaded;
    this.current = s.current;
    this.epoch = s.epoch;
    this.gaps = s.gaps;
    this.pendingGap = s.pendingGap;
    // A snapshot fetched before this record may show the state before it (a correction at the
    // same revision, a reset, the stale flag): no longer served.
    if (s.ev !== 'progress' || staleChanged) { this.invalidatedAt = seq; this.snapshots = {}; }
    switch (s.ev) {
      case 'progress': this.listener?.onProgress(s.rev, s.stale); break;
      case 'reset': this.listener?.onReset(s.rev); break;
      case 'corrected': this.listener?.onCorrected?.(s.rev); break;
      // As sync.onCurrent on one thread: told when the hub became current, and after a reset.
      case 'current': case 'summary': if (s.current) this.events.onCurrent(); break;
      case 'gaps': this.listener?.onGaps?.(this.gaps); break;
    }
  }

  framesAfter(rev: number): readonly FrameRef[] | null {
    if (this.cursor === undefined) return null;
    for (const [lo, hi] of this.gaps) if (lo < rev && rev < hi) return null;
    if (rev >= this.lastChangeRev) return [];
    // The main thread's history does not reach back to `rev`: neither do its gaps, so the ring,
    // which may hold older deltas, must not be used across them.
    if (rev < this.ring.floor()) return null;
    // Back from the newest record read: the deltas after `rev`, newest first. A record gone,
    // or a break in the chain, means the ring does not reach back to `rev`. The chain and the
    // floor are all it takes: after a reset or a dropped history the floor is past every
    // older delta, and a delta that never reached the ring (too large) breaks the chain.
    const out: RingRef[] = [];
    for (let seq = this.cursor - 1; seq >= 0; seq--) {
      const m = this.ring.meta(seq);
      if (typeof m === 'string') return null;
      if (m.kind === RECORD_STATE) continue;
      if (out.length === 0 ? m.rev !== this.lastChangeRev : m.rev !== out[out.length - 1].prev) return null;
      out.push({ rev: m.rev, seq: m.seq, prev: m.prev });
      if (m.prev <= rev) return out.reverse();
    }
    return null;
  }

  pending(rev: number): boolean {
    return this.pendingGap !== undefined && this.pendingGap[0] < rev && rev < this.pendingGap[1];
  }

  frameOf(ref: FrameRef): Buffer | null {
    const m = this.ring.meta((ref as RingRef).seq);
    if (typeof m === 'string') return null;
    const bytes = this.ring.bytes(m);
    return bytes === 'overrun' ? null : bytes;
  }

  snapshotFrames(): SnapshotParts | undefined { return this.snapshot('plain'); }
  resetSnapshotFrames(): SnapshotParts | undefined { return this.snapshot('reset'); }

  private snapshot(kind: 'plain' | 'reset'): SnapshotParts | undefined {
    const have = this.snapshots[kind];
    if (have && have.rev >= this.revision) return have;
    if (!this.fetching[kind]) {
      this.fetching[kind] = true;
      this.events.fetchSnapshot(kind === 'reset');
    }
    return undefined;
  }

  /**
   * The main thread's answer to fetchSnapshot: its snapshot at `rev`, taken when the ring held
   * `seq` records. Taken only if no record read since makes it wrong; else fetched again.
   */
  acceptSnapshot(reset: boolean, seq: number, parts: SnapshotParts): void {
    const kind = reset ? 'reset' : 'plain';
    this.fetching[kind] = false;
    if (seq > this.invalidatedAt && this.cursor !== undefined) this.snapshots[kind] = parts;
    this.listener?.onSnapshotReady?.();
  }
}
