// The etcd v3 backend (etcd3 package): prefix lists (of the present, or of a past revision
// for the prefill), one-key reads of the store's revision, and ONE watch on the prefix.
//
// Seen with etcd3 1.1.2 against etcd 3.4 (DESIGN.md, Known traps): a watch whose start
// revision was compacted emits one `error` ("Watcher canceled") and then stays silent, so
// any error or end is treated as "history lost".
//
// After a break the library re-creates the watcher by itself, but from a resume point it
// takes from the `created` response (`header.revision + 1`), not from the last event it
// delivered: when the stream breaks again before the backlog has arrived, those revisions
// are skipped with no signal at all. So this backend owns the cursor — the last revision it
// handed to the sync — and writes it into the create request every time the library is
// about to (re)create the watcher (its `connecting` event, emitted with the very request
// object it then sends). test/etcd-faults.test.ts breaks the stream mid-backlog to pin it.
// Only events move the cursor, never an event-less progress response (see the data handler);
// and a re-created watch is not trusted alone: on onReconnected the sync lists the present and
// publishes whatever the watch missed (hub/sync.ts).
import { Etcd3, type Watcher } from 'etcd3';
import { HUB_DEFAULTS } from '../defaults.js';
import { CompactedError, type ListResult, type RevisionChange, type Store, type StoreWatch, type WatchHandlers } from './types.js';

export interface Etcd3StoreOptions {
  endpoints: string[];
  /** How long one list or connection attempt may take before it fails (ms; default HUB_DEFAULTS.etcd3DialTimeoutMs). */
  dialTimeoutMs?: number;
}

export class Etcd3Store implements Store {
  readonly description: string;
  /** etcd's cluster id, from the last response header ('' before the first). */
  clusterId = '';
  private readonly client: Etcd3;

  constructor(opts: Etcd3StoreOptions) {
    this.description = `etcd3 ${opts.endpoints.join(',')}`;
    this.client = new Etcd3({
      hosts: opts.endpoints,
      dialTimeout: opts.dialTimeoutMs ?? HUB_DEFAULTS.etcd3DialTimeoutMs,
      // A list of a large cluster, or a watch response replaying a big transaction, is ONE
      // gRPC message; and grpc-js's own reconnect backoff would leave the hub stale for minutes
      // after etcd is back (reasons with the values, in HUB_DEFAULTS).
      grpcOptions: {
        'grpc.max_receive_message_length': HUB_DEFAULTS.etcd3MaxMessageBytes,
        'grpc.initial_reconnect_backoff_ms': HUB_DEFAULTS.etcd3ReconnectBaseMs,
        'grpc.max_reconnect_backoff_ms': HUB_DEFAULTS.etcd3ReconnectCapMs,
      },
    });
  }

  async currentRevision(): Promise<number> {
    const res = await this.client.getAll().prefix('\u0000lainlet-revision-probe').limit(1).exec();
    this.clusterId = String(res.header.cluster_id);
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
    this.clusterId = String(res.header.cluster_id);
    const kvs: Array<[string, string]> = res.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]);
    // A historical read answers with the current revision in its header: the list is as of `atRevision`.
    return { revision: atRevision ?? Number(res.header.revision), kvs };
  }

  async watch(prefix: string, afterRevision: number, handlers: WatchHandlers): Promise<StoreWatch> {
    /** The last revision handed to the handlers: every (re)created watcher starts after it. */
    let cursor = afterRevision;
    const builder = this.client.watch().prefix(prefix).startRevision(String(afterRevision + 1));
    const watcher: Watcher = builder.watcher();
    // Emitted synchronously right before the library writes `request` as the create request,
    // on the first connection and on every reconnection.
    (watcher as unknown as NodeJS.EventEmitter).on('connecting', (request: { start_revision?: string | number }) => { request.start_revision = String(cursor + 1); });
    let lost = false;
    let disconnected = false;
    let isCreated = false;
    const lose = (reason: string) => {
      if (lost) return;
      lost = true;
      watcher.removeAllListeners();
      watcher.on('error', () => {});
      void cancelQuietly(watcher);
      // Before the watch is created its failure is watch()'s rejection, not a loss.
      if (isCreated) handlers.onLost(reason);
    };
    const created = new Promise<void>((resolve, reject) => {
      watcher.once('connected', () => { isCreated = true; resolve(); });
      watcher.once('error', reject);
      watcher.once('end', () => reject(new Error('watch ended before it was created')));
    });
    watcher.on('data', (res) => {
      if (lost) return;
      if (disconnected) { disconnected = false; handlers.onReconnected(); }
      if (res.compact_revision && Number(res.compact_revision) > 0 && res.canceled) {
        lose(`compacted at ${res.compact_revision}`);
        return;
      }
      const changes = groupByRevision(res.events);
      if (changes.length > 0) {
        // The header's revision may be past the last event (etcd sends a long backlog in
        // batches, each with the current revision): only the events say how far we are.
        cursor = Math.max(cursor, changes[changes.length - 1].revision);
        handlers.onChanges(changes);
      }
      // An event-less response is a progress notification, which should mean that everything
      // up to its revision was sent — but etcd 3.4 sent one for a revision whose events this
      // watch never got (a 600 s soak, seed 11: a watch re-created while etcd recovered from
      // SIGKILL; the hub then claimed a state without that revision's delete). So it moves
      // nothing: neither the cursor nor the state. Only events and lists do.

    });
    watcher.on('connected', () => {
      if (disconnected) { disconnected = false; handlers.onReconnected(); }
    });
    watcher.on('disconnected', (err) => {
      if (!disconnected) { disconnected = true; handlers.onDisconnected(err?.message ?? 'disconnected'); }
    });
    watcher.on('error', (err) => lose(`watch error: ${err?.message ?? err}`));
    watcher.on('end', () => lose('watch ended'));
    await created;
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
    new Promise<void>((resolve) => setTimeout(resolve, HUB_DEFAULTS.etcd3CancelWaitMs).unref()),
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
