// The hub's sliding window of recent deltas, so an agent that comes back after a short
// outage gets the deltas it missed instead of a full snapshot.
//
// Invariants:
//  - entries are in ascending revision order and chained: entry[i].prev === entry[i-1].rev;
//  - count <= maxCount and bytes <= maxBytes (the newest entry is kept even if it alone is
//    larger than maxBytes: the window must always reach the hub's current revision);
//  - the window covers revisions (oldestPrev, newestRev]: an agent at revision r with
//    oldestPrev <= r can be brought up to date from here.

export interface HistoryEntry {
  prev: number;
  rev: number;
  /** The encoded delta frame: the exact bytes sent to every agent. */
  frame: Buffer;
}

export class DeltaHistory {
  private ring: Array<HistoryEntry | undefined>;
  /** Index of the oldest entry in `ring`. */
  private head = 0;
  private count = 0;
  private bytes = 0;

  constructor(readonly maxCount: number, readonly maxBytes: number) {
    if (maxCount < 1) throw new Error('history needs room for at least one delta');
    // Stryker disable next-line ArrayDeclaration: the length only preallocates; a slot is always written by push() before at() reads it, and writing past an array's length grows it
    this.ring = new Array<HistoryEntry | undefined>(maxCount);
  }

  get length(): number { return this.count; }
  get totalBytes(): number { return this.bytes; }

  /** Oldest revision an agent may be at and still be served from history; undefined when empty. */
  get oldestPrev(): number | undefined { return this.count ? this.at(0).prev : undefined; }
  get newestRev(): number | undefined { return this.count ? this.at(this.count - 1).rev : undefined; }

  push(entry: HistoryEntry): void {
    const newest = this.count ? this.at(this.count - 1) : undefined;
    if (newest && entry.prev !== newest.rev) {
      // A break in the chain (e.g. the hub re-listed after etcd lost history): older entries
      // can no longer be combined with newer ones, so start the window afresh.
      this.clear();
    }
    if (this.count === this.maxCount) this.dropOldest();
    this.ring[(this.head + this.count) % this.maxCount] = entry;
    this.count++;
    this.bytes += entry.frame.length;
    while (this.bytes > this.maxBytes && this.count > 1) this.dropOldest();
  }

  /**
   * The entries (frames) an agent at revision `rev` needs to reach the newest revision, or null when the
   * window does not reach back to `rev` (the agent needs a snapshot). [] when already current.
   */
  framesAfter(rev: number): HistoryEntry[] | null {
    if (this.count === 0) return null;
    const newest = this.at(this.count - 1);
    if (rev >= newest.rev) return [];
    if (rev < this.at(0).prev) return null;
    // first entry with entry.rev > rev (binary search; revisions ascend)
    let lo = 0, hi = this.count - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.at(mid).rev > rev) hi = mid; else lo = mid + 1;
    }
    const out: HistoryEntry[] = [];
    for (let i = lo; i < this.count; i++) out.push(this.at(i));
    return out;
  }

  clear(): void {
    // Stryker disable next-line ArrayDeclaration: as in the constructor, the length only preallocates
    this.ring = new Array<HistoryEntry | undefined>(this.maxCount);
    this.head = 0;
    this.count = 0;
    this.bytes = 0;
  }

  private at(i: number): HistoryEntry {
    return this.ring[(this.head + i) % this.maxCount]!;
  }

  private dropOldest(): void {
    const e = this.at(0);
    this.ring[this.head] = undefined;
    this.head = (this.head + 1) % this.maxCount;
    this.count--;
    this.bytes -= e.frame.length;
  }
}
