// What an update to the indexes reports: per index, the keys it touched. The answer cache and
// the event streams (agent/api, agent/streams.ts) read it to know which answers went stale.

/** The typed indexes an endpoint reads. A change to one of them can change the endpoint's output. */
export type IndexName = 'config' | 'podgroups' | 'containers' | 'depends' | 'nodes';

/** A key of an index that a change touched; `deleted` when the key is gone after the change. */
export interface ChangedKey {
  key: string;
  deleted: boolean;
}

/** Per index, the index keys a ChangeSet touched (only indexes that changed appear). */
export type IndexChanges = Partial<Record<IndexName, ChangedKey[]>>;
