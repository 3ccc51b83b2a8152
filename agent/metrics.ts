// The agent's /metrics (Prometheus text format, prom-client).
import client from 'prom-client';
import type { Cache } from './cache.js';
import type { HubClient } from './client.js';
import type { StreamHub } from './streams.js';

export function agentMetrics(src: { cache: Cache; client: HubClient; streams: StreamHub; isStale: () => boolean }) {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'lainlet_agent_' });
  const requests = new client.Counter({ name: 'lainlet_agent_requests_total', help: 'HTTP requests by endpoint and status', labelNames: ['path', 'status'], registers: [registry] });
  new client.Gauge({ name: 'lainlet_agent_streams_open', help: 'open event streams', registers: [registry], collect() { this.set(src.streams.stats.open); } });
  new client.Counter({ name: 'lainlet_agent_stream_events_total', help: 'events written to event streams', registers: [registry], collect() { this.reset(); this.inc(src.streams.stats.eventsSent); } });
  new client.Counter({ name: 'lainlet_agent_streams_closed_slow_total', help: 'streams closed because their client did not read', registers: [registry], collect() { this.reset(); this.inc(src.streams.stats.closedSlow); } });
  new client.Gauge({ name: 'lainlet_agent_revision', help: 'revision of the agent state', registers: [registry], collect() { this.set(src.cache.revision); } });
  new client.Gauge({ name: 'lainlet_agent_stale', help: '1 while the agent is not in sync with a live hub', registers: [registry], collect() { this.set(src.isStale() ? 1 : 0); } });
  new client.Gauge({ name: 'lainlet_agent_last_hub_frame_age_seconds', help: 'seconds since the last frame from a hub', registers: [registry], collect() { this.set(src.client.status.lastFrameAt ? (Date.now() - src.client.status.lastFrameAt) / 1000 : -1); } });
  new client.Counter({ name: 'lainlet_agent_hub_reconnects_total', help: 'times the hub connection was lost', registers: [registry], collect() { this.reset(); this.inc(src.client.status.reconnects); } });
  new client.Counter({ name: 'lainlet_agent_snapshots_total', help: 'full snapshots received from hubs', registers: [registry], collect() { this.reset(); this.inc(src.client.status.snapshots); } });
  return {
    contentType: registry.contentType,
    render: () => registry.metrics(),
    request: (path: string, status: number) => requests.inc({ path, status: String(status) }),
  };
}
