// Every tunable of the hub in one place, each with the reason for its value. The hub's flags
// (hub/main.ts) default to these; the demo and the agent's embedded hub take them as they are.
// No imports: the store backends, the sync and the server all read from here, and the agent's
// main reads it before it may load anything of the hub.

export const HUB_DEFAULTS = {
  prefix: '/lain/',

  // --- delta history ------------------------------------------------------------------------
  // A busy cluster (a deploy wave) writes a few pod groups per second; 10 000 deltas or
  // 256 MB keeps far more than several minutes of that, so a hub restart or a network blip
  // is bridged with deltas, not snapshots.
  historyMaxCount: 10_000,
  historyMaxBytes: 256 * 1024 * 1024,
  // After a restart the hub replays this many etcd revisions so agents resuming on it get
  // deltas, not snapshots. A few thousand revisions cost seconds at most to replay.
  historyPrefillRevisions: 2000,

  // --- sending to agents --------------------------------------------------------------------
  // An agent whose socket has this much queued is not keeping up; it is disconnected and
  // resumes from its revision. Large enough for a burst of big pod-group deltas.
  maxBackpressure: 64 * 1024 * 1024,
  // All agents together: a few non-reading clients must not take the hub's memory. 256 MB is
  // four agents at their own limit; a healthy hub has next to nothing queued.
  maxTotalBackpressure: 256 * 1024 * 1024,
  // Without an explicit total, a larger per-agent limit raises the total to as many agents'
  // worth as the default is (four): the bound must not cut off the second slow agent.
  totalBackpressureAgents: 4,
  // A catch-up (snapshot parts, history deltas) queues at most this much at a time and goes
  // on at drain: 1 MB keeps a socket busy between two drain events without holding a large
  // history in the send queue (and never more than a quarter of maxBackpressure, see server).
  catchUpLowWaterBytes: 1 << 20,
  // The bytes queued to all agents are added up this often (and after every maxBackpressure/4
  // published): a non-reading agent grows only by what was published in between.
  totalBackpressureSweepMs: 500,
  // Agents treat three silent periods as a dead hub (so 15 s to fail over).
  progressIntervalMs: 5000,

  // --- agent connections --------------------------------------------------------------------
  // Agents send one small hello frame; anything much larger is a rogue client.
  maxAgentFrameBytes: 64 * 1024,
  // uWebSockets.js closes (1009) on frames above maxPayloadLength without telling us: up to
  // this the hub reads an oversized frame and answers it with an error frame before closing.
  minWsPayloadBytes: 1 << 20,
  // uWebSockets.js's own ping/idle check (seconds): a peer gone without a FIN is dropped
  // within a minute even if no delta is sent to it; the hub's progress frames keep a live
  // agent well under it.
  wsIdleTimeoutSec: 60,
  // An agent says hello right after connecting; one that does not within 10 s holds a socket
  // for nothing (a port scanner, a stuck client).
  helloTimeoutMs: 10_000,
  // Agents leave a hub after three silent progress periods; sending a waiting one away after
  // two lets it try the next hub before it gives up on its own — but never before 10 s, the
  // time a starting hub may take to replay its history or list a large cluster.
  aheadTimeoutMs: (progressIntervalMs: number): number => Math.max(10_000, progressIntervalMs * 2),
  // Per-connection log lines (connect, disconnect, refusals): a reconnect storm of thousands of
  // agents writes 100 lines at once, then 20 a second, each saying how many were left out.
  connLogBurst: 100,
  connLogPerSecond: 20,

  // --- worker threads ---------------------------------------------------------------------
  // A crashed worker is started again at once, then after 0.2, 0.4 … s while it keeps failing
  // to listen: a bug that kills every start must not spin a core.
  workerRestartBaseMs: 100,
  workerRestartCapMs: 5000,
  // The frame ring holds as many deltas as the history, plus room for the state records
  // (progress, stale flips) written between them: a resuming agent reaches as far back on a
  // worker as on a single-threaded hub.
  ringExtraSlots: 1024,

  // --- membership and balance (hub/members.ts) ---------------------------------------------
  // Where hubs register: under the hub's --prefix (so every hub's one watch sees each registry
  // write, and its revision moves with them — see StoreSync.watchSaw) but outside the key ranges
  // agents are sent (API_KEY_RANGES), so no agent ever receives it.
  membersPrefixUnderPrefix: 'lainlet/hubs/',
  // A hub writes its record and reads everyone's every 2 s: one small write and one small
  // range read per hub per period. A hub gone without a word leaves the registry with its
  // lease, 10 s later (agents have failed over by then: they find a closed socket at once).
  membersRefreshMs: 2000,
  memberTtlSec: 10,
  // A record not rewritten for 2.5 rounds, and at least this long, is a hub gone before its
  // lease ended (killed): no agent is sent there, its agents are not counted.
  memberSilentMinMs: 3000,
  // A hub is balanced within max(2 agents, 5 % of the fair share): 300 agents on 3 hubs settle
  // at 100 ± 5, and one agent more or less never moves anyone.
  balanceSlackAgents: 2,
  balanceSlackFraction: 0.05,
  // At most 25 agents asked to move per hub per round (2 s), each at a random moment within
  // the round: a hub that joins a tier of 1000 agents fills in ~20 s, no hub sees a storm.
  balanceMovesPerRound: 25,

  // --- shutdown -----------------------------------------------------------------------------
  // On SIGTERM agents are told to move at random moments over 10 s, so the other hubs are not
  // hit by every agent at once; systemd's TimeoutStopSec (30 s) leaves room for it.
  shutdownSpreadMs: 10_000,
  // After the spread, agents that have not left yet get this long before the hub closes them.
  shutdownGraceMs: 1000,
  // How often a draining hub looks whether its agents have left (a loop, not a timing claim).
  drainCheckMs: 50,

  // --- the store ----------------------------------------------------------------------------
  // Retries of a failed list or watch: quick after a blip, at most one attempt per 5 s on a
  // store that is down (a hub tier is a few clients, not a herd).
  storeRetryBaseMs: 200,
  storeRetryCapMs: 5000,
  // A restored etcd is noticed within this long; one tiny range request per hub per period.
  probeIntervalMs: 5000,
  // However many agents arrive ahead of us, they never drive more store load than this: 500
  // hostile clients claiming a revision far ahead cost at most one read per second and one
  // list every five seconds (a list of a large cluster is ~10 MB).
  minProbeIntervalMs: 1000,
  // An answer saying the store's history went backwards (a revision below ours, another
  // cluster id) is believed only when this many fresh reads, this far apart, say so too: a
  // member of etcd 3.4 that was paused (SIGSTOP, a VM freeze, a long GC) can answer even a
  // linearizable read from its stale state for a moment after it resumes (etcd-io/etcd#20418,
  // fixed only in 3.4.4x). Believed at once, such an answer reset the hub and every agent to a
  // state minutes old. A real restore or rebuild stays below us: it costs this ~1.5 s more.
  resetConfirmReads: 3,
  resetConfirmIntervalMs: 500,
  minListIntervalMs: 5000,
  // A hub behind an agent is usually just a moment behind: its watch gets this long to bring
  // the delta (which the agent resumes with) before a list's jump would cost it a snapshot.
  aheadListGraceMs: 1000,
  // A prefill replay that has not moved for replayQuietChecks × replayCheckMs is over: the
  // last change under the prefix was older than the store's revision, and a list of the
  // present finishes the job.
  replayCheckMs: 100,
  replayQuietChecks: 3,
  // A list that jumped a span without a change is proved gap-free by the watch's next event
  // (StoreSync.watchSaw); a hub waits this long for it before it joins the tier's balance
  // anyway (on a quiet prefix no event may come for hours).
  gapCheckMaxMs: 10_000,

  // --- etcd v3 ------------------------------------------------------------------------------
  // How long one connection attempt or list may take before it fails: etcd on a LAN answers
  // in milliseconds, and a hub that waits longer only serves stale state longer.
  etcd3DialTimeoutMs: 3000,
  // etcd itself caps a request at 1.5 MB by default, but a response (a range) has no cap: a
  // list of /lain/ on a large cluster (1000+ pod groups, ~10 MB) is ONE gRPC message, and
  // grpc-js's default 4 MB receive limit would make the hub unable to load such a cluster.
  etcd3MaxMessageBytes: 512 * 1024 * 1024,
  // grpc-js waits up to 120 s between connection attempts once attempts keep failing (a link
  // that resets new connections, an etcd that is restarting): the hub would stay stale for
  // minutes after etcd is back. A hub tier is a few clients, not a herd.
  etcd3ReconnectBaseMs: 500,
  etcd3ReconnectCapMs: 5000,
  // The etcd3 library re-creates a broken watch stream after a backoff of its own, on top of
  // grpc-js's: by default decorrelated jitter from 128 ms up to 30 s, grown by every failed
  // attempt and reset only by an answer. After a few seconds of faults (etcd restarting, a link
  // resetting) its next attempt could be 20-30 s away, and the hub stale all that time after
  // etcd was back: a soak's hub was still stale 20 s after every fault had healed. Same cap as
  // the connection attempts.
  etcd3WatchRetryBaseMs: 128,
  etcd3WatchRetryCapMs: 5000,
  // A watcher etcd already cancelled (compaction) never gets the cancel acknowledgement the
  // library waits for: give up waiting after this.
  etcd3CancelWaitMs: 1000,

  // --- etcd v2 ------------------------------------------------------------------------------
  // How long a request may wait for its response headers before the endpoint counts as
  // unreachable: etcd answers headers at once, even for a long poll.
  etcd2RequestTimeoutMs: 5000,
  // An idle long poll is aborted and re-issued after this long: etcd would hold it forever,
  // and a silently dead TCP connection would hold it forever too.
  etcd2PollReissueMs: 60_000,
  // A list of a large tree may take a while to transfer once its headers are in.
  etcd2ListBodyTimeoutMs: 60_000,
};
