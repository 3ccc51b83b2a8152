// What one agent connection still has to be sent before it can go live: the deltas after its
// revision when the history reaches back that far, a snapshot otherwise — and, if the history
// moves past it while a slow agent is still catching up, a snapshot after all.
//
// Frames are handed out in batches of at most `budgetBytes` (but at least one frame), so the
// server can pace them on the socket's drain events: a missing history many times the
// per-agent backpressure limit is sent in pieces, never queued at once (uWebSockets.js would
// close the connection, and the agent would never catch up).
import type { HistoryEntry } from './history.js';
import type { HubState } from './state.js';

export class CatchUp {
  private snapshot?: readonly Buffer[];
  private snapshotIndex = 0;
  /** History entries fetched but not handed out yet (ascending), and where we are in them. */
  private pending: HistoryEntry[] = [];
  private pendingIndex = 0;

  /**
   * @param rev the agent's revision (0 = it has nothing)
   * @param onSnapshot told each time this agent has to be sent a full snapshot
   * @param reset the agent's state is from another store history: begin with a reset snapshot
   */
  constructor(private readonly state: HubState, private rev: number, private readonly onSnapshot: () => void, reset = false) {
    if (reset) this.startSnapshot(true);
    else if (rev === 0 || state.framesAfter(rev) === null) this.startSnapshot(false);
  }

  /** True when the catch-up begins with a snapshot rather than history deltas. */
  get needsSnapshot(): boolean { return this.snapshot !== undefined; }

  /**
   * The next frames to send — a snapshot part, or history deltas worth up to `budgetBytes`
   * (always at least one frame) — or null once the agent is current and can be subscribed to
   * live deltas.
   */
  next(budgetBytes: number): readonly Buffer[] | null {
    if (this.snapshot) {
      const part = this.snapshot[this.snapshotIndex++];
      if (this.snapshotIndex >= this.snapshot.length) this.snapshot = undefined;
      return [part];
    }
    if (this.pendingIndex >= this.pending.length) {
      // Stryker disable next-line BlockStatement: without this early return, framesAfter() answers [] for such a revision (this.rev is never inside a gap: it is at most the hub's revision, where any later gap begins) and the `entries.length === 0` check below returns null all the same
      if (this.rev >= this.state.lastChangeRev) {
        // Nothing left to send: the agent is at (or, via progress, past) the last change.
        return null;
      }
      const entries = this.state.framesAfter(this.rev);
      if (entries === null) {
        // The history moved past this agent while it was catching up.
        this.startSnapshot(false);
        return this.next(budgetBytes);
      }
      this.pending = entries;
      this.pendingIndex = 0;
      if (entries.length === 0) return null;
    }
    const out: Buffer[] = [];
    let bytes = 0;
    while (this.pendingIndex < this.pending.length && (out.length === 0 || bytes + this.pending[this.pendingIndex].frame.length <= budgetBytes)) {
      const entry = this.pending[this.pendingIndex++];
      out.push(entry.frame);
      bytes += entry.frame.length;
      this.rev = entry.rev;
    }
    return out;
  }

  private startSnapshot(reset: boolean): void {
    const snap = reset ? this.state.resetSnapshotFrames() : this.state.snapshotFrames();
    this.snapshot = snap.frames;
    this.snapshotIndex = 0;
    this.pending = [];
    this.pendingIndex = 0;
    this.rev = snap.rev;
    this.onSnapshot();
  }
}
