// Pod groups by cache key (`<app>/<proc>`), plus the other orders lainlet's outputs need, kept
// up to date with each change so no request sorts the whole cluster:
//  * by Spec.Name — coreinfo, proxy, webprocs, rebellion and backupspec are maps keyed by it;
//  * stream procs by (Spec.Namespace, Spec.Name) — streamprocs is a map of namespace → procs;
//  * the set of namespaces — appswatcher.
import { compareUtf8 } from '../../shared/gojson.js';
import type { PodGroupEntry } from './entries.js';
import { KeyedIndex, type ReadonlyKeyedIndex } from './keyed-index.js';
import { SortedSet } from './sorted-set.js';

/** Spec.Name, then cache key (two keys may carry the same Spec.Name). */
export function compareByName(a: PodGroupEntry, b: PodGroupEntry): number {
  return compareUtf8(a.pg.name, b.pg.name) || compareUtf8(a.key, b.key);
}

/** Spec.Namespace, then Spec.Name, then cache key. */
export function compareByNamespace(a: PodGroupEntry, b: PodGroupEntry): number {
  return compareUtf8(a.pg.namespace, b.pg.namespace) || compareByName(a, b);
}

export function isStreamProc(entry: PodGroupEntry): boolean {
  return entry.pg.streamPorts.length > 0;
}

export interface ReadonlyPodGroupIndex extends ReadonlyKeyedIndex<PodGroupEntry> {
  /** The entries lookup(scope) finds, ordered by Spec.Name (then key). */
  byName(scope: string): readonly PodGroupEntry[];
  /** The stream procs lookup(scope) finds, ordered by namespace, then Spec.Name. */
  streamProcs(scope: string): readonly PodGroupEntry[];
  /** Every Spec.Namespace, in order, once each. */
  namespaces(): readonly string[];
}

export class PodGroupIndex implements ReadonlyPodGroupIndex {
  private readonly entries = new KeyedIndex<PodGroupEntry>();
  private readonly nameOrder = new SortedSet<PodGroupEntry>(compareByName);
  private readonly streamOrder = new SortedSet<PodGroupEntry>(compareByNamespace);
  private readonly namespaceCounts = new Map<string, number>();
  private readonly namespaceOrder = new SortedSet<string>(compareUtf8);

  get size(): number {
    return this.entries.size;
  }

  get(key: string): PodGroupEntry | undefined {
    return this.entries.get(key);
  }

  lookup(scope: string): PodGroupEntry[] {
    return this.entries.lookup(scope);
  }

  keys(): readonly string[] {
    return this.entries.keys();
  }

  /** Stores `entry` under its key; returns the entry it replaced. */
  set(entry: PodGroupEntry): PodGroupEntry | undefined {
    const old = this.entries.get(entry.key);
    if (old) this.unlink(old);
    this.entries.set(entry.key, entry);
    this.nameOrder.add(entry);
    if (isStreamProc(entry)) this.streamOrder.add(entry);
    const ns = entry.pg.namespace;
    this.namespaceCounts.set(ns, (this.namespaceCounts.get(ns) ?? 0) + 1);
    this.namespaceOrder.add(ns); // a set: a namespace already listed stays listed once
    return old;
  }

  /** Removes the entry under `key`; returns it. */
  delete(key: string): PodGroupEntry | undefined {
    const old = this.entries.get(key);
    if (!old) return undefined;
    this.entries.delete(key);
    this.unlink(old);
    return old;
  }

  byName(scope: string): readonly PodGroupEntry[] {
    if (scope === '') return this.nameOrder.view();
    return sortedCopy(this.entries.lookup(scope), compareByName);
  }

  streamProcs(scope: string): readonly PodGroupEntry[] {
    if (scope === '') return this.streamOrder.view();
    return sortedCopy(this.entries.lookup(scope).filter(isStreamProc), compareByNamespace);
  }

  namespaces(): readonly string[] {
    return this.namespaceOrder.view();
  }

  private unlink(entry: PodGroupEntry): void {
    this.nameOrder.delete(entry);
    this.streamOrder.delete(entry);
    const ns = entry.pg.namespace;
    const count = this.namespaceCounts.get(ns)!;
    if (count > 1) {
      this.namespaceCounts.set(ns, count - 1);
    } else {
      this.namespaceCounts.delete(ns);
      this.namespaceOrder.delete(ns);
    }
  }
}

/**
 * `items` (in key order) ordered by `compare`. Cache keys are `<app>/<proc>` and names
 * `<app>.<type>.<proc>`, so the two orders nearly always agree: check before sorting.
 */
function sortedCopy<T>(items: T[], compare: (a: T, b: T) => number): T[] {
  for (let i = 1; i < items.length; i++) {
    if (compare(items[i - 1], items[i]) > 0) return items.sort(compare);
  }
  return items;
}
