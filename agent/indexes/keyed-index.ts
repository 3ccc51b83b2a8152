// An index: key → entry, with the keys kept in Go's map order (byte-wise UTF-8) so that
// lainlet's lookups are binary searches and its outputs need no sorting per request.
import { compareUtf8 } from '../../shared/gojson.js';
import { SortedSet } from './sorted-set.js';

/** What endpoints may do with an index. */
export interface ReadonlyKeyedIndex<V> {
  readonly size: number;
  get(key: string): V | undefined;
  /**
   * lainlet's lookup rule (API.md §4): "" means every entry; otherwise the entry whose key equals
   * `scope` if there is one, else every entry whose key starts with `scope`. In key order.
   */
  lookup(scope: string): V[];
  /** Every key in order (owned by the index: do not modify). */
  keys(): readonly string[];
}

export class KeyedIndex<V> implements ReadonlyKeyedIndex<V> {
  private readonly entries = new Map<string, V>();
  private readonly order = new SortedSet<string>(compareUtf8);

  get size(): number {
    return this.entries.size;
  }

  get(key: string): V | undefined {
    return this.entries.get(key);
  }

  set(key: string, value: V): void {
    this.entries.set(key, value);
    this.order.add(key);
  }

  delete(key: string): boolean {
    if (!this.entries.delete(key)) return false;
    this.order.delete(key);
    return true;
  }

  keys(): readonly string[] {
    return this.order.view();
  }

  lookup(scope: string): V[] {
    if (scope === '') return this.order.view().map((k) => this.entries.get(k)!);
    const exact = this.entries.get(scope);
    if (exact !== undefined) return [exact];
    return this.keysWithPrefix(scope).map((k) => this.entries.get(k)!);
  }

  /** The keys starting with `prefix`, in order (a contiguous run of the ordered keys). */
  keysWithPrefix(prefix: string): string[] {
    const keys = this.order.view();
    const out: string[] = [];
    for (let i = this.order.lowerBound(prefix, compareUtf8); i < keys.length && keys[i].startsWith(prefix); i++) {
      out.push(keys[i]);
    }
    return out;
  }
}
