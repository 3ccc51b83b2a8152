// What one agent connection still has to be sent before it can go live: the deltas after its
// revision when the history reaches back that far, a snapshot otherwise — and, if the history
// moves past it while a slow agent is still catching up, a snapshot after all.
//
// Frames are handed out in batches of at most `budgetBytes` (but at least one frame), so the
// server can pace them on the socket's drain events: a missing history many times the
// per-agent backpressure limit is sent in pieces, never queued at once (uWebSockets.js would
// close the connection, and the agent would never catch up).
//
// In a worker thread the snapshot may not be at hand yet (it is fetched from the main thread,
// once per revision) and a delta's bytes may be gone from the ring by the time they are sent:
// next() then answers no frames for now (the server pumps again on onSnapshotReady), or
// switches to a snapshot, as when the history moves past the agent.
import type { FanoutState, FrameRef } from './fanout.js';

/**
 * Why an agent is sent a snapshot rather than deltas (the hub logs it for an agent that had a
 * state: a move or a reconnect that could not resume is worth knowing about):
 * - 'no state': the agent has nothing (revision 0);
 * - 'reset': its state is from another store history;
 * - 'history': this hub's history does not reach back to its revision (older than the oldest
 *   delta kept, inside a revision range this hub does not know, or a history cleared);
 * - 'gap': its revision was inside a gap that turned out to hold changes;
 * - 'moved past': the history moved past it while it was catching up;
 * - 'overwritten': a delta it needed was overwritten in the ring (worker threads).
 */
export type SnapshotWhy = 'no state' | 'reset' | 'history' | 'gap' | 'moved past' | 'overwritten';

export class CatchUp {
  private snapshot?: readonly Buffer[];
  private snapshotIndex = 0;
  /** A snapshot is needed but was not at hand (worker threads), and why ('reset': a reset snapshot). */
  private awaiting?: SnapshotWhy;
  /** The agent's revision is in a gap about to be proved empty or real (FanoutState.pending): wait. */
  private awaitingGap = false;
  /** History entries fetched but not handed out yet (ascending), and where we are in them. */
  private pending: readonly FrameRef[] = [];
  private pendingIndex = 0;
  /** The bytes of pending[pendingIndex], loaded but left for the next batch. */
  private loaded?: Buffer;

  /**
   * @param rev the agent's revision (0 = it has nothing)
   * @param onSnapshot told each time this agent has to be sent a full snapshot, and why
   * @param reset the agent's state is from another store history: begin with a reset snapshot
   */
  constructor(private readonly state: FanoutState, private rev: number, private readonly onSnapshot: (why: SnapshotWhy) => void, reset = false) {
    if (reset) this.startSnapshot('reset');
    else if (rev !== 0 && state.framesAfter(rev) === null && state.pending(rev)) this.awaitingGap = true;
    else if (rev === 0) this.startSnapshot('no state');
    else if (state.framesAfter(rev) === null) this.startSnapshot('history');
  }

  /** True when the catch-up begins with a snapshot rather than history deltas. */
  get needsSnapshot(): boolean { return this.snapshot !== undefined || this.awaiting !== undefined; }

  /**
   * The next frames to send — a snapshot part, or history deltas worth up to `budgetBytes`
   * (always at least one frame) — or null once the agent is current and can be subscribed to
   * live deltas; [] while the snapshot it needs is being fetched.
   */
  next(budgetBytes: number): readonly Buffer[] | null {
    if (this.awaitingGap) {
      if (this.state.pending(this.rev)) return [];
      this.awaitingGap = false;
      if (this.state.framesAfter(this.rev) === null) this.startSnapshot('gap');
    }
    if (this.awaiting) {
      this.startSnapshot(this.awaiting);
      if (this.awaiting) return [];
    }
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
        this.startSnapshot('moved past');
        return this.next(budgetBytes);
      }
      this.pending = entries;
      this.pendingIndex = 0;
      if (entries.length === 0) return null;
    }
    const out: Buffer[] = [];
    let bytes = 0;
    while (this.pendingIndex < this.pending.length) {
      const ref = this.pending[this.pendingIndex];
      const frame = this.loaded ?? this.state.frameOf(ref);
      this.loaded = undefined;
      if (frame === null) {
        // Its bytes are gone (a ring overwrote them): what was loaded goes out, then a snapshot.
        this.startSnapshot('overwritten');
        return out.length > 0 ? out : this.next(budgetBytes);
      }
      if (out.length > 0 && bytes + frame.length > budgetBytes) { this.loaded = frame; break; }
      out.push(frame);
      bytes += frame.length;
      this.rev = ref.rev;
      this.pendingIndex++;
    }
    return out;
  }

  private startSnapshot(why: SnapshotWhy): void {
    const snap = why === 'reset' ? this.state.resetSnapshotFrames() : this.state.snapshotFrames();
    this.pending = [];
    this.pendingIndex = 0;
    this.loaded = undefined;
    if (!snap) { this.awaiting = why; return; }
    this.awaiting = undefined;
    this.snapshot = snap.frames;
    this.snapshotIndex = 0;
    this.rev = snap.rev;
    this.onSnapshot(why);
  }
}
