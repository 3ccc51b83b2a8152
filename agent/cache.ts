// The agent's local copy of the hub state: key → value at a revision, plus how fresh it is.
// Applies snapshots and deltas, turns each into the ChangeSet the indexes consume, and tells
// listeners. The revision never goes backwards.

/** One change to the agent's cache: full etcd keys, e.g. "/lain/config/domain". */
export interface ChangeSet {
  puts: Array<[string, string]>;
  dels: string[];
}

export interface CacheListener {
  (changes: ChangeSet, revision: number): void;
}

export type CacheSource = 'none' | 'hub' | 'state-file';

export class Cache {
  readonly entries = new Map<string, string>();
  revision = 0;
  /** True once the cache holds a complete state (from a hub or from the state file). */
  hasState = false;
  /** Where the current state came from. */
  source: CacheSource = 'none';
  /** The hub said its own state is stale (it lost etcd). */
  hubStale = false;
  /** The store identity (etcd cluster id) the state came from; '' = unknown. */
  epoch = '';
  /** The hub tier's members as a hub last told them (persisted with the state: a restart finds the tier without its seeds). */
  hubs: string[] = [];
  private readonly listeners: CacheListener[] = [];

  onChange(listener: CacheListener): void { this.listeners.push(listener); }

  /**
   * Replaces the state with a complete snapshot at `revision` and emits the difference, so
   * event streams see proper updates and deletes rather than a reset.
   * Returns false (and changes nothing) if the snapshot is older than what we hold — unless
   * `reset`: the hub checked against the store that our revision belongs to another history
   * (etcd restored from an older backup, or rebuilt), and its state is the truth now.
   */
  replace(revision: number, entries: Iterable<[string, string]>, source: CacheSource, reset = false): boolean {
    if (this.hasState && revision < this.revision && !reset) return false;
    const next = new Map(entries);
    const puts: Array<[string, string]> = [];
    const dels: string[] = [];
    for (const [k, v] of next) if (this.entries.get(k) !== v) puts.push([k, v]);
    for (const k of this.entries.keys()) if (!next.has(k)) dels.push(k);
    for (const k of dels) this.entries.delete(k);
    for (const [k, v] of puts) this.entries.set(k, v);
    this.revision = revision;
    this.hasState = true;
    this.source = source;
    this.emit({ puts, dels });
    return true;
  }

  /** Applies a delta (the caller has checked it follows on from our revision). */
  applyDelta(revision: number, puts: Array<[string, string]>, dels: string[]): void {
    if (revision <= this.revision) return;
    for (const k of dels) this.entries.delete(k);
    for (const [k, v] of puts) this.entries.set(k, v);
    this.revision = revision;
    this.source = 'hub';
    this.emit({ puts, dels });
  }

  /** The hub's state is complete up to `revision` with nothing we care about changed. */
  advance(revision: number): void {
    this.revision = Math.max(this.revision, revision);
  }

  private emit(changes: ChangeSet): void {
    if (changes.puts.length === 0 && changes.dels.length === 0) return;
    for (const l of this.listeners) l(changes, this.revision);
  }
}
