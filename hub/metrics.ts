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
  counter('lainlet_hub_store_relists_total', 'times the hub listed the store (first load and after a lost watch)', (h) => h.sync.relists);
  counter('lainlet_hub_store_disconnects_total', 'times the store connection was lost', (h) => h.sync.disconnects);

  return {
    contentType: registry.contentType,
    bind(h: Hub) { hub = h; },
    render: () => registry.metrics(),
  };
}
