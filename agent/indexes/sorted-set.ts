// A set that also keeps its members in comparator order, cheap to update one member at a time
// and cheap to load in bulk (a snapshot of thousands of keys).
//
// Changes are queued and folded into the ordered array on the next ordered read: a few are
// applied by binary search (one memmove each); past a threshold the array is rebuilt with one
// sort, so loading N members costs O(N log N), not O(N²).
//
// Invariants: `sorted` holds exactly the members once no change is queued; two distinct members
// never compare equal; a member's sort key never changes while it is a member (delete it and add
// its replacement instead).

export class SortedSet<T> {
  private readonly members = new Set<T>();
  private sorted: T[] = [];
  // Stryker disable next-line ArrayDeclaration: a junk first entry is applied while `sorted` is still empty, where lowerBound compares nothing and splice removes nothing
  private readonly queued: Array<{ add: boolean; item: T }> = [];
  // Stryker disable next-line BooleanLiteral: starting in rebuild mode only makes the first read sort `members`, the same array the queued inserts would build
  private rebuild = false;

  constructor(private readonly compare: (a: T, b: T) => number) {}

  add(item: T): void {
    if (this.members.has(item)) return;
    this.members.add(item);
    this.enqueue(true, item);
  }

  delete(item: T): void {
    if (!this.members.delete(item)) return;
    this.enqueue(false, item);
  }

  /** The members in order. The array belongs to the set: do not modify or keep it across changes. */
  view(): readonly T[] {
    this.flush();
    return this.sorted;
  }

  /** Index in view() of the first member not ordered before `probe`; `cmp` must agree with the set's order. */
  lowerBound<P>(probe: P, cmp: (member: T, probe: P) => number): number {
    this.flush();
    return lowerBound(this.sorted, probe, cmp);
  }

  private enqueue(add: boolean, item: T): void {
    if (this.rebuild) return;
    this.queued.push({ add, item });
    // Past this many queued changes one sort is cheaper than that many memmoves.
    if (this.queued.length > 32 + (this.sorted.length >> 4)) {
      this.rebuild = true;
      this.queued.length = 0;
    }
  }

  private flush(): void {
    if (this.rebuild) {
      this.sorted = [...this.members].sort(this.compare);
      this.rebuild = false;
      return;
    }
    for (const { add, item } of this.queued) {
      const i = lowerBound(this.sorted, item, this.compare);
      // A queued delete finds its item at i: delete() queues only members, a member is in
      // `sorted` by the time its delete comes, and distinct members never compare equal.
      if (add) this.sorted.splice(i, 0, item);
      else this.sorted.splice(i, 1);
    }
    this.queued.length = 0;
  }
}

/** Index of the first element of `sorted` not ordered before `probe`. */
export function lowerBound<T, P>(sorted: readonly T[], probe: P, cmp: (item: T, probe: P) => number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cmp(sorted[mid], probe) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
