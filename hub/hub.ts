// Wires a hub together: store → sync → state → WebSocket server. Used by the hub's main, by
// the demo, and by the agent's standalone mode (an embedded hub on loopback).
import type { Logger } from '../shared/log.js';
import { keyRangeFilter } from '../shared/protocol.js';
import { HubServer, type HubServerOptions } from './server.js';
import { HubState } from './state.js';
import type { Store } from './store/types.js';
import { StoreSync } from './sync.js';

export interface HubOptions {
  store: Store;
  prefix: string;
  host: string;
  port: number;
  historyMaxCount: number;
  historyMaxBytes: number;
  maxBackpressure: number;
  /** Bytes queued to all agents together before the most backed-up are disconnected. */
  maxTotalBackpressure?: number;
  progressIntervalMs: number;
  /** How often the store's revision is checked for a reset (ms). */
  storeProbeIntervalMs?: number;
  /** How long an agent may wait for this hub (not current, or behind it) before it is sent away. */
  aheadTimeoutMs?: number;
  /** Store revisions of history a starting hub replays to fill its delta history. */
  historyPrefillRevisions?: number;
  authorize?: HubServerOptions['authorize'];
  tls?: HubServerOptions['tls'];
  routes?: HubServerOptions['routes'];
}

/** Defaults, each with its reason. */
export const HUB_DEFAULTS = {
  prefix: '/lain/',
  // A busy cluster (a deploy wave) writes a few pod groups per second; 10 000 deltas or
  // 256 MB keeps far more than several minutes of that, so a hub restart or a network blip
  // is bridged with deltas, not snapshots.
  historyMaxCount: 10_000,
  historyMaxBytes: 256 * 1024 * 1024,
  // An agent whose socket has this much queued is not keeping up; it is disconnected and
  // resumes from its revision. Large enough for a burst of big pod-group deltas.
  maxBackpressure: 64 * 1024 * 1024,
  // All agents together: a few non-reading clients must not take the hub's memory. 256 MB is
  // four agents at their own limit; a healthy hub has next to nothing queued.
  maxTotalBackpressure: 256 * 1024 * 1024,
  // Agents treat three silent periods as a dead hub (so 15 s to fail over).
  progressIntervalMs: 5000,
  // After a restart the hub replays this many etcd revisions so agents resuming on it get
  // deltas, not snapshots. A few thousand revisions cost seconds at most to replay.
  historyPrefillRevisions: 2000,
};

export interface Hub {
  port: number;
  state: HubState;
  server: HubServer;
  sync: StoreSync;
  /** Resolves once the first list succeeded. */
  ready: Promise<void>;
  stop(opts?: { spreadMs?: number; graceMs?: number }): Promise<void>;
}

export async function startHub(opts: HubOptions, log: Logger): Promise<Hub> {
  const state = new HubState({ keep: keyRangeFilter(opts.prefix), historyMaxCount: opts.historyMaxCount, historyMaxBytes: opts.historyMaxBytes });
  const server = new HubServer(state, {
    host: opts.host,
    port: opts.port,
    maxBackpressure: opts.maxBackpressure,
    maxTotalBackpressure: opts.maxTotalBackpressure,
    // Agents leave a hub after three silent progress periods; sending a waiting one away before
    // that lets it try the next hub at once.
    aheadTimeoutMs: opts.aheadTimeoutMs ?? Math.max(10_000, opts.progressIntervalMs * 2),
    maxAgentFrameBytes: 64 * 1024,
    progressIntervalMs: opts.progressIntervalMs,
    helloTimeoutMs: 10_000,
    authorize: opts.authorize,
    tls: opts.tls,
    routes: opts.routes,
  }, log);
  const sync = new StoreSync(opts.store, opts.prefix, state, log, {
    prefillRevisions: opts.historyPrefillRevisions ?? HUB_DEFAULTS.historyPrefillRevisions,
    probeIntervalMs: opts.storeProbeIntervalMs,
  });
  server.probeStore = () => sync.probe();
  server.listPresent = (why, stillNeeded) => sync.listPresent(why, stillNeeded);
  server.isCurrent = () => sync.current;
  sync.onCurrent = () => server.notifyCurrent();
  const ready = sync.start();
  const port = await server.listen();
  let stopping: Promise<void> | undefined;
  return {
    port, state, server, sync, ready,
    stop({ spreadMs = 0, graceMs = 1000 } = {}) {
      stopping ??= (async () => {
        if (spreadMs > 0 && server.agentCount > 0) await server.drainAgents(spreadMs, graceMs);
        server.close();
        await sync.stop();
      })();
      return stopping;
    },
  };
}
