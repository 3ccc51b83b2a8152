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
  counter('lainlet_hub_rejected_clients_total', 'clients refused for protocol errors', (h) => h.server.counters.rogueClients);
  counter('lainlet_hub_store_relists_total', 'times the hub listed the store (first load and after a lost watch)', (h) => h.sync.relists);
  counter('lainlet_hub_store_disconnects_total', 'times the store connection was lost', (h) => h.sync.disconnects);

  return {
    contentType: registry.contentType,
    bind(h: Hub) { hub = h; },
    render: () => registry.metrics(),
  };
}
