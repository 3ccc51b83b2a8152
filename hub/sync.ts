// Keeps HubState in step with the store: list at R, watch from R+1, and on any loss of the
// watch list again and publish the difference. This is the hub's only store watch.
import type { Logger } from '../shared/log.js';
import { Backoff } from '../shared/backoff.js';
import type { HubState } from './state.js';
import { CompactedError, type ListResult, type Store, type StoreWatch } from './store/types.js';

export class StoreSync {
  private watch?: StoreWatch;
  private stopped = false;
  private retryTimer?: NodeJS.Timeout;
  private readonly backoff = new Backoff(200, 5000);
  /** Counters for metrics and /debug. */
  relists = 0;
  disconnects = 0;
  lastError = '';

  constructor(
    private readonly store: Store,
    private readonly prefix: string,
    private readonly state: HubState,
    private readonly log: Logger,
    /** How many store revisions of history a starting hub replays (0 = none). */
    private readonly prefillRevisions = 0,
  ) {}

  private resolveReady?: () => void;

  /** Resolves after the first successful list (the hub can serve from then on). */
  start(): Promise<void> {
    const ready = new Promise<void>((resolve) => { this.resolveReady = resolve; });
    void this.relist();
    return ready;
  }

  /** Lists and watches again now; on failure retries with backoff, serving the last state as stale. */
  private async relist(): Promise<void> {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    try {
      await this.listAndWatch();
      this.backoff.reset();
      this.resolveReady?.();
    } catch (err) {
      this.lastError = (err as Error).message;
      this.state.setStale(true);
      const delay = this.backoff.next();
      this.log.warn({ err: this.lastError, retryInMs: Math.round(delay) }, 'store list/watch failed; serving last state as stale');
      this.retryTimer = setTimeout(() => void this.relist(), delay);
    }
  }

  private catchingUp = false;
  /** The last list was historical: once the watch is up, list the present to be current at once. */
  private prefilling = false;
  /**
   * True once the state reflects a list of the present (not only a historical list that the
   * watch is still replaying forward): what /healthz reports as ready.
   */
  current = false;

  /**
   * An agent came with a revision ahead of ours (it was on a hub that listed later). Our watch
   * only moves our revision when something under the prefix changes, so we might wait for a
   * long time: list once to learn the current revision (and publish any difference). The watch
   * stays; revisions it delivers at or below the list are skipped.
   */
  catchUp(): void {
    if (this.catchingUp || this.stopped || !this.state.loaded) return;
    this.catchingUp = true;
    void this.store.list(this.prefix).then(
      (listed) => {
        this.state.replaceAll(listed.revision, listed.kvs);
        this.current = true;
        this.log.info({ revision: this.state.revision }, 'listed to catch up with an agent ahead of us');
      },
      (err: Error) => this.log.warn({ err: err.message }, 'catch-up list failed'),
    ).finally(() => { this.catchingUp = false; });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.watch?.cancel();
    await this.store.close();
  }

  /**
   * A hub that just started has no history, so every agent that resumes on it would need a
   * snapshot. Instead it lists the prefix as it was `prefillRevisions` ago and watches from
   * there: replaying etcd's own history fills the delta history the normal way, and the hub
   * is current moments later. Falls back to a plain list where history is unavailable
   * (compacted, or a store without historical reads).
   */
  private async listForPrefill(): Promise<ListResult | null> {
    try {
      const current = await this.store.currentRevision();
      const at = Math.max(1, current - this.prefillRevisions);
      if (at >= current) return null;
      const listed = await this.store.list(this.prefix, at);
      this.prefilling = true;
      this.log.info({ from: at, to: current }, 'replaying store history to fill the delta history');
      return listed;
    } catch (err) {
      if (err instanceof CompactedError) return null;
      throw err;
    }
  }

  private async listAndWatch(): Promise<void> {
    await this.watch?.cancel();
    this.watch = undefined;
    const first = !this.state.loaded;
    const listed = (first && this.prefillRevisions > 0 && (await this.listForPrefill())) || (await this.store.list(this.prefix));
    if (this.stopped) return;
    this.state.replaceAll(listed.revision, listed.kvs);
    this.relists++;
    this.log.info({ revision: listed.revision, keys: this.state.entries.size, first }, first ? 'store listed' : 'store re-listed; difference published');
    const from = this.state.revision;
    this.watch = await this.store.watch(this.prefix, from, {
      onChanges: (changes) => {
        for (const c of changes) this.state.apply(c);
      },
      onProgress: (rev) => this.state.advance(rev),
      onLost: (reason) => {
        this.watch = undefined; // dead already; nothing to cancel
        this.log.warn({ reason, revision: this.state.revision }, 'store watch lost; listing again');
        void this.relist();
      },
      onDisconnected: (reason) => {
        this.disconnects++;
        this.lastError = reason;
        this.log.warn({ reason }, 'store disconnected; serving last state as stale');
        this.state.setStale(true);
      },
      onReconnected: () => {
        this.log.info('store reconnected');
        this.state.setStale(false);
      },
    });
    this.state.setStale(false);
    if (!this.prefilling) this.current = true;
    if (this.prefilling) {
      // The watch now replays history into the delta history; meanwhile a list of the present
      // makes the hub current right away (its difference is published as one more delta, and
      // replayed revisions at or below it are skipped).
      this.prefilling = false;
      this.catchUp();
    }
  }
}
