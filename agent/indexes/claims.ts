// Things several sources can claim at once: a container key or a container IP listed by two
// pod groups, a portal IP listed by two depends keys. Each claim is kept, so when one source
// lets go the other's claim is still there (lainlet kept only the last writer and, when a pod
// group moved its IPs, never forgot the old ones: API.md §11 item 5).
import { compareUtf8 } from '../../shared/gojson.js';

export class Claims<V> {
  private readonly byItem = new Map<string, Map<string, V>>();

  get size(): number {
    return this.byItem.size;
  }

  claim(item: string, owner: string, value: V): void {
    let owners = this.byItem.get(item);
    if (!owners) {
      owners = new Map();
      this.byItem.set(item, owners);
    }
    owners.set(owner, value);
  }

  release(item: string, owner: string): void {
    const owners = this.byItem.get(item);
    if (!owners) return;
    owners.delete(owner);
    if (owners.size === 0) this.byItem.delete(item);
  }

  /** The claim of the owner last in key order, so the result does not depend on write order. */
  last(item: string): V | undefined {
    return this.pick(item, 1);
  }

  /** The claim of the owner first in key order. */
  first(item: string): V | undefined {
    return this.pick(item, -1);
  }

  /** Every claim on `item`. */
  all(item: string): IterableIterator<V> | undefined {
    return this.byItem.get(item)?.values();
  }

  /** Whether some owner claims `item` with `value` (===). */
  has(item: string, value: V): boolean {
    const owners = this.byItem.get(item);
    if (!owners) return false;
    for (const v of owners.values()) if (v === value) return true;
    return false;
  }

  private pick(item: string, direction: 1 | -1): V | undefined {
    const owners = this.byItem.get(item);
    if (!owners) return undefined;
    let bestOwner: string | undefined;
    let best: V | undefined;
    for (const [owner, value] of owners) {
      // Owners are distinct map keys, so the comparison is never 0: -1 or 1 says which comes first.
      if (bestOwner === undefined || Math.sign(compareUtf8(owner, bestOwner)) === direction) {
        bestOwner = owner;
        best = value;
      }
    }
    return best;
  }
}
