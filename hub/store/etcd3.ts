// The etcd v3 backend: one prefix list, then ONE watch on the prefix (etcd3 package).
//
// Seen with etcd3 1.1.2 against etcd 3.4 (DESIGN.md, Known traps): a watch whose start
// revision was compacted emits one `error` ("Watcher canceled") and then stays silent, so
// any error or end is treated as "history lost". After an etcd restart the same watcher
// reconnects by itself and resumes from its last revision, emitting `disconnected` per retry.
import { Etcd3, type Watcher } from 'etcd3';
import { CompactedError, type ListResult, type RevisionChange, type Store, type StoreWatch, type WatchHandlers } from './types.js';

/** etcd itself caps a request at 1.5 MB by default, but a response (a range) has no cap. */
const MAX_GRPC_MESSAGE_BYTES = 512 * 1024 * 1024;

export interface Etcd3StoreOptions {
  endpoints: string[];
  /** How long one list or connection attempt may take before it fails (ms). */
  dialTimeoutMs?: number;
}

export class Etcd3Store implements Store {
  readonly description: string;
  private readonly client: Etcd3;

  constructor(opts: Etcd3StoreOptions) {
    this.description = `etcd3 ${opts.endpoints.join(',')}`;
    this.client = new Etcd3({
      hosts: opts.endpoints,
      dialTimeout: opts.dialTimeoutMs ?? 3000,
      // A list of /lain/ on a large cluster (1000+ pod groups, ~10 MB) is ONE gRPC message, as
      // is a watch response replaying a big transaction: grpc-js's default 4 MB receive limit
      // would make the hub unable to load such a cluster at all.
      grpcOptions: { 'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES },
    });
  }

  async currentRevision(): Promise<number> {
    const res = await this.client.getAll().prefix('\u0000lainlet-revision-probe').limit(1).exec();
    return Number(res.header.revision);
  }

  async list(prefix: string, atRevision?: number): Promise<ListResult> {
    const builder = this.client.getAll().prefix(prefix);
    if (atRevision !== undefined) builder.revision(atRevision);
    let res;
    try {
      res = await builder.exec();
    } catch (err) {
      if (/compacted/i.test((err as Error).message)) throw new CompactedError((err as Error).message);
      throw err;
    }
    const kvs: Array<[string, string]> = res.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]);
    // A historical read answers with the current revision in its header: the list is as of `atRevision`.
    return { revision: atRevision ?? Number(res.header.revision), kvs };
  }

  async watch(prefix: string, afterRevision: number, handlers: WatchHandlers): Promise<StoreWatch> {
    const watcher: Watcher = await this.client.watch().prefix(prefix).startRevision(String(afterRevision + 1)).create();
    let lost = false;
    let disconnected = false;
    const lose = (reason: string) => {
      if (lost) return;
      lost = true;
      watcher.removeAllListeners();
      watcher.on('error', () => {});
      void cancelQuietly(watcher);
      handlers.onLost(reason);
    };
    watcher.on('data', (res) => {
      if (disconnected) { disconnected = false; handlers.onReconnected(); }
      if (res.compact_revision && Number(res.compact_revision) > 0 && res.canceled) {
        lose(`compacted at ${res.compact_revision}`);
        return;
      }
      const changes = groupByRevision(res.events);
      if (changes.length > 0) handlers.onChanges(changes);
      else if (res.header?.revision) handlers.onProgress(Number(res.header.revision));
    });
    watcher.on('connected', () => {
      if (disconnected) { disconnected = false; handlers.onReconnected(); }
    });
    watcher.on('disconnected', (err) => {
      if (!disconnected) { disconnected = true; handlers.onDisconnected(err?.message ?? 'disconnected'); }
    });
    watcher.on('error', (err) => lose(`watch error: ${err?.message ?? err}`));
    watcher.on('end', () => lose('watch ended'));
    return {
      cancel: async () => {
        if (lost) return; // already cancelled when it was lost
        lost = true;
        watcher.removeAllListeners();
        watcher.on('error', () => {});
        await cancelQuietly(watcher);
      },
    };
  }

  async close(): Promise<void> {
    this.client.close();
  }
}

/**
 * Cancels a watcher without waiting forever: a watcher etcd already cancelled (compaction)
 * never gets the cancel acknowledgement the library waits for.
 */
function cancelQuietly(watcher: Watcher): Promise<void> {
  return Promise.race([
    watcher.cancel().catch(() => {}),
    new Promise<void>((resolve) => setTimeout(resolve, 1000).unref()),
  ]);
}

type WatchEvent = { type: string; kv: { key: Buffer; value: Buffer; mod_revision: string } };

/** One RevisionChange per etcd revision, in the order etcd sent them. */
export function groupByRevision(events: WatchEvent[]): RevisionChange[] {
  const out: RevisionChange[] = [];
  let current: RevisionChange | undefined;
  for (const ev of events) {
    const rev = Number(ev.kv.mod_revision);
    if (!current || current.revision !== rev) {
      current = { revision: rev, puts: [], dels: [] };
      out.push(current);
    }
    const key = ev.kv.key.toString();
    if (ev.type === 'Delete') current.dels.push(key);
    else current.puts.push([key, ev.kv.value.toString()]);
  }
  return out;
}
