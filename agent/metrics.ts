// The agent's /metrics (Prometheus text format, prom-client). The hot path — one count per
// request — bumps a plain Map entry; prom-client itself is loaded on the first scrape, so an
// agent that is never scraped does not pay its start-up time and memory.
import type { Cache } from './cache.js';
import type { HubClient } from './client.js';
import type { StatePersister } from './persist.js';
import type { StreamHub } from './streams.js';
import { registerGrpcMetrics } from './grpc/metrics.js';
import type { GrpcStats } from './grpc/server.js';

export interface AgentMetricsSource {
  cache: Cache;
  client: HubClient;
  streams: StreamHub;
  isStale: () => boolean;
  /** Absent without -state-dir. */
  persister?: StatePersister;
  /** Absent without -grpc.addr. */
  grpc?: GrpcStats;
}

type Rendered = { contentType: string; render(): Promise<string> };

export class AgentMetrics {
  /** path → status → requests answered. */
  private readonly requests = new Map<string, Map<number, number>>();
  private registry?: Promise<Rendered>;

  constructor(private readonly src: AgentMetricsSource) {}

  readonly request = (path: string, status: number): void => {
    let byStatus = this.requests.get(path);
    if (!byStatus) this.requests.set(path, (byStatus = new Map<number, number>()));
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
  };

  async scrape(): Promise<{ contentType: string; body: string }> {
    this.registry ??= this.build();
    const registry = await this.registry;
    return { contentType: registry.contentType, body: await registry.render() };
  }

  private async build(): Promise<Rendered> {
    const { default: client } = await import('prom-client');
    const { src, requests } = this;
    const registry = new client.Registry();
    client.collectDefaultMetrics({ register: registry, prefix: 'lainlet_agent_' });
    new client.Counter({
      name: 'lainlet_agent_requests_total', help: 'HTTP requests by endpoint and status', labelNames: ['path', 'status'], registers: [registry],
      collect() {
        this.reset();
        for (const [path, byStatus] of requests) {
          for (const [status, n] of byStatus) this.inc({ path, status: String(status) }, n);
        }
      },
    });
    new client.Gauge({ name: 'lainlet_agent_streams_open', help: 'open event streams', registers: [registry], collect() { this.set(src.streams.stats.open); } });
    new client.Counter({ name: 'lainlet_agent_stream_events_total', help: 'events written to event streams (heartbeats aside)', registers: [registry], collect() { this.reset(); this.inc(src.streams.stats.eventsSent); } });
    new client.Counter({ name: 'lainlet_agent_streams_closed_slow_total', help: 'streams closed because their client did not read', registers: [registry], collect() { this.reset(); this.inc(src.streams.stats.closedSlow); } });
    new client.Gauge({ name: 'lainlet_agent_revision', help: 'revision of the agent state', registers: [registry], collect() { this.set(src.cache.revision); } });
    new client.Gauge({ name: 'lainlet_agent_stale', help: '1 while the agent is not in sync with a live hub', registers: [registry], collect() { this.set(src.isStale() ? 1 : 0); } });
    new client.Gauge({ name: 'lainlet_agent_last_hub_frame_age_seconds', help: 'seconds since the last frame from a hub (-1: none yet)', registers: [registry], collect() { this.set(src.client.status.lastFrameAt ? (Date.now() - src.client.status.lastFrameAt) / 1000 : -1); } });
    new client.Counter({ name: 'lainlet_agent_hub_reconnects_total', help: 'times the hub connection was lost', registers: [registry], collect() { this.reset(); this.inc(src.client.status.reconnects); } });
    new client.Counter({ name: 'lainlet_agent_snapshots_total', help: 'full snapshots received from hubs', registers: [registry], collect() { this.reset(); this.inc(src.client.status.snapshots); } });
    new client.Counter({ name: 'lainlet_agent_state_file_errors_total', help: 'state file saves that failed (the previous file was kept)', registers: [registry], collect() { this.reset(); this.inc(src.persister?.saveErrors ?? 0); } });
    if (src.grpc) registerGrpcMetrics(client, registry, src.grpc);
    return { contentType: registry.contentType, render: () => registry.metrics() };
  }
}
