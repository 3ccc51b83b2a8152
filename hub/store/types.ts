// The store interface (DESIGN.md, Data flow 1): list a prefix at a revision, then watch the
// prefix after that revision, with changes grouped by revision and a distinct "history lost"
// signal. Backends: etcd v3 (default), etcd v2 keys API, and an in-memory store.

/** Everything one store revision changed under the watched prefix: one etcd transaction = one change. */
export interface RevisionChange {
  revision: number;
  puts: Array<[string, string]>;
  /** Exact keys that were deleted. */
  dels: string[];
  /**
   * Subtrees that were deleted (etcd v2 directory delete or TTL expiry): the key itself and
   * every key under `key + "/"`. Never a plain string-prefix delete (API.md §11 item 1).
   */
  delTrees?: string[];
}

export interface ListResult {
  revision: number;
  kvs: Array<[string, string]>;
}

export interface WatchHandlers {
  /** Changes after the start revision, in ascending revision order, never split inside a revision. */
  onChanges(changes: RevisionChange[]): void;
  /** The store says nothing changed under the prefix up to `revision`. */
  onProgress(revision: number): void;
  /**
   * The watch can no longer deliver every change (compacted, canceled, ended, index cleared).
   * The owner must list again and work out the difference. The watch is dead after this.
   */
  onLost(reason: string): void;
  /** Connection trouble that the backend is retrying by itself; state should be marked stale. */
  onDisconnected(reason: string): void;
  /** The backend is connected again after onDisconnected. */
  onReconnected(): void;
  /**
   * The watch now runs on `source` (an etcd member, or an endpoint for etcd2): told when the
   * first watch is created and whenever it moves to another member, with why it moved.
   */
  onSource?(source: StoreSource, previous: StoreSource | undefined, reason: string): void;
}

/** The etcd member (or v2 endpoint) a watch runs on. */
export interface StoreSource {
  /** etcd's member id in hex, as etcdctl prints it ('' where unknown, e.g. etcd2). */
  id: string;
  /** The member's name ('' where unknown). */
  name: string;
  /** Its client URL (the first one it advertises). */
  url: string;
}

export interface StoreWatch {
  cancel(): Promise<void>;
}

export interface Store {
  /** A short name for logs and /debug, e.g. "etcd3 http://127.0.0.1:2379". */
  readonly description: string;
  /**
   * The identity of the store's data (etcd's cluster id), as of the last list or revision
   * read; '' when the backend has none. It changes when etcd is rebuilt, and an agent whose
   * state came from another identity needs a reset, not a resume.
   */
  readonly clusterId?: string;
  /** The member the watch runs on now (undefined before the first watch is created). */
  readonly source?: StoreSource;
  /** How many times the watch moved to another member. */
  readonly sourceMoves?: number;
  /**
   * Lists the prefix at the current revision, or at `atRevision` when given (a historical
   * read; throws CompactedError when that revision is no longer available).
   */
  list(prefix: string, atRevision?: number): Promise<ListResult>;
  /** The store's current revision (cheap). */
  currentRevision(): Promise<number>;
  watch(prefix: string, afterRevision: number, handlers: WatchHandlers): Promise<StoreWatch>;
  close(): Promise<void>;
}

/** A historical read or watch asked for a revision the store no longer has. */
export class CompactedError extends Error {}
