// Simulated agents, run as a child process of the benchmark (see ipc.ts). Each one is the
// agent's real data path without its HTTP server: HubClient (hello with its revision,
// snapshot/delta handling, failover and full-jitter backoff, resume) → Cache → Indexes. Each
// holds its own WebSocket to a real hub process, so the hub sees real connections.
//
// Latency probe: a put of LATENCY_KEY whose value is {"seq":n,"t":<CLOCK_MONOTONIC ms>} is
// timed when each simulated agent applies it (the clock is shared by every process).
import { AGENT_DEFAULTS } from '../../agent/agent.js';
import { Cache } from '../../agent/cache.js';
import { HubClient } from '../../agent/client.js';
import { Indexes } from '../../agent/indexes/index.js';
import { silentLogger } from '../../shared/log.js';
import { serveCommands } from './ipc.js';
import { monoMs, summarize } from './stats.js';

export const LATENCY_KEY = '/lain/config/bench/latency';

interface Sim {
  client: HubClient;
  cache: Cache;
  /** Mono ms at which the agent first held `target` (0 = not yet). */
  reachedAt: number;
}

const sims: Sim[] = [];
let latencies: number[] = [];
/** seq → [agents that applied it, worst latency]. */
let perSeq = new Map<number, [number, number]>();

function addAgents(n: number, hubs: string[], withIndexes: boolean, namePrefix: string): void {
  for (let i = 0; i < n; i++) {
    const cache = new Cache();
    const indexes = withIndexes ? new Indexes({ prefix: '/lain/' }) : undefined;
    cache.onChange((changes) => {
      indexes?.apply(changes);
      for (const [k, v] of changes.puts) {
        if (k !== LATENCY_KEY) continue;
        const { seq, t } = JSON.parse(v) as { seq: number; t: number };
        const lat = monoMs() - t;
        latencies.push(lat);
        const s = perSeq.get(seq);
        if (s) { s[0]++; if (lat > s[1]) s[1] = lat; } else perSeq.set(seq, [1, lat]);
      }
    });
    const client = new HubClient({
      hubs,
      node: `${namePrefix}${sims.length}`,
      silenceTimeoutMs: AGENT_DEFAULTS.silenceTimeoutMs,
      backoffBaseMs: AGENT_DEFAULTS.backoffBaseMs,
      backoffCapMs: AGENT_DEFAULTS.backoffCapMs,
    }, cache, silentLogger);
    sims.push({ client, cache, reachedAt: 0 });
    client.start();
  }
}

function status() {
  let connected = 0, live = 0, snapshots = 0, reconnects = 0, minRev = Infinity, maxRev = 0;
  for (const s of sims) {
    if (s.client.status.connected) connected++;
    if (s.client.status.live) live++;
    snapshots += s.client.status.snapshots;
    reconnects += s.client.status.reconnects;
    minRev = Math.min(minRev, s.cache.revision);
    maxRev = Math.max(maxRev, s.cache.revision);
  }
  return { count: sims.length, connected, live, snapshots, reconnects, minRev: sims.length ? minRev : 0, maxRev, rss: process.memoryUsage().rss };
}

/** Resolves when every agent holds revision >= rev; times are relative to `since` (mono ms). */
async function waitRevision(rev: number, since: number, timeoutMs: number) {
  for (const s of sims) s.reachedAt = 0;
  const deadline = monoMs() + timeoutMs;
  for (;;) {
    const now = monoMs();
    let missing = 0;
    for (const s of sims) {
      if (s.reachedAt) continue;
      if (s.cache.revision >= rev) s.reachedAt = now; else missing++;
    }
    if (missing === 0) break;
    if (now > deadline) return { done: false, missing, ...status() };
    await new Promise((r) => setTimeout(r, 2));
  }
  const times = sims.map((s) => s.reachedAt - since).sort((a, b) => a - b);
  return { done: true, missing: 0, perAgent: summarize(times), times, ...status() };
}

serveCommands({
  add: (m) => { addAgents(m.n as number, m.hubs as string[], m.indexes !== false, (m.namePrefix as string) ?? 'sim-'); return status(); },
  status: () => status(),
  waitRevision: (m) => waitRevision(m.rev as number, m.since as number, (m.timeoutMs as number) ?? 60_000),
  latencyReset: () => { latencies = []; perSeq = new Map(); return null; },
  latencyReport: (m) => {
    const expect = (m.agents as number) ?? sims.length;
    const complete = [...perSeq.values()].filter(([n]) => n >= expect).map(([, max]) => max);
    return { deliveries: latencies.length, perDelivery: summarize(latencies), writesSeen: perSeq.size, writesComplete: complete.length, lastAgentPerWrite: summarize(complete) };
  },
  stopAll: () => { for (const s of sims) s.client.stop(); sims.length = 0; return null; },
});
