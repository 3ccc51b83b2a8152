// An in-memory store with etcd v3's revision semantics: one global revision that every
// write transaction increments, prefix lists at the current revision, watches that replay
// history after a revision, and compaction that makes older revisions unwatchable.
// Used by the demo (`npm start`) and by unit tests; integration tests use a real etcd.
import { CompactedError, type ListResult, type RevisionChange, type Store, type StoreWatch, type WatchHandlers } from './types.js';

interface Watching {
  prefix: string;
  handlers: WatchHandlers;
}

export class MemoryStore implements Store {
  readonly description = 'memory';
  private readonly data = new Map<string, string>();
  private revision = 0;
  /** Every change after compactRevision, ascending. */
  private log: RevisionChange[] = [];
  private compactRevision = 0;
  private readonly watchers = new Set<Watching>();

  /** Loads `kvs` as one transaction (revision 1 on an empty store). */
  constructor(kvs?: Record<string, string>) {
    if (kvs && Object.keys(kvs).length > 0) this.txn(Object.entries(kvs), []);
  }

  /** The current revision, synchronously (tests and the demo). */
  get lastRevision(): number { return this.revision; }

  put(key: string, value: string): number { return this.txn([[key, value]], []); }

  delete(key: string): number { return this.txn([], [key]); }

  /** Applies puts and deletes atomically at one new revision. Deleting a missing key is a no-op. */
  txn(puts: Array<[string, string]>, dels: string[]): number {
    const realDels = dels.filter((k) => this.data.has(k));
    if (puts.length === 0 && realDels.length === 0) return this.revision;
    this.revision++;
    for (const k of realDels) this.data.delete(k);
    for (const [k, v] of puts) this.data.set(k, v);
    const change: RevisionChange = { revision: this.revision, puts: puts.map(([k, v]) => [k, v]), dels: realDels };
    this.log.push(change);
    for (const w of this.watchers) this.deliver(w, [change]);
    return this.revision;
  }

  /** Forgets history up to `revision` (default: current); watchers started before it are lost. */
  compact(revision = this.revision): void {
    this.compactRevision = Math.max(this.compactRevision, revision);
    this.log = this.log.filter((c) => c.revision > this.compactRevision);
  }

  async currentRevision(): Promise<number> { return this.revision; }

  async list(prefix: string, atRevision?: number): Promise<ListResult> {
    // Historical reads are not kept in memory: like a fully compacted etcd.
    if (atRevision !== undefined && atRevision !== this.revision) throw new CompactedError(`revision ${atRevision} is not available (memory store keeps only the current state)`);
    const kvs: Array<[string, string]> = [];
    for (const [k, v] of this.data) if (k.startsWith(prefix)) kvs.push([k, v]);
    kvs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return { revision: this.revision, kvs };
  }

  async watch(prefix: string, afterRevision: number, handlers: WatchHandlers): Promise<StoreWatch> {
    const w: Watching = { prefix, handlers };
    if (afterRevision < this.compactRevision) {
      queueMicrotask(() => handlers.onLost(`required revision ${afterRevision + 1} has been compacted (compact revision ${this.compactRevision})`));
      return { cancel: async () => {} };
    }
    // Replay and register in one step, after the caller has its handle, so that no change
    // can fall between the backlog and the live feed.
    let cancelled = false;
    queueMicrotask(() => {
      if (cancelled) return;
      const backlog = this.log.filter((c) => c.revision > afterRevision);
      if (backlog.length > 0) this.deliver(w, backlog);
      this.watchers.add(w);
    });
    return { cancel: async () => { cancelled = true; this.watchers.delete(w); } };
  }

  async close(): Promise<void> { this.watchers.clear(); }

  private deliver(w: Watching, changes: RevisionChange[]): void {
    const mine: RevisionChange[] = [];
    for (const c of changes) {
      const puts = c.puts.filter(([k]) => k.startsWith(w.prefix));
      const dels = c.dels.filter((k) => k.startsWith(w.prefix));
      if (puts.length > 0 || dels.length > 0) mine.push({ revision: c.revision, puts, dels });
    }
    if (mine.length > 0) w.handlers.onChanges(mine);
    else if (changes.length > 0) w.handlers.onProgress(changes[changes.length - 1].revision);
  }
}
