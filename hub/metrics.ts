// The hub's /metrics (Prometheus text format, prom-client). Values are read from the hub's own
// counters at scrape time, so the hot paths only bump plain integers.
import client from 'prom-client';
import type { Hub } from './hub.js';

export function hubMetrics() {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'lainlet_hub_' });
  let hub: Hub | undefined;
  const gauge = (name: string, help: string, read: (h: Hub) => number) =>
    new client.Gauge({ name, help, registers: [registry], collect() { if (hub) this.set(read(hub)); } });
  const counter = (name: string, help: string, read: (h: Hub) => number) =>
    new client.Counter({ name, help, registers: [registry], collect() { if (hub) { this.reset(); this.inc(read(hub)); } } });

  gauge('lainlet_hub_revision', 'store revision the hub state is complete up to', (h) => h.state.revision);
  gauge('lainlet_hub_stale', '1 while the hub cannot reach its store and serves its last state', (h) => (h.state.stale ? 1 : 0));
  gauge('lainlet_hub_keys', 'keys held in the hub state', (h) => h.state.entries.size);
  gauge('lainlet_hub_agents_connected', 'agents connected to this hub', (h) => h.server.agentCount);
  gauge('lainlet_hub_history_deltas', 'deltas held in the resume history', (h) => h.state.history.length);
  gauge('lainlet_hub_history_bytes', 'bytes held in the resume history', (h) => h.state.history.totalBytes);
  gauge('lainlet_hub_history_span_revisions', 'revisions the resume history covers', (h) => (h.state.history.length ? h.state.revision - (h.state.history.oldestPrev ?? h.state.revision) : 0));
  counter('lainlet_hub_deltas_total', 'deltas published (each encoded once)', (h) => h.state.deltasPublished);
  counter('lainlet_hub_delta_frames_sent_total', 'delta frames sent to agents (deltas x live agents)', (h) => h.server.counters.deltasSentFrames);
  counter('lainlet_hub_bytes_sent_total', 'bytes of frames sent to agents', (h) => h.server.counters.bytesSent);
  counter('lainlet_hub_snapshots_sent_total', 'full snapshots sent to agents', (h) => h.server.counters.snapshotsSent);
  counter('lainlet_hub_resumes_total', 'agents brought up to date from history, without a snapshot', (h) => h.server.counters.resumes);
  counter('lainlet_hub_slow_agent_disconnects_total', 'agents disconnected for not keeping up', (h) => h.server.counters.slowAgentDisconnects);
  counter('lainlet_hub_rejected_clients_total', 'clients refused: missing or wrong token, or a protocol violation', (h) => h.server.counters.rejectedClients);
  counter('lainlet_hub_wait_timeouts_total', 'agents sent away after waiting too long for this hub (not current, or behind them)', (h) => h.server.counters.waitTimeouts);
  counter('lainlet_hub_total_backpressure_disconnects_total', 'agents disconnected because all agents together had too much queued', (h) => h.server.counters.totalBackpressureDisconnects);
  counter('lainlet_hub_store_resets_total', 'times the store history was found reset (etcd restored from an older backup or rebuilt)', (h) => h.state.resets);
  counter('lainlet_hub_store_corrections_total', 'lists of the present that found the hub state wrong at its own revision (the store watch missed a change); each sends every agent a snapshot', (h) => h.state.corrections);
  counter('lainlet_hub_reset_snapshots_sent_total', 'reset snapshots sent to agents whose state was from another store history', (h) => h.server.counters.resetSnapshots);
  counter('lainlet_hub_store_revision_reads_total', 'reads of the store revision (reset detection, agents ahead)', (h) => h.sync.probes);
  counter('lainlet_hub_store_stale_answers_total', 'store answers that looked like a reset of its history (a revision below ours) and that fresh reads did not confirm: a member behind its cluster', (h) => h.sync.staleAnswers);
  counter('lainlet_hub_store_relists_total', 'times the hub listed the store (first load and after a lost watch)', (h) => h.sync.relists);
  counter('lainlet_hub_store_disconnects_total', 'times the store connection was lost', (h) => h.sync.disconnects);
  counter('lainlet_hub_store_watch_member_moves_total', 'times the store watch moved to another etcd member (the log says why)', (h) => h.sync.store.sourceMoves ?? 0);
  new client.Gauge({ name: 'lainlet_hub_store_watch_member', help: 'the etcd member the store watch runs on (1 for that member)', labelNames: ['member', 'member_id', 'url'], registers: [registry],
    collect() { this.reset(); const s = hub?.sync.store.source; if (s) this.set({ member: s.name, member_id: s.id, url: s.url }, 1); } });

  gauge('lainlet_hub_members', 'live hubs of the tier this hub sees in the registry (itself included when registered)', (h) => h.membership?.members.length ?? 0);
  counter('lainlet_hub_balance_moves_total', 'agents asked to move to a less loaded hub of the tier', (h) => h.membership?.balanceMoves ?? 0);
  counter('lainlet_hub_members_refresh_failures_total', 'rounds in which the hub registry could not be written or read', (h) => h.membership?.refreshFailures ?? 0);
  gauge('lainlet_hub_agents_moving', 'agents told to move (balance or shutdown) that have not left yet', (h) => h.server.movingCount);

  // Per worker thread (a hub with workers): what each serves, and how far behind the ring it is.
  const perWorker = (name: string, help: string, read: (p: NonNullable<Hub['pool']>, i: number) => number, kind: 'gauge' | 'counter' = 'gauge') => {
    const collect = function (this: client.Gauge) {
      this.reset();
      const pool = hub?.pool;
      if (pool) for (let i = 0; i < pool.workers; i++) this.set({ worker: String(i) }, read(pool, i));
    };
    if (kind === 'gauge') new client.Gauge({ name, help, labelNames: ['worker'], registers: [registry], collect });
    else new client.Counter({ name, help, labelNames: ['worker'], registers: [registry], collect(this: client.Counter) {
      this.reset();
      const pool = hub?.pool;
      if (pool) for (let i = 0; i < pool.workers; i++) this.inc({ worker: String(i) }, read(pool, i));
    } });
  };
  gauge('lainlet_hub_workers', 'WebSocket worker threads (0: agents are served on the main thread)', (h) => h.pool?.workers ?? 0);
  counter('lainlet_hub_ring_records_total', 'records written to the frame ring the workers read (deltas and state changes)', (h) => h.pool?.ringRecords ?? 0);
  counter('lainlet_hub_ring_oversize_total', 'deltas larger than the frame ring, sent to every agent as a snapshot instead', (h) => h.pool?.oversizeRecords ?? 0);
  perWorker('lainlet_hub_worker_agents_connected', 'agents connected to each worker thread', (p, i) => p.workerStats(i).gauges.agents);
  perWorker('lainlet_hub_worker_ring_lag_records', 'ring records published that the worker had not read when it last looked', (p, i) => p.workerStats(i).gauges.lag);
  perWorker('lainlet_hub_worker_ring_overruns_total', 'times the worker fell a whole ring behind and closed its agents (they resume)', (p, i) => p.workerStats(i).gauges.overruns, 'counter');
  perWorker('lainlet_hub_worker_restarts_total', 'times the worker thread exited and was started again', (p, i) => p.workerStats(i).restarts, 'counter');
  perWorker('lainlet_hub_worker_delta_frames_sent_total', 'delta frames each worker sent to its agents', (p, i) => p.workerStats(i).counters.deltasSentFrames, 'counter');
  perWorker('lainlet_hub_worker_bytes_sent_total', 'bytes of frames each worker sent to its agents', (p, i) => p.workerStats(i).counters.bytesSent, 'counter');

  return {
    contentType: registry.contentType,
    bind(h: Hub) { hub = h; },
    render: () => registry.metrics(),
  };
}
