// Every tunable of the agent's wiring in one place, each with the reason for its value. The
// agent's flags (agent/main.ts) default to these. Kept free of imports beyond the hub's own
// defaults: the agent's main reads it before the runtime check allows loading the agent.
import { HUB_DEFAULTS } from '../hub/defaults.js';

export const AGENT_DEFAULTS = {
  // Three of the hubs' default progress periods: a healthy hub is quiet between its progress
  // frames, and either side stalls for hundreds of ms on a GC or a big snapshot.
  silenceTimeoutMs: 3 * HUB_DEFAULTS.progressIntervalMs,
  // Full-jitter backoff from ~200 ms up to 30 s (issue #4): quick after a blip, gentle on a
  // hub tier that is coming back with every node of the cluster knocking.
  backoffBaseMs: 200,
  backoffCapMs: 30_000,
  // A few MB: several full all-apps answers of a large cluster.
  maxStreamBufferBytes: 4 * 1024 * 1024,
  // The standalone mode's embedded hub serves one agent over loopback, which hardly ever
  // breaks, and runs on every node: a small history (a few minutes of a deploy wave) bridges
  // the agent's own restarts without holding the hub tier's 256 MB on each machine.
  embeddedHubHistoryMaxCount: 1000,
  embeddedHubHistoryMaxBytes: 32 * 1024 * 1024,
  // The one garbage collection after the initial sync runs a moment after it settled, once
  // the snapshot frames and decoding temporaries of its last step are unreachable.
  settleGcDelayMs: 100,
  // Lain's clients poll the agent every few seconds, many on one kept-alive connection (Go
  // kept idle connections forever): 60 s keeps them across polls without keeping dead ones.
  httpKeepAliveMs: 60_000,
  // Only the request head has a deadline (event streams live for days); node's own default.
  httpHeadersTimeoutMs: 60_000,
  // A hub that took the TCP connection but does not answer the WebSocket upgrade within this is
  // as good as down (stopped, or its event loop stuck): the next hub is tried.
  hubHandshakeTimeoutMs: 5000,
  // The largest frame a hub may send: snapshot parts are ~512 KB (HubState's chunk) and a delta
  // is one etcd transaction (etcd caps a request at 1.5 MB by default); 64 MB bounds a broken
  // hub's frame without refusing any real one.
  maxHubFrameBytes: 64 * 1024 * 1024,
};
