// A hub with worker threads (hub/pool.ts) under the faults only threads have: a worker that
// crashes, a worker stuck while the ring laps it; and what a multi-threaded hub must still be
// as one — /metrics and /healthz for the whole hub, a token checked on every worker. Real
// agents (in-process), a hub on the in-memory store.
import test from 'ava';
import WebSocket from 'ws';
import { startAgent, type Agent } from '../agent/agent.js';
import type { Hub } from '../hub/hub.js';
import { MemoryStore } from '../hub/store/memory.js';
import { silentLogger } from '../shared/log.js';
import { hubOn } from './helpers/fake-agent.js';
import { capturingLogger } from './helpers/persist.js';
import { httpGet } from '../testkit/http.js';
import { metricValue } from '../testkit/metrics.js';
import { waitFor } from '../testkit/procs.js';

const seed = { '/lain/config/domain': 'lain.local', '/lain/config/vip': '10.0.0.1' };

async function agentsOn(hub: Hub, n: number): Promise<Agent[]> {
  const agents = await Promise.all(Array.from({ length: n }, () => startAgent({
    host: '127.0.0.1', port: 0, nodeIp: '127.0.0.1', noauth: true, hubs: [`ws://127.0.0.1:${hub.port}`], backoffBaseMs: 20, backoffCapMs: 200,
  }, silentLogger)));
  await waitFor(() => agents.every((a) => a.client.status.live), { message: 'every agent live' });
  return agents;
}

/** Every agent holds exactly the store's kept keys at the store's revision. */
async function converged(store: MemoryStore, hub: Hub, agents: Agent[], what: string): Promise<void> {
  await waitFor(() => hub.state.revision === store.lastRevision && agents.every((a) => a.client.status.live && a.cache.revision >= store.lastRevision), { timeoutMs: 20_000, message: what });
  const want = JSON.stringify([...hub.state.entries].sort());
  for (const a of agents) if (JSON.stringify([...a.cache.entries].sort()) !== want) throw new Error(`${what}: an agent holds another state`);
}

const workerAgents = (hub: Hub) => Array.from({ length: hub.pool!.workers }, (_, i) => hub.pool!.workerStats(i).gauges.agents);

test('a crashed worker is started again; its agents reconnect, resume from their revision, and miss nothing', async (t) => {
  t.timeout(60_000);
  const store = new MemoryStore(seed);
  const { log, lines } = capturingLogger();
  const hub = await hubOn(store, { workers: 2 }, log);
  const agents = await agentsOn(hub, 12);
  try {
    // A worker counts an agent a moment after the agent sees itself live: wait for the count.
    await waitFor(() => workerAgents(hub).reduce((a, b) => a + b, 0) === 12, { message: 'the workers count every agent' });
    const perWorker = workerAgents(hub);
    const victim = perWorker.indexOf(Math.max(...perWorker));
    const reconnectsBefore = agents.reduce((n, a) => n + a.client.status.reconnects, 0);
    const snapshotsBefore = agents.reduce((n, a) => n + a.client.status.snapshots, 0);
    const resumesBefore = hub.server.counters.resumes;
    hub.pool!.crashWorker(victim, 'test');
    // Writes while the worker is down and while it comes back.
    for (let i = 0; i < 20; i++) store.put(`/lain/config/during${i}`, String(i));
    await waitFor(() => hub.pool!.workerStats(victim).restarts === 1, { message: 'the worker started again' });
    for (let i = 0; i < 20; i++) store.put(`/lain/config/after${i}`, String(i));
    await converged(store, hub, agents, 'every agent converged after the crash');
    const reconnected = agents.reduce((n, a) => n + a.client.status.reconnects, 0) - reconnectsBefore;
    t.is(reconnected, perWorker[victim], 'exactly the crashed worker\'s agents reconnected');
    t.is(agents.reduce((n, a) => n + a.client.status.snapshots, 0), snapshotsBefore, 'they resumed with deltas, no snapshot');
    t.is(hub.server.counters.resumes - resumesBefore, perWorker[victim]);
    t.true(lines.some((l) => l.msg.includes('worker crashed')), 'the crash is logged');
    t.true(lines.some((l) => l.msg.includes('starting it again')), 'and the restart');
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await hub.stop();
  }
});

test('a worker stuck while the ring laps it notices, closes its agents, and they resume: nothing torn, nothing lost (a tiny ring)', async (t) => {
  t.timeout(60_000);
  const store = new MemoryStore(seed);
  const { log, lines } = capturingLogger();
  const hub = await hubOn(store, { workers: 2, ringSlots: 8, ringBytes: 64 * 1024 }, log);
  const agents = await agentsOn(hub, 8);
  try {
    await waitFor(() => workerAgents(hub).reduce((a, b) => a + b, 0) === 8, { message: 'the workers count every agent' });
    const perWorker = workerAgents(hub);
    const victim = perWorker.indexOf(Math.max(...perWorker));
    const reconnectsBefore = agents.map((a) => a.client.status.reconnects);
    await hub.pool!.stallWorker(victim, 400);
    // While it is stuck: far more records than the ring holds.
    for (let i = 0; i < 40; i++) store.put(`/lain/config/burst${i}`, String(i));
    await converged(store, hub, agents, 'every agent converged after the overrun');
    // (The other worker may be lapped by a burst over 8 slots too: it is not asked to keep up.)
    t.is(hub.pool!.workerStats(victim).gauges.overruns, 1, 'the stuck worker saw one overrun');
    const reconnected = agents.filter((a, i) => a.client.status.reconnects > reconnectsBefore[i]).length;
    t.true(reconnected >= perWorker[victim], 'the stuck worker\'s agents were closed and came back');
    t.true(lines.some((l) => l.msg.includes('fell behind the frame ring')), 'logged');
    store.put('/lain/config/later', 'x');
    await converged(store, hub, agents, 'and they go on getting deltas');
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await hub.stop();
  }
});

test('/metrics and /healthz answer for the whole hub on every worker, with a series per worker', async (t) => {
  const store = new MemoryStore(seed);
  const { hubMetrics } = await import('../hub/metrics.js');
  const metrics = hubMetrics();
  const hub = await hubOn(store, { workers: 2, routes: { '/metrics': () => ({ status: 200, contentType: metrics.contentType, body: metrics.render() }) } });
  metrics.bind(hub);
  const agents = await agentsOn(hub, 6);
  try {
    // Each request is a new connection: the kernel hands them to either worker.
    for (let i = 0; i < 6; i++) {
      const body = (await httpGet(`http://127.0.0.1:${hub.port}/metrics`)).body;
      t.is(metricValue(body, 'lainlet_hub_agents_connected'), 6);
      t.is(metricValue(body, 'lainlet_hub_workers'), 2);
      const perWorker = [0, 1].map((w) => metricValue(body, `lainlet_hub_worker_agents_connected{worker="${w}"}`));
      t.is(perWorker[0] + perWorker[1], 6);
      const health = JSON.parse((await httpGet(`http://127.0.0.1:${hub.port}/healthz`)).body) as { ok: boolean; agents: number; revision: number };
      t.like(health, { ok: true, agents: 6, revision: hub.state.revision });
    }
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    await hub.stop();
  }
});

test('every worker checks the token at the upgrade, and the refusals add up', async (t) => {
  const hub = await hubOn(new MemoryStore(seed), { workers: 2, token: 'the-right-token-123' });
  try {
    const attempt = (authorization?: string) => new Promise<number>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${hub.port}/`, authorization ? { headers: { authorization } } : {});
      ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate(); });
      ws.on('open', () => { resolve(101); ws.close(); });
      ws.on('error', () => {});
    });
    const refused = await Promise.all(Array.from({ length: 10 }, () => attempt('Bearer wrong')));
    t.deepEqual(refused, Array(10).fill(401));
    t.is(hub.server.counters.rejectedClients, 10, 'summed over the workers');
    t.is(await attempt('Bearer the-right-token-123'), 101);
    await t.throwsAsync(hubOn(new MemoryStore(seed), { workers: 2, authorize: () => true }), { message: /checks agents by `token`/ }, 'a function cannot reach a worker thread');
  } finally {
    await hub.stop();
  }
});
