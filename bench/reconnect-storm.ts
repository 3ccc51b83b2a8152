// Measurement 6 — reconnect storm: a hub with 1000 agents connected is killed and started
// again on the same port while writes go on (before it dies, while it is down, and while the
// agents come back). The agents are simulated with the agent's real HubClient (full-jitter
// backoff from 200 ms, hello with their revision) + Cache + Indexes. Measured: time until every
// agent holds the latest revision, and what the hub sent them (its /metrics).
//
// Run twice: with the default --history-prefill (the restarted hub replays recent etcd
// revisions to refill its delta history, so resumes can be deltas) and with --history-prefill 0.
import type { Etcd3 } from 'etcd3';
import { setTimeout as sleep } from 'node:timers/promises';
import { putAll, putOne } from '../testkit/etcd.js';
import { metricValue } from '../testkit/metrics.js';
import { BENCH_LIB } from '../testkit/paths.js';
import { freePort } from '../testkit/ports.js';
import { waitFor } from '../testkit/procs.js';
import { startEtcd } from './lib/etcd.js';
import { readProc } from './lib/proc-stats.js';
import { readFixture } from './lib/fixtures.js';
import { startRemote, type Remote } from './lib/ipc.js';
import { hubHealthy, hubMetrics, startHub } from './lib/lainlet.js';
import { ms, table, type BenchContext, type Measurement, type SectionResult } from './lib/report.js';
import { fmtBytes, monoMs, type Summary } from './lib/stats.js';
import { lineChart } from './lib/svg.js';

const AGENTS = 1000;
const STORM_KEY = '/lain/config/bench/storm';
const FILLER_KEY = '/lain/config/bench/filler';
const PG_KEY = '/lain/deployd/pod_groups/hello/hello.web.web';

interface WaitResult { done: boolean; missing: number; perAgent?: Summary; times?: number[]; snapshots: number; reconnects: number; live: number }

interface Scenario {
  name: string;
  prefill: string;
  downMs: number;
  writesBefore: number;
  writesWhileDown: number;
  writesDuringStorm: number;
  hubReadyMs: number;
  allCurrentMs: number;
  perAgent: Summary;
  times: number[];
  snapshots: number;
  resumes: number;
  bytesSent: number;
  hubCpuMs: number;
  agentReconnects: number;
  missing: number;
}

async function writeSeries(client: Etcd3, n: number, gapMs: number, tag: string, pgTemplate: string): Promise<number> {
  let rev = 0;
  for (let i = 0; i < n; i++) {
    // Mostly config keys; every fifth write is a whole pod group (deployd's usual change).
    rev = i % 5 === 4
      ? await putOne(client, PG_KEY, pgTemplate.replace(/"LastError":"[^"]*"/, `"LastError":"${tag}-${i}"`))
      : await putOne(client, STORM_KEY, `${tag}-${i}`);
    if (gapMs) await sleep(gapMs);
  }
  return rev;
}

async function stormOnce(ctx: BenchContext, name: string, etcd: { client: Etcd3; endpoint: string }, sim: Remote, port: number, prefillArgs: string[], killHub: () => Promise<void>, pgTemplate: string): Promise<{ s: Scenario; hubKill: () => Promise<void> }> {
  const downMs = ctx.quick ? 1000 : 3000;
  const before = await sim.call<{ snapshots: number; reconnects: number }>('status');
  const writesBefore = 10, writesWhileDown = 20, writesDuringStorm = 10;
  const revBefore = await writeSeries(etcd.client, writesBefore, 20, `${name}-before`, pgTemplate);
  await sim.call('waitRevision', { rev: revBefore, since: monoMs(), timeoutMs: 30_000 });
  await killHub();
  const tKill = monoMs();
  await writeSeries(etcd.client, writesWhileDown, Math.max(0, downMs / writesWhileDown - 5), `${name}-down`, pgTemplate);
  await sleep(Math.max(0, downMs - (monoMs() - tKill)));
  const tStart = monoMs();
  const hub = await startHub(['--etcd', etcd.endpoint, ...prefillArgs], { port, wait: false });
  let hubReadyMs = NaN;
  const readyWatch = (async () => {
    while (Number.isNaN(hubReadyMs) && hub.proc.running && monoMs() - tStart < 60_000) {
      if (await hubHealthy(port)) hubReadyMs = monoMs() - tStart; else await sleep(10);
    }
  })();
  const lastRev = await writeSeries(etcd.client, writesDuringStorm, 50, `${name}-storm`, pgTemplate);
  const res = await sim.call<WaitResult>('waitRevision', { rev: lastRev, since: tStart, timeoutMs: 120_000 }, 130_000);
  await readyWatch;
  const m = await hubMetrics(port);
  const after = await sim.call<{ snapshots: number; reconnects: number }>('status');
  const s: Scenario = {
    name, prefill: prefillArgs.length ? prefillArgs.join(' ') : 'default (2000)', downMs,
    writesBefore, writesWhileDown, writesDuringStorm, hubReadyMs,
    allCurrentMs: res.perAgent?.max ?? NaN, perAgent: res.perAgent!, times: res.times ?? [],
    snapshots: metricValue(m, 'lainlet_hub_snapshots_sent_total'),
    resumes: metricValue(m, 'lainlet_hub_resumes_total'),
    bytesSent: metricValue(m, 'lainlet_hub_bytes_sent_total'),
    hubCpuMs: readProc(hub.proc.pid).cpuMs,
    agentReconnects: after.reconnects - before.reconnects,
    missing: res.missing,
  };
  ctx.log(`  ${name}: hub ready after ${Math.round(hubReadyMs)} ms; all ${AGENTS} agents current after ${Math.round(s.allCurrentMs)} ms; ${s.snapshots} snapshots, ${s.resumes} resumes${res.done ? '' : ` — ${res.missing} agents NOT current`}`);
  return { s, hubKill: () => hub.proc.kill() };
}

export const reconnectStorm: Measurement = {
  name: 'reconnect-storm',
  title: 'reconnect storm',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const etcd = await startEtcd();
    const sim = startRemote('sim-agents', `${BENCH_LIB}sim-agents.js`, { nodeArgs: ['--max-old-space-size=8192'] });
    const scenarios: Scenario[] = [];
    const fixture = readFixture('cluster-small');
    const pgTemplate = fixture[PG_KEY];
    let fillerRevisions = 0;
    try {
      await putAll(etcd.client, fixture);
      // A production etcd has a long history: give this one more than --history-prefill revisions.
      fillerRevisions = ctx.quick ? 2200 : 3000;
      for (let i = 0; i < fillerRevisions; i += 50) {
        await Promise.all(Array.from({ length: Math.min(50, fillerRevisions - i) }, (_, j) => etcd.client.put(FILLER_KEY).value(String(i + j)).exec()));
      }
      const port = await freePort();
      const first = await startHub(['--etcd', etcd.endpoint], { port });
      await sim.call('add', { n: AGENTS, hubs: [first.url], indexes: true });
      await waitFor(async () => (await sim.call<{ live: number }>('status')).live === AGENTS, { timeoutMs: 120_000, intervalMs: 100, message: `${AGENTS} simulated agents live` });
      let kill = () => first.proc.kill();
      for (const [name, args] of [['default prefill', []], ['no prefill', ['--history-prefill', '0']]] as const) {
        const r = await stormOnce(ctx, name, etcd, sim, port, [...args], kill, pgTemplate);
        scenarios.push(r.s);
        kill = r.hubKill;
        await waitFor(async () => (await sim.call<{ live: number }>('status')).live === AGENTS, { timeoutMs: 60_000, intervalMs: 100, message: 'agents live again' });
      }
      await kill();
    } finally {
      await sim.close();
      await etcd.stop();
    }
    return report(scenarios, fillerRevisions);
  },
};

function report(sc: Scenario[], filler: number): SectionResult {
  const def = sc[0];
  const md = [
    `${AGENTS} simulated agents (the agent's HubClient with its real backoff and resume, + Cache + Indexes, one process) on one hub process; etcd holds the cluster-small fixture plus ${filler} earlier revisions. The hub is SIGKILLed, stays down for ${def.downMs} ms, and is started again on the same port. Writes: ${def.writesBefore} just before the kill (every agent applies them), ${def.writesWhileDown} while the hub is down, ${def.writesDuringStorm} while the agents come back (50 ms apart); every fifth write is a whole pod group, the rest a config key. Times are from the restart (the new hub process being spawned).`,
    '',
    table(['hub restarted with', 'hub /healthz ok after', 'every agent current after', 'per agent p50 / p99', 'snapshots sent', 'resumes (deltas)', 'bytes sent', 'hub CPU (whole life)', 'agent reconnect attempts'],
      sc.map((s) => [s.prefill === 'default (2000)' ? '--history-prefill 2000 (default)' : s.prefill, ms(s.hubReadyMs), `**${ms(s.allCurrentMs)}**${s.missing ? ` (${s.missing} never)` : ''}`, `${ms(s.perAgent?.p50 ?? NaN)} / ${ms(s.perAgent?.p99 ?? NaN)}`, s.snapshots, s.resumes, fmtBytes(s.bytesSent), `${Math.round(s.hubCpuMs)} ms`, s.agentReconnects])),
    '',
    '"Current" = the agent holds the revision of the last write. Snapshots and resumes are the restarted hub\'s own counters (`lainlet_hub_snapshots_sent_total`, `lainlet_hub_resumes_total`). Reconnect attempts include the failed ones while the hub was down: each agent retries with full-jitter exponential backoff (200 ms doubling, capped at 30 s), so how long the last agent takes to come back is mostly its backoff draw, not the hub\'s work.',
  ].join('\n');
  const chart = lineChart({
    title: `Reconnect storm: agents current after a hub restart (${AGENTS} agents)`,
    xLabel: 'ms since the hub was restarted',
    yLabel: 'agents holding the latest revision',
    series: sc.map((s) => ({
      name: s.prefill === 'default (2000)' ? 'prefill 2000 (default)' : s.prefill,
      points: s.times.map((t, i) => [t, i + 1] as [number, number]).filter((_, i, a) => i % 10 === 9 || i === 0 || i === a.length - 1),
    })),
  });
  return {
    markdown: md,
    targets: [],
    charts: [{ file: 'reconnect-storm.svg', svg: chart, caption: 'agents holding the latest revision vs time since the hub restart' }],
    data: sc.map((s) => ({ ...s, times: undefined })),
  };
}
