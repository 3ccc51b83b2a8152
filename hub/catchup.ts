// What one agent connection still has to be sent before it can go live: the deltas after its
// revision when the history reaches back that far, a snapshot otherwise — and, if the history
// moves past it while a slow agent is still catching up, a snapshot after all.
import type { HubState } from './state.js';

export class CatchUp {
  private snapshot?: readonly Buffer[];
  private snapshotIndex = 0;

  /**
   * @param rev the agent's revision (0 = it has nothing)
   * @param onSnapshot told each time this agent has to be sent a full snapshot
   */
  constructor(private readonly state: HubState, private rev: number, private readonly onSnapshot: () => void) {
    if (rev === 0 || state.framesAfter(rev) === null) this.startSnapshot();
  }

  /** True when the catch-up begins with a snapshot rather than history deltas. */
  get needsSnapshot(): boolean { return this.snapshot !== undefined; }

  /**
   * The next frames to send (a snapshot part, or all history deltas up to the hub's revision),
   * or null once the agent is current and can be subscribed to live deltas.
   */
  next(): readonly Buffer[] | null {
    if (this.snapshot) {
      const part = this.snapshot[this.snapshotIndex++]!;
      if (this.snapshotIndex >= this.snapshot.length) this.snapshot = undefined;
      return [part];
    }
    if (this.rev >= this.state.revision) return null;
    const frames = this.state.framesAfter(this.rev);
    if (frames === null) {
      this.startSnapshot();
      return this.next();
    }
    this.rev = this.state.revision;
    return frames;
  }

  private startSnapshot(): void {
    const snap = this.state.snapshotFrames();
    this.snapshot = snap.frames;
    this.snapshotIndex = 0;
    this.rev = snap.rev;
    this.onSnapshot();
  }
}
