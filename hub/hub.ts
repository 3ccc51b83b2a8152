// Wires a hub together: store → sync → state → WebSocket server. Used by the hub's main, by
// the demo, and by the agent's standalone mode (an embedded hub on loopback).
import type { Logger } from '../shared/log.js';
import { keyRangeFilter } from '../shared/protocol.js';
import { HUB_DEFAULTS } from './defaults.js';
import { HubServer, type HubServerOptions } from './server.js';
import { HubState } from './state.js';
import type { Store } from './store/types.js';
import { StoreSync } from './sync.js';

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
  /** Store revisions of history a starting hub replays to fill its delta history. */
  historyPrefillRevisions?: number;
  authorize?: HubServerOptions['authorize'];
  tls?: HubServerOptions['tls'];
  routes?: HubServerOptions['routes'];
}

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
  const prefix = opts.prefix ?? HUB_DEFAULTS.prefix;
  const progressIntervalMs = opts.progressIntervalMs ?? HUB_DEFAULTS.progressIntervalMs;
  const state = new HubState({
    keep: keyRangeFilter(prefix),
    historyMaxCount: opts.historyMaxCount ?? HUB_DEFAULTS.historyMaxCount,
    historyMaxBytes: opts.historyMaxBytes ?? HUB_DEFAULTS.historyMaxBytes,
  });
  const server = new HubServer(state, {
    host: opts.host,
    port: opts.port,
    maxBackpressure: opts.maxBackpressure ?? HUB_DEFAULTS.maxBackpressure,
    maxTotalBackpressure: opts.maxTotalBackpressure,
    aheadTimeoutMs: opts.aheadTimeoutMs ?? HUB_DEFAULTS.aheadTimeoutMs(progressIntervalMs),
    maxAgentFrameBytes: HUB_DEFAULTS.maxAgentFrameBytes,
    progressIntervalMs,
    helloTimeoutMs: HUB_DEFAULTS.helloTimeoutMs,
    authorize: opts.authorize,
    tls: opts.tls,
    routes: opts.routes,
  }, log);
  const sync = new StoreSync(opts.store, prefix, state, log, {
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
    stop({ spreadMs = 0, graceMs = HUB_DEFAULTS.shutdownGraceMs } = {}) {
      stopping ??= (async () => {
        if (spreadMs > 0 && server.agentCount > 0) await server.drainAgents(spreadMs, graceMs);
        server.close();
        await sync.stop();
      })();
      return stopping;
    },
  };
}
