// A store with a member behind its cluster: after freeze(), the next answers asked for with
// stale(n) come from the state it had then — what a paused etcd 3.4 member does for a moment
// after it resumes, even to linearizable reads (etcd-io/etcd#20418). Everything else is the
// MemoryStore underneath; loseWatch() ends the hub's watch as a dead member's would, and
// restore() swaps in an older store for good.
import type { MemoryStore } from '../../hub/store/memory.js';
import type { ListResult, Store, StoreWatch, WatchHandlers } from '../../hub/store/types.js';

export class StaleMemberStore implements Store {
  readonly description = 'memory, with a member behind';
  private frozen?: ListResult;
  private left = 0;
  private watching?: { handlers: WatchHandlers; watch: StoreWatch };
  /** Answers given from the frozen state so far. */
  staleGiven = 0;
  /** Watches created and not cancelled. */
  activeWatches = 0;
  private gate?: { done: Promise<void>; open: () => void };

  constructor(private inner: MemoryStore, private readonly prefix: string) {}

  /** The member stops here (its state is kept as of now). */
  async freeze(): Promise<void> { this.frozen = await this.inner.list(this.prefix); }

  /** The next `n` reads (revision reads and lists alike) answer from the frozen state. */
  stale(n: number): void {
    if (!this.frozen) throw new Error('freeze() first');
    this.left = n;
  }

  get frozenRevision(): number { return this.frozen?.revision ?? 0; }

  private takeStale(): ListResult | undefined {
    if (this.left <= 0 || !this.frozen) return undefined;
    this.left--;
    this.staleGiven++;
    return this.frozen;
  }

  async currentRevision(): Promise<number> { return this.takeStale()?.revision ?? this.inner.currentRevision(); }

  /** Lists of the present wait until releaseLists() (a slow list, in flight as long as the test likes). */
  holdLists(): void {
    let open = () => {};
    const done = new Promise<void>((r) => { open = r; });
    this.gate = { done, open };
  }

  releaseLists(): void { this.gate?.open(); this.gate = undefined; }

  async list(prefix: string, atRevision?: number): Promise<ListResult> {
    if (atRevision === undefined && this.gate) await this.gate.done;
    if (atRevision === undefined) {
      const s = this.takeStale();
      if (s) return { revision: s.revision, kvs: s.kvs.filter(([k]) => k.startsWith(prefix)) };
    }
    return this.inner.list(prefix, atRevision);
  }

  async watch(prefix: string, afterRevision: number, handlers: WatchHandlers): Promise<StoreWatch> {
    const inner = await this.inner.watch(prefix, afterRevision, handlers);
    this.activeWatches++;
    let cancelled = false;
    const watch: StoreWatch = {
      cancel: async () => {
        if (!cancelled) { cancelled = true; this.activeWatches--; }
        await inner.cancel();
      },
    };
    this.watching = { handlers, watch };
    return watch;
  }

  /** The watch dies (the hub lists again and watches from there). */
  async loseWatch(reason = 'member killed'): Promise<void> {
    const w = this.watching;
    if (!w) throw new Error('no watch to lose');
    this.watching = undefined;
    await w.watch.cancel();
    w.handlers.onLost(reason);
  }

  /**
   * The store is replaced by `restored` (etcd restored from an older backup, its clients none
   * the wiser): the watch on the old one goes silent — a watch past the store's revision just
   * waits — and every read from now on is the restored store's.
   */
  async restore(restored: MemoryStore): Promise<void> {
    await this.watching?.watch.cancel();
    this.watching = undefined;
    this.inner = restored;
  }

  close(): Promise<void> { return this.inner.close(); }
}
