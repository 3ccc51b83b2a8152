// Keeps HubState in step with the store: list at R, watch from R+1, and on any loss of the
// watch list again and publish the difference. This is the hub's only store watch.
//
// Besides the watch it reads the store's current revision now and then (a one-key range,
// cheap): to catch a store whose history was reset under us (etcd restored from an older
// backup or rebuilt — its revision went backwards or its cluster id changed; a watch started
// past the store's revision just waits, it never says so), and to tell an agent that is ahead
// of us because it is on another hub (we are behind: list) from one whose revision is from
// another history (it needs a reset snapshot).
import type { Logger } from '../shared/log.js';
import { Backoff } from '../shared/backoff.js';
import { HUB_DEFAULTS } from './defaults.js';
import type { HubState } from './state.js';
import { CompactedError, type ListResult, type RevisionChange, type Store, type StoreWatch } from './store/types.js';

export interface StoreSyncOptions {
  /** How many store revisions of history a starting hub replays (0 = none). */
  prefillRevisions?: number;
  /** How often the store's revision is checked for a reset while all is quiet (ms). */
  probeIntervalMs?: number;
}

export interface Probe {
  revision: number;
  clusterId: string;
}

/** What fresh reads said of an answer that looked like another history (StoreSync.suspectReset). */
interface ResetVerdict {
  confirmed: boolean;
  /** The last read: the store's revision to go by. */
  probe: Probe;
}

export class StoreSync {
  private watch?: StoreWatch;
  private stopped = false;
  private retryTimer?: NodeJS.Timeout;
  private probeTimer?: NodeJS.Timeout;
  private readonly backoff = new Backoff(HUB_DEFAULTS.storeRetryBaseMs, HUB_DEFAULTS.storeRetryCapMs);
  private readonly presentBackoff = new Backoff(HUB_DEFAULTS.storeRetryBaseMs, HUB_DEFAULTS.storeRetryCapMs);
  private readonly prefillRevisions: number;
  private readonly probeIntervalMs: number;
  /** Counters for /metrics (hub/metrics.ts). */
  relists = 0;
  /** Lists of the present applied (each compares the state with the store; see listPresent). */
  presentLists = 0;
  disconnects = 0;
  probes = 0;
  /**
   * True once the state reflects a list of the present (not only a historical list that the
   * watch is still replaying forward). Agents are served only from then on — a prefill list
   * is history, never the present — and /healthz reports it.
   */
  current = false;
  /** Told when `current` becomes true and whenever the state was reset. */
  onCurrent?: () => void;

  constructor(
    readonly store: Store,
    private readonly prefix: string,
    private readonly state: HubState,
    private readonly log: Logger,
    opts: StoreSyncOptions = {},
  ) {
    this.prefillRevisions = opts.prefillRevisions ?? 0;
    this.probeIntervalMs = opts.probeIntervalMs ?? HUB_DEFAULTS.probeIntervalMs;
  }

  private resolveReady?: () => void;

  /** Resolves after the first successful list (the hub holds a state from then on). */
  start(): Promise<void> {
    const ready = new Promise<void>((resolve) => { this.resolveReady = resolve; });
    void this.relist();
    return ready;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.probeTimer);
    clearTimeout(this.presentTimer);
    clearTimeout(this.replayTimer);
    await this.watch?.cancel();
    await this.store.close();
  }

  private relisting = false;
  /** A relist was asked for while one ran (a reset confirmed meanwhile): run another after it. */
  private relistAgain = false;

  /** Lists and watches again now; on failure retries with backoff, serving the last state as stale. */
  private async relist(): Promise<void> {
    if (this.relisting) { this.relistAgain = true; return; } // never two watches at once
    this.endGapCheck();
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.relisting = true;
    try {
      await this.listAndWatch();
      this.backoff.reset();
      this.resolveReady?.();
      this.scheduleProbe(this.probeIntervalMs);
    } catch (err) {
      this.state.setStale(true);
      const delay = this.backoff.next();
      this.log.warn({ err: (err as Error).message, retryInMs: Math.round(delay) },
        this.state.loaded ? 'store list/watch failed; serving last state as stale' : 'store list/watch failed; no state to serve yet');
      this.retryTimer = setTimeout(() => void this.relist(), delay);
    } finally {
      this.relisting = false;
    }
    if (this.relistAgain) {
      this.relistAgain = false;
      void this.relist();
    }
  }

  /**
   * A hub that just started has no history, so every agent that resumes on it would need a
   * snapshot. Instead it lists the prefix as it was `prefillRevisions` ago and watches from
   * there: replaying etcd's own history fills the delta history the normal way. That list is
   * the past: the hub is not `current` (serves no agent) until a list of the present has been
   * applied on top. Falls back to a plain list where history is unavailable (compacted, or a
   * store without historical reads).
   */
  private async listForPrefill(): Promise<ListResult | null> {
    try {
      const current = await this.store.currentRevision();
      const at = Math.max(1, current - this.prefillRevisions);
      if (at >= current) return null;
      const listed = await this.store.list(this.prefix, at);
      this.prefillTarget = current;
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
    const prefill = first && this.prefillRevisions > 0 ? await this.listForPrefill() : null;
    const listed = prefill ?? (await this.store.list(this.prefix));
    if (this.stopped) return;
    const epoch = this.store.clusterId ?? '';
    if (!first && this.resetPending === undefined) {
      const looks = this.resetReason({ revision: listed.revision, clusterId: epoch }, this.state.revision);
      if (looks !== undefined) {
        // One answer is not believed (see suspectReset): this list is retried, and a confirmed
        // reset makes the next one reset the state.
        this.suspectReset(looks).catch(() => { /* logged there; a later answer asks again */ });
        throw new Error(`${looks}: not believed until fresh reads confirm it`);
      }
    }
    const resetWhy = first ? undefined : this.resetPending;
    if (resetWhy !== undefined) {
      this.resetFromList(listed, epoch, resetWhy);
    } else {
      if (first) this.state.epoch = epoch;
      this.state.replaceAll(listed.revision, listed.kvs);
    }
    this.resetPending = undefined;
    this.relists++;
    this.log.info({ revision: listed.revision, keys: this.state.entries.size, first, historical: prefill !== null },
      first ? 'store listed' : 'store re-listed; difference published');
    this.watch = await this.store.watch(this.prefix, this.state.revision, {
      onChanges: (changes) => {
        if (this.held) { for (const c of changes) this.held.push(c); return; }
        for (const c of changes) { this.watchSaw(c.revision); this.state.apply(c); }
      },
      onProgress: (rev) => { if (!this.held) { this.watchSaw(rev); this.state.advance(rev); } },
      onLost: (reason) => {
        this.endGapCheck();
        this.watch = undefined; // dead already; nothing to cancel
        this.log.warn({ reason, revision: this.state.revision }, 'store watch lost; listing again');
        void this.relist();
      },
      onDisconnected: (reason) => {
        this.endGapCheck(); // the watch may be re-created past revisions it never showed
        this.disconnects++;
        this.log.warn({ reason }, this.state.loaded ? 'store disconnected; serving last state as stale' : 'store disconnected');
        this.state.setStale(true);
      },
      onSource: (source, previous, reason) => {
        const fields = { member: source.name, memberId: source.id, url: source.url, reason };
        if (previous) this.log.warn({ ...fields, from: previous.name, fromId: previous.id, fromUrl: previous.url }, 'store watch moved to another etcd member');
        else this.log.info(fields, 'store watch on etcd member');
      },
      onReconnected: () => {
        this.log.info('store reconnected');
        this.state.setStale(false);
        // etcd may have come back as another history (restored while it was down).
        this.scheduleProbe(0);
        // And the watch the etcd client re-created is checked like a new one (checkWatch).
        this.checkWatch();
      },
    });
    this.state.setStale(false);
    if (prefill !== null) { this.awaitReplay(); return; }
    this.becomeCurrent();
    this.checkWatch();
  }

  /**
   * Every new watch is checked against a list of the present a moment later: etcd 3.4 can drop
   * a delete from a watch that starts at, or is catching up across, a compaction
   * (etcd-io/etcd#18089, #19179), and a soak saw watches re-created on a just-restarted etcd
   * miss one. The list publishes whatever the watch missed; usually it finds nothing.
   */
  private checkWatch(): void {
    this.listPresent('checking the new watch missed nothing');
  }

  /** The store's revision when the prefill list was taken: the replay is done once there. */
  private prefillTarget = 0;
  private replayTimer?: NodeJS.Timeout;

  /**
   * The watch now replays history into the delta history. Once it has reached the revision the
   * store had at the start, the hub is current. When the last changes under the prefix were
   * older than that, the replay stops short of it: once it has been quiet for a moment, a list
   * of the present finishes the job — its difference is then usually empty, so no revision
   * span goes unseen (a non-empty one is a gap; agents inside it get a snapshot).
   */
  private awaitReplay(): void {
    let last = -1;
    let quietChecks = 0;
    const check = () => {
      if (this.stopped || this.current) return;
      if (this.state.revision >= this.prefillTarget) {
        this.log.info({ revision: this.state.revision }, 'store history replayed; serving agents');
        this.becomeCurrent();
        this.checkWatch();
        return;
      }
      quietChecks = this.state.revision === last ? quietChecks + 1 : 0;
      last = this.state.revision;
      if (quietChecks >= HUB_DEFAULTS.replayQuietChecks) {
        this.listPresent('store history replayed up to the last change: listing the present');
        return;
      }
      this.replayTimer = setTimeout(check, HUB_DEFAULTS.replayCheckMs);
    };
    check();
  }

  private becomeCurrent(): void {
    if (this.current) return;
    this.current = true;
    this.onCurrent?.();
  }

  // --- lists of the present ---------------------------------------------------------------

  private presentTimer?: NodeJS.Timeout;
  private listingPresent = false;
  private lastPresentListAt = 0;

  /**
   * Lists the present and publishes the difference: after a prefill (retried until it works —
   * until then the hub serves no agent), or because an agent is ahead of us and the store says
   * we are behind. Coalesced and rate-limited: agents never drive more than one list per
   * HUB_DEFAULTS.minListIntervalMs.
   */
  listPresent(why: string, stillNeeded: () => boolean = () => true): void {
    if (this.listingPresent || this.stopped || !this.state.loaded) return;
    this.listingPresent = true;
    // A hub behind an agent is usually just a moment behind: give the watch that moment (its
    // deltas then reach the agent, where a list's jump would cost it a snapshot).
    const wait = this.current ? Math.max(HUB_DEFAULTS.aheadListGraceMs, this.lastPresentListAt + HUB_DEFAULTS.minListIntervalMs - Date.now()) : 0;
    this.presentTimer = setTimeout(() => {
      // The watch may have brought us up in the meantime: then there is nothing to list for.
      if (this.current && !stillNeeded()) { this.listingPresent = false; return; }
      void this.runPresentList(why);
    }, wait);
  }

  /**
   * The watch's changes that arrived while a list of the present was in flight, applied once
   * the list is: the list's revision is then never behind the state, so the difference it
   * shows is exactly what the watch missed. (Were they applied at once, a busy store would
   * move the state past the list's revision before it arrived, and a list that cannot be
   * compared would have to be thrown away — with it the repair of a missed delete.)
   */
  private held?: RevisionChange[];

  private releaseHeld(): void {
    const held = this.held;
    this.held = undefined;
    if (held) for (const c of held) { this.watchSaw(c.revision); this.state.apply(c); }
  }

  /**
   * A list of the present that jumped (lo → hi) with nothing to publish, while one watch ran all
   * along: the span is noted as unknown (HubState gaps: an agent at a revision inside it gets a
   * snapshot) only because the watch has not shown yet that it went through the span without a
   * change. Its first event or progress beyond hi proves that (a watch delivers in order), and
   * the gap is forgotten; an event inside the span proves the gap real. Until then the hub does
   * not take part in the tier's balance (hub/members.ts: no agent is sent here for a snapshot).
   * Seen with the registry's writes, which move etcd's revision under no kept key.
   */
  private gapCheck?: { lo: number; hi: number; since: number };

  /** A gap is being checked, for at most HUB_DEFAULTS.gapCheckMaxMs (a quiet prefix may never prove it). */
  get checkingGap(): boolean { return this.gapCheck !== undefined; }

  private watchSaw(rev: number): void {
    const g = this.gapCheck;
    if (!g || rev <= g.lo) return;
    this.endGapCheck();
    if (rev > g.hi) this.state.forgetGap(g.lo, g.hi);
  }

  private gapCheckTimer?: NodeJS.Timeout;

  private startGapCheck(lo: number, hi: number): void {
    this.gapCheck = { lo, hi, since: Date.now() };
    this.state.setPendingGap([lo, hi]);
    clearTimeout(this.gapCheckTimer);
    this.gapCheckTimer = setTimeout(() => this.endGapCheck(), HUB_DEFAULTS.gapCheckMaxMs);
    this.gapCheckTimer.unref();
  }

  /** The check is over (answered, given up, or its watch is gone): the gap stays as it is. */
  private endGapCheck(): void {
    if (!this.gapCheck) return;
    this.gapCheck = undefined;
    clearTimeout(this.gapCheckTimer);
    if (this.state.pendingGap) this.state.setPendingGap(undefined);
  }

  private async runPresentList(why: string): Promise<void> {
    this.lastPresentListAt = Date.now();
    const before = this.state.revision;
    this.held = [];
    try {
      const listed = await this.store.list(this.prefix);
      if (this.stopped) return;
      const looks = this.resetReason({ revision: listed.revision, clusterId: this.store.clusterId ?? '' }, before);
      if (looks !== undefined) {
        // Another history — or a stale member's answer (see suspectReset). The watch's changes
        // held meanwhile are applied (catch, below); a confirmed reset re-lists everything, and
        // an unconfirmed one lists the present again, for the same reason.
        const again = () => { if (this.current) this.listPresent(why); }; // (not current: the catch retries)
        this.suspectReset(looks).then((v) => { if (!v.confirmed) again(); }, again);
        throw new Error(`${looks}: not believed until fresh reads confirm it`);
      }
      const corrections = this.state.corrections;
      const published = this.state.deltasPublished;
      this.state.replaceAll(listed.revision, listed.kvs);
      if (listed.revision > before + 1 && this.state.deltasPublished === published && this.watch) this.startGapCheck(before, listed.revision);
      if (this.state.corrections !== corrections) {
        this.log.error({ revision: listed.revision, why },
          'the store listed another state than ours at our own revision: its watch missed a change; corrected, and every agent is sent a snapshot');
      }
      this.releaseHeld();
      this.presentLists++;
      this.presentBackoff.reset();
      this.log.info({ revision: this.state.revision, why }, 'listed the present');
      this.listingPresent = false;
      this.becomeCurrent();
    } catch (err) {
      this.releaseHeld();
      this.listingPresent = false;
      const message = (err as Error).message;
      if (this.current || this.stopped) {
        this.log.warn({ err: message, why }, 'list of the present failed');
        return;
      }
      const delay = this.presentBackoff.next();
      this.log.warn({ err: message, retryInMs: Math.round(delay) }, 'list of the present failed; not serving agents until it works (the state is history)');
      this.presentTimer = setTimeout(() => this.listPresent(why), delay);
    }
  }

  // --- revision reads ---------------------------------------------------------------------

  private probeInFlight?: Promise<Probe>;
  /** A probe requested while one was in flight: it must start after that one (see probe()). */
  private probeQueued?: Promise<Probe>;
  private lastProbeStartedAt = 0;

  private scheduleProbe(delayMs: number): void {
    clearTimeout(this.probeTimer);
    if (this.stopped) return;
    this.probeTimer = setTimeout(() => {
      void this.probe().catch(() => { /* logged in probe */ }).finally(() => this.scheduleProbe(this.probeIntervalMs));
    }, delayMs);
    this.probeTimer.unref();
  }

  /**
   * Reads the store's current revision with a request sent after this call (never an answer
   * from before: a caller compares it with a revision it has just learnt). Concurrent callers
   * share one read; reads start at most once per HUB_DEFAULTS.minProbeIntervalMs. A revision lower than one
   * the state had before the read was sent, or another cluster id, means the store's history
   * was reset: the state is reset from a fresh list.
   */
  probe(): Promise<Probe> {
    if (this.probeQueued) return this.probeQueued;
    if (this.probeInFlight) {
      const after = this.probeInFlight;
      this.probeQueued = after.catch(() => undefined).then(() => { this.probeQueued = undefined; return this.probe(); });
      return this.probeQueued;
    }
    const wait = Math.max(0, this.lastProbeStartedAt + HUB_DEFAULTS.minProbeIntervalMs - Date.now());
    const run = async (): Promise<Probe> => {
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      this.lastProbeStartedAt = Date.now();
      const before = this.state.revision;
      this.probes++;
      const revision = await this.store.currentRevision();
      const clusterId = this.store.clusterId ?? '';
      const looks = this.state.loaded && !this.stopped ? this.resetReason({ revision, clusterId }, before) : undefined;
      // Callers compare agents' revisions with the answer: it must not be a stale member's.
      if (looks !== undefined) return (await this.suspectReset(looks)).probe;
      return { revision, clusterId };
    };
    this.probeInFlight = run().finally(() => { this.probeInFlight = undefined; });
    this.probeInFlight.catch((err: Error) => this.log.warn({ err: err.message }, 'store revision read failed'));
    return this.probeInFlight;
  }

  /** Why the next list must reset the state (set by a detected reset until a list applied it). */
  private resetPending?: string;

  /**
   * The store's history is not ours: list again and reset (also re-creating the watch, which
   * waits for revisions past the store's). The flag survives until a list has applied it, so a
   * store whose revision climbs back above ours in the meantime still gets a reset, not a delta.
   */
  private storeReset(why: string): void {
    if (this.resetPending !== undefined) return;
    this.resetPending = why;
    this.log.error({ why }, 'store history went backwards: resetting');
    void this.relist();
  }

  /** Why an answer (a list's or a revision read's) asked for when the state was at `ours` shows another history; undefined if it does not. */
  private resetReason(answer: Probe, ours: number): string | undefined {
    if (answer.revision < ours) return `the store answered at revision ${answer.revision}, below ours (${ours})`;
    if (this.state.epoch !== '' && answer.clusterId !== '' && answer.clusterId !== this.state.epoch) return `the store's cluster id is ${answer.clusterId}, ours ${this.state.epoch}`;
    return undefined;
  }

  /** Answers that looked like another history and that fresh reads did not confirm (/metrics). */
  staleAnswers = 0;
  private suspicion?: Promise<ResetVerdict>;

  /**
   * An answer says the store's history went backwards. Believed at once, a stale answer would
   * reset the hub — and every agent, with reset snapshots — to a state long gone: a member of
   * etcd 3.4 that was paused answers even linearizable reads from its old state for a moment
   * after it resumes (etcd-io/etcd#20418; a SIGSTOP test saw an agent's stream go from 105
   * back to 15). So it is believed only when HUB_DEFAULTS.resetConfirmReads fresh revision
   * reads, each sent after the one before answered, agree; the first that shows our history
   * ends it. Concurrent suspicions share one confirmation. Rejects when a read fails (the
   * next answer that looks the same asks again).
   */
  private suspectReset(why: string): Promise<ResetVerdict> {
    if (!this.suspicion) {
      this.log.warn({ why, confirmReads: HUB_DEFAULTS.resetConfirmReads },
        'the store answered as if its history went backwards; checking with fresh reads before believing it (a paused etcd member can answer stale: etcd-io/etcd#20418)');
      this.suspicion = this.confirmReset(why).finally(() => { this.suspicion = undefined; });
      this.suspicion.catch((err: Error) => this.log.warn({ why, err: err.message }, 'could not confirm that the store\'s history went backwards; not resetting'));
    }
    return this.suspicion;
  }

  private async confirmReset(why: string): Promise<ResetVerdict> {
    let last: Probe = { revision: 0, clusterId: '' };
    for (let agreeing = 0; agreeing < HUB_DEFAULTS.resetConfirmReads; agreeing++) {
      await new Promise((r) => setTimeout(r, HUB_DEFAULTS.resetConfirmIntervalMs));
      if (this.stopped) throw new Error('stopped');
      const ours = this.state.revision;
      this.probes++;
      last = { revision: await this.store.currentRevision(), clusterId: this.store.clusterId ?? '' };
      if (this.resetReason(last, ours) === undefined) {
        this.staleAnswers++;
        this.log.warn({ why, revision: last.revision, ours },
          'a fresh read shows our history: that answer was stale (an etcd member behind its cluster); ignored, nothing reset');
        return { confirmed: false, probe: last };
      }
    }
    this.storeReset(`${why}; ${HUB_DEFAULTS.resetConfirmReads} fresh reads ${HUB_DEFAULTS.resetConfirmIntervalMs} ms apart agree`);
    return { confirmed: true, probe: last };
  }

  private resetFromList(listed: ListResult, epoch: string, why: string): void {
    this.log.error({ why, oldRevision: this.state.revision, newRevision: listed.revision, oldCluster: this.state.epoch || undefined, newCluster: epoch || undefined },
      'STORE HISTORY RESET: etcd was restored from an older backup or rebuilt; its state is the truth now — resetting the hub and sending every agent the new state');
    this.state.reset(listed.revision, listed.kvs, epoch);
    this.onCurrent?.();
  }
}
