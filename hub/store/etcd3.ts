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
//
// A cluster (--etcd a,b,c): the library runs the watch on one member, picked at random, and
// moves it to another when that member's stream breaks. Three things keep a member that is cut
// off or stuck from becoming the hub's source of stale data:
// - reads are linearizable: `serializable: false` on every Range (etcd's default, made
//   explicit here), so a member answers only once it has confirmed with the leader's quorum
//   that it has applied everything committed (ReadIndex). A minority member cannot: its reads
//   fail instead of answering from its own old copy (test/etcd-cluster.test.ts shows the
//   serializable read of the same member returning the stale value).
// - every call carries the gRPC metadata `hasleader: true` (clientv3's WithRequireLeader):
//   etcd refuses such a call on a member without a leader ("etcdserver: no leader"), and
//   cancels such a watch stream once the member has been without a leader for about three
//   election timeouts, so the library moves the watch to another member. Without it a watch on
//   a partitioned member stays open and silent until the partition heals.
// - gRPC keepalive pings: a member that is alive to the kernel but not answering (SIGSTOP, a
//   wedged host) closes the stream after ETCD3_KEEPALIVE_TIME_MS + ETCD3_KEEPALIVE_TIMEOUT_MS.
// Which member serves the watch is known from the `created` response's header.member_id; the
// handlers are told (onSource) on the first creation and on every move, with the reason.
import { Etcd3, type IMember, type Watcher } from 'etcd3';
import { InterceptingCall, type Interceptor } from '@grpc/grpc-js';
import { ExponentialBackoff, type IBackoff } from 'cockatiel';
import { HUB_DEFAULTS } from '../defaults.js';
import { CompactedError, type ListResult, type RevisionChange, type Store, type StoreSource, type StoreWatch, type WatchHandlers } from './types.js';

/**
 * gRPC keepalive of the etcd connections. etcd answers pings more frequent than its
 * --grpc-keepalive-min-time (5 s) with GOAWAY, so the time stays above it.
 */
export const ETCD3_KEEPALIVE_TIME_MS = 6_000;
export const ETCD3_KEEPALIVE_TIMEOUT_MS = 4_000;

/**
 * Deadlines of the reads. Without one, a read sent to a member that hangs (SIGSTOP: the kernel
 * accepts the connection, nothing answers) waits as long as the member does — and while a list
 * of the present is in flight the sync holds the watch's changes back (hub/sync.ts), so the
 * whole hub stopped publishing (test/etcd-cluster-isolation.test.ts). A list is given room for a
 * large cluster; a revision read is one key.
 */
export const ETCD3_LIST_DEADLINE_MS = 15_000;
export const ETCD3_REVISION_DEADLINE_MS = 5_000;

/** Adds `hasleader: true` to every call's metadata (etcd's rpctypes.MetadataRequireLeaderKey). */
const requireLeader: Interceptor = (options, nextCall) => new InterceptingCall(nextCall(options), {
  start(metadata, listener, next) {
    metadata.set('hasleader', 'true');
    next(metadata, listener);
  },
});

export interface Etcd3StoreOptions {
  endpoints: string[];
  /** How long one list or connection attempt may take before it fails (ms; default HUB_DEFAULTS.etcd3DialTimeoutMs). */
  dialTimeoutMs?: number;
  /**
   * Send `hasleader: true` with every call (default true). Off only in a test that shows the
   * linearizable reads guard on their own.
   */
  requireLeader?: boolean;
}

/**
 * How long the library waits before it re-creates a broken watch stream (HUB_DEFAULTS.etcd3WatchRetryCapMs
 * says why). The library is handed the step before the first wait (duration 0, as its own default
 * starts) and steps on with next() after each failure, back to this one after each answer.
 */
export function etcd3WatchBackoff(): IBackoff<unknown> {
  const waits = new ExponentialBackoff({ initialDelay: HUB_DEFAULTS.etcd3WatchRetryBaseMs, maxDelay: HUB_DEFAULTS.etcd3WatchRetryCapMs });
  return { duration: 0, next: () => waits.next() };
}

/**
 * The gRPC channel options of every etcd v3 client of the hub (the store's and the registry's,
 * hub/members.ts). A list of a large cluster, or a watch response replaying a big transaction,
 * is ONE gRPC message; grpc-js's own reconnect backoff would leave a client away for minutes
 * after etcd is back (reasons with the values, in HUB_DEFAULTS); and the keepalive pings close a
 * connection to a member that stopped answering.
 */
export function etcd3GrpcOptions(): Record<string, number> {
  return {
    'grpc.max_receive_message_length': HUB_DEFAULTS.etcd3MaxMessageBytes,
    'grpc.initial_reconnect_backoff_ms': HUB_DEFAULTS.etcd3ReconnectBaseMs,
    'grpc.max_reconnect_backoff_ms': HUB_DEFAULTS.etcd3ReconnectCapMs,
    'grpc.keepalive_time_ms': ETCD3_KEEPALIVE_TIME_MS,
    'grpc.keepalive_timeout_ms': ETCD3_KEEPALIVE_TIMEOUT_MS,
  };
}

export class Etcd3Store implements Store {
  readonly description: string;
  /** etcd's cluster id, from the last response header ('' before the first). */
  clusterId = '';
  /** The member the watch runs on (from the `created` response's header.member_id). */
  source?: StoreSource;
  sourceMoves = 0;
  private readonly client: Etcd3;
  /** Why the watch's stream last broke, or why the last watch was lost: the reason of the next move. */
  private moveReason = 'first watch';
  private members = new Map<string, IMember>();

  constructor(opts: Etcd3StoreOptions) {
    this.description = `etcd3 ${opts.endpoints.join(',')}`;
    this.client = new Etcd3({
      hosts: opts.endpoints,
      dialTimeout: opts.dialTimeoutMs ?? HUB_DEFAULTS.etcd3DialTimeoutMs,
      defaultCallOptions: () => (opts.requireLeader === false ? {} : { interceptors: [requireLeader] }),
      // The host circuit breaker and the global retry keep the library's defaults.
      faultHandling: { watchBackoff: etcd3WatchBackoff() },
      grpcOptions: etcd3GrpcOptions(),
    });
  }

  async currentRevision(): Promise<number> {
    const res = await this.client.getAll().prefix('\u0000lainlet-revision-probe').limit(1).serializable(false)
      .options({ deadline: Date.now() + ETCD3_REVISION_DEADLINE_MS }).exec();
    this.clusterId = String(res.header.cluster_id);
    return Number(res.header.revision);
  }

  async list(prefix: string, atRevision?: number): Promise<ListResult> {
    const builder = this.client.getAll().prefix(prefix).serializable(false).options({ deadline: Date.now() + ETCD3_LIST_DEADLINE_MS });
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
      this.moveReason = `watch lost: ${reason}`;
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
    watcher.on('connected', (res: { header?: { member_id?: string } }) => {
      if (disconnected) { disconnected = false; handlers.onReconnected(); }
      void this.noteSource(String(res?.header?.member_id ?? ''), handlers);
    });
    watcher.on('disconnected', (err) => {
      // The first error of a break says why (e.g. "etcdserver: no leader"); the library's
      // "stream ended" that may follow says nothing more.
      if (disconnected) return;
      disconnected = true;
      this.moveReason = `stream broke: ${err?.message ?? 'disconnected'}`;
      handlers.onDisconnected(err?.message ?? 'disconnected');
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

  /** Records which member a (re)created watch runs on, and tells the handlers when it changed. */
  private async noteSource(memberId: string, handlers: WatchHandlers): Promise<void> {
    if (memberId === '' || memberId === '0') return;
    const id = BigInt(memberId).toString(16);
    if (this.source?.id === id) return;
    let member = this.members.get(memberId);
    if (!member) {
      try {
        const list = await this.client.cluster.memberList({});
        this.members = new Map(list.members.map((m) => [String(m.ID), m]));
        member = this.members.get(memberId);
      } catch {
        // the name and URL stay unknown; the id is enough to tell the move
      }
    }
    if (this.source?.id === id) return;
    const previous = this.source;
    this.source = { id, name: member?.name ?? '', url: member?.clientURLs[0] ?? '' };
    if (previous) this.sourceMoves++;
    handlers.onSource?.(this.source, previous, previous ? this.moveReason : 'first watch');
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
