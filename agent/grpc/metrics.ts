// The gRPC mirror's metrics, beside the HTTP ones on the agent's /metrics (agent/metrics.ts
// calls this when -grpc.addr is set). Read from GrpcStats at scrape time: the call path only
// bumps plain counters.
import type PromClient from 'prom-client';
import type { GrpcStats } from './server.js';

export function registerGrpcMetrics(client: typeof PromClient, registry: PromClient.Registry, stats: GrpcStats): void {
  new client.Counter({
    name: 'lainlet_agent_grpc_calls_total', help: 'gRPC calls ended, by method and status code', labelNames: ['method', 'code'], registers: [registry],
    collect() {
      this.reset();
      for (const [method, byCode] of stats.calls) for (const [code, n] of byCode) this.inc({ method, code }, n);
    },
  });
  new client.Gauge({ name: 'lainlet_agent_grpc_streams_open', help: 'open gRPC Watch streams', registers: [registry], collect() { this.set(stats.open); } });
  new client.Counter({ name: 'lainlet_agent_grpc_stream_replies_total', help: 'replies written to gRPC Watch streams', registers: [registry], collect() { this.reset(); this.inc(stats.repliesSent); } });
  new client.Counter({ name: 'lainlet_agent_grpc_streams_closed_slow_total', help: 'gRPC Watch streams reset because their client did not read', registers: [registry], collect() { this.reset(); this.inc(stats.closedSlow); } });
}
