// Wires a hub together: store → sync → state → WebSocket server. Used by the hub's main, by
// the demo, and by the agent's standalone mode (an embedded hub on loopback).
import type { Logger } from '../shared/log.js';
import { keyRangeFilter } from '../shared/protocol.js';
import { HUB_DEFAULTS } from './defaults.js';
import type { Fanout } from './fanout.js';
import { Membership, type MembershipOptions } from './members.js';
import { WorkerPool } from './pool.js';
import { HubServer, type HubServerOptions } from './server.js';
import { HubState } from './state.js';
import type { Store } from './store/types.js';
import { StoreSync } from './sync.js';
import { tokenChecker } from '../shared/token.js';

/** Options left out take their value from HUB_DEFAULTS (hub/defaults.ts). */
export interface HubOptions {
  store: Store;
  prefix?: string;
  host: string;
  port: number;
  historyMaxCount?: number;
  historyMaxBytes?: number;
  maxBackpressure?: number;
  /** Bytes queued to all agents together before the most backed-up are disconnected. */
  maxTotalBackpressure?: number;
  progressIntervalMs?: number;
  /** How often the store's revision is checked for a reset (ms). */
  storeProbeIntervalMs?: number;
  /** How long an agent may wait for this hub (not current, or behind it) before it is sent away. */
  aheadTimeoutMs?: number;
  /** An agent must say hello within this time (ms). */
  helloTimeoutMs?: number;
  /** The highest protocol version spoken (tests: 1 behaves as a hub from before version 2). */
  protocolMax?: number;
  /** Store revisions of history a starting hub replays to fill its delta history. */
  historyPrefillRevisions?: number;
  /** Checks an agent's Authorization header (one thread only: a function cannot reach a worker; give `token` then). */
  authorize?: HubServerOptions['authorize'];
  /** The bearer token agents must present (any number of workers). */
  token?: string;
  tls?: HubServerOptions['tls'];
  routes?: HubServerOptions['routes'];
  /**
   * WebSocket worker threads (hub/pool.ts): 0 serves the agents on this thread, beside the
   * store sync (the default for an embedded hub); N ≥ 1 starts N workers sharing the port.
   */
  workers?: number;
  /** The hub tier's registry and balance (hub/members.ts); absent: this hub is on its own. */
  members?: Omit<MembershipOptions, 'prefix'> & { prefix?: string };
  /** The frame ring the workers read (default: as large as the history). */
  ringSlots?: number;
  ringBytes?: number;
}

/** What the store sync needs of a fan-out, besides the Fanout itself. */
type SyncedFanout = Fanout & {
  probeStore?: () => Promise<{ revision: number }>;
  listPresent?: (why: string, stillNeeded: () => boolean) => void;
  isCurrent: () => boolean;
};

export interface Hub {
  port: number;
  state: HubState;
  /** The agent-facing fan-out: a HubServer on this thread, or a WorkerPool. */
  server: Fanout;
  /** The worker threads, when there are any. */
  pool?: WorkerPool;
  /** The hub tier's membership, when the hub takes part in one. */
  membership?: Membership;
  sync: StoreSync;
  /** Resolves once the first list succeeded. */
  ready: Promise<void>;
  stop(opts?: { spreadMs?: number; graceMs?: number }): Promise<void>;
}

export async function startHub(opts: HubOptions, log: Logger): Promise<Hub> {
  const prefix = opts.prefix ?? HUB_DEFAULTS.prefix;
  const progressIntervalMs = opts.progressIntervalMs ?? HUB_DEFAULTS.progressIntervalMs;
  const state = new HubState({
    keep: keyRangeFilter(prefix),
    historyMaxCount: opts.historyMaxCount ?? HUB_DEFAULTS.historyMaxCount,
    historyMaxBytes: opts.historyMaxBytes ?? HUB_DEFAULTS.historyMaxBytes,
  });
  const serverOpts = {
    host: opts.host,
    port: opts.port,
    maxBackpressure: opts.maxBackpressure ?? HUB_DEFAULTS.maxBackpressure,
    maxTotalBackpressure: opts.maxTotalBackpressure,
    aheadTimeoutMs: opts.aheadTimeoutMs ?? HUB_DEFAULTS.aheadTimeoutMs(progressIntervalMs),
    maxAgentFrameBytes: HUB_DEFAULTS.maxAgentFrameBytes,
    progressIntervalMs,
    helloTimeoutMs: opts.helloTimeoutMs ?? HUB_DEFAULTS.helloTimeoutMs,
    protocolMax: opts.protocolMax,
    tls: opts.tls,
  };
  const workers = opts.workers ?? 0;
  let server: SyncedFanout;
  let pool: WorkerPool | undefined;
  if (workers > 0) {
    if (opts.authorize && !opts.token) throw new Error('a hub with worker threads checks agents by `token`, not an `authorize` function');
    // The bytes queued to all agents are bounded per worker: each gets its share of the total.
    const total = opts.maxTotalBackpressure
      ?? Math.max(serverOpts.maxBackpressure * HUB_DEFAULTS.totalBackpressureAgents, HUB_DEFAULTS.maxTotalBackpressure);
    pool = new WorkerPool(state, {
      workers,
      ring: {
        slots: opts.ringSlots ?? (opts.historyMaxCount ?? HUB_DEFAULTS.historyMaxCount) + HUB_DEFAULTS.ringExtraSlots,
        bytes: opts.ringBytes ?? opts.historyMaxBytes ?? HUB_DEFAULTS.historyMaxBytes,
      },
      server: { ...serverOpts, maxTotalBackpressure: Math.ceil(total / workers), connLogShare: workers },
      token: opts.token,
      routes: opts.routes,
    }, log);
    server = pool;
  } else {
    server = new HubServer(state, {
      ...serverOpts,
      authorize: opts.authorize ?? (opts.token ? tokenChecker(opts.token) : undefined),
      routes: opts.routes,
    }, log);
  }
  const sync = new StoreSync(opts.store, prefix, state, log, {
    prefillRevisions: opts.historyPrefillRevisions ?? HUB_DEFAULTS.historyPrefillRevisions,
    probeIntervalMs: opts.storeProbeIntervalMs,
  });
  server.probeStore = () => sync.probe();
  server.listPresent = (why, stillNeeded) => sync.listPresent(why, stillNeeded);
  server.isCurrent = () => sync.current;
  sync.onCurrent = () => server.notifyCurrent();
  // Listen first: a hub that must refuse its port (another hub serves it) never touches the
  // store, and the workers are up before the state they serve starts to change.
  const port = await server.listen();
  const ready = sync.start();
  const membership = opts.members ? new Membership({
    prefix: prefix + HUB_DEFAULTS.membersPrefixUnderPrefix, serving: () => state.loaded && !state.stale && sync.current && !sync.checkingGap, ...opts.members,
  }, state, server, log) : undefined;
  membership?.start();
  let stopping: Promise<void> | undefined;
  return {
    port, state, server, pool, sync, ready, membership,
    stop({ spreadMs = 0, graceMs = HUB_DEFAULTS.shutdownGraceMs } = {}) {
      stopping ??= (async () => {
        // Marked draining first: no hub sends agents here any more, and ours go to the others.
        const others = membership?.othersByLoad() ?? [];
        await membership?.drain();
        if (spreadMs > 0 && server.agentCount > 0) await server.drainAgents(spreadMs, graceMs, others);
        await membership?.stop();
        await server.close();
        await sync.stop();
      })();
      return stopping;
    },
  };
}
