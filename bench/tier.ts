// Measurement — the hub tier balancing itself (hub/members.ts): 300 simulated agents (the
// agent's real HubClient, bench/lib/sim-agents.ts, in a separate process), all seeded with hub
// 1 only, on real hub processes with the default membership settings (registry every 2 s,
// lease 10 s, 25 moves per hub per round). Phases: 3 hubs; a 4th joins; one is SIGKILLed; hub 1
// (the only seed) is stopped for good. Sampled every 500 ms: agents per hub (the chart), the
// moves asked (lainlet_hub_balance_moves_total), snapshots and resumes the hubs sent.
import { setTimeout as sleep } from 'node:timers/promises';
import { putAll } from '../testkit/etcd.js';
import { metricValue } from '../testkit/metrics.js';
import { BENCH_LIB } from '../testkit/paths.js';
import { freePorts } from '../testkit/ports.js';
import { startEtcd } from './lib/etcd.js';
import { readFixture } from './lib/fixtures.js';
import { startRemote } from './lib/ipc.js';
import { hubMetrics, startHub, type HubProc } from './lib/lainlet.js';
import { ms, table, type BenchContext, type Measurement, type SectionResult } from './lib/report.js';
import { monoMs } from './lib/stats.js';
import { lineChart } from './lib/svg.js';

const AGENTS = 300;
const SAMPLE_MS = 500;

interface Phase { name: string; hubs: number; settledMs: number; within: number; moves: number; snapshots: number; resumes: number; resumeBytes: number; counts: number[] }

export const tier: Measurement = {
  name: 'tier',
  title: 'the hub tier balancing itself',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const etcd = await startEtcd();
    const sim = startRemote('sim-agents', `${BENCH_LIB}sim-agents.js`);
    const ports = await freePorts(4);
    const hubs: Array<HubProc | undefined> = [];
    const timeline: Array<{ t: number; counts: Array<number | undefined> }> = [];
    const phases: Phase[] = [];
    const t0 = monoMs();
    const metricsOf = async (h: HubProc) => { try { return await hubMetrics(h.port); } catch { return ''; } };
    const live = () => hubs.filter((h): h is HubProc => h !== undefined);
    const sample = async () => {
      const counts = await Promise.all(hubs.map(async (h) => (h ? metricValue(await metricsOf(h), 'lainlet_hub_agents_connected') : undefined)));
      timeline.push({ t: (monoMs() - t0) / 1000, counts });
      return counts;
    };
    const totals = async () => {
      let moves = 0, snapshots = 0, resumes = 0, bytes = 0;
      for (const h of live()) {
        const m = await metricsOf(h);
        moves += metricValue(m, 'lainlet_hub_balance_moves_total');
        snapshots += metricValue(m, 'lainlet_hub_snapshots_sent_total');
        resumes += metricValue(m, 'lainlet_hub_resumes_total');
        bytes += metricValue(m, 'lainlet_hub_bytes_sent_total');
      }
      return { moves, snapshots, resumes, bytes };
    };
    /** Samples until every live hub holds total/hubs ± within, for a few samples in a row. */
    const settle = async (name: string, within: number, counted: Awaited<ReturnType<typeof totals>>, dead: Awaited<ReturnType<typeof totals>> = { moves: 0, snapshots: 0, resumes: 0, bytes: 0 }) => {
      const start = monoMs();
      let calm = 0, counts: number[] = [];
      while (monoMs() - start < 90_000) {
        counts = (await sample()).filter((c): c is number => c !== undefined);
        const fair = AGENTS / counts.length;
        calm = counts.reduce((a, b) => a + b, 0) === AGENTS && counts.every((c) => Math.abs(c - fair) <= within) ? calm + 1 : 0;
        if (calm >= 3) break;
        await sleep(SAMPLE_MS);
      }
      const after = await totals();
      const phase: Phase = {
        name, hubs: counts.length, settledMs: calm >= 3 ? monoMs() - start - 2 * SAMPLE_MS : NaN, within,
        // A killed hub's counters die with it: what it had counted is added back (`dead`).
        moves: after.moves + dead.moves - counted.moves, snapshots: after.snapshots + dead.snapshots - counted.snapshots,
        resumes: after.resumes + dead.resumes - counted.resumes, resumeBytes: after.bytes + dead.bytes - counted.bytes, counts,
      };
      phases.push(phase);
      ctx.log(`  ${name}: ${counts.join('/')} after ${ms(phase.settledMs)}; ${phase.moves} moves, ${phase.snapshots} snapshots, ${phase.resumes} resumes`);
      return after;
    };
    const start = async (i: number) => { hubs[i] = await startHub(['--etcd', etcd.endpoint, '--workers', '1'], { port: ports[i] }); };
    try {
      await putAll(etcd.client, readFixture('cluster-small'));
      for (let i = 0; i < 3; i++) await start(i);
      let before = await totals();
      await sim.call('add', { n: AGENTS, hubs: [hubs[0]!.url], indexes: false });
      before = await settle('300 agents, all seeded with hub 1; 3 hubs', 10, { ...before, snapshots: before.snapshots + AGENTS });
      await start(3);
      before = await settle('a 4th hub joins', 8, before);
      const killed = await totals();
      const victim = await metricsOf(hubs[1]!);
      await hubs[1]!.proc.kill();
      hubs[1] = undefined;
      const victimTotals = { moves: metricValue(victim, 'lainlet_hub_balance_moves_total'), snapshots: metricValue(victim, 'lainlet_hub_snapshots_sent_total'), resumes: metricValue(victim, 'lainlet_hub_resumes_total'), bytes: metricValue(victim, 'lainlet_hub_bytes_sent_total') };
      before = await settle('hub 2 SIGKILLed', 10, killed, victimTotals);
      const seedTotals = await metricsOf(hubs[0]!);
      await hubs[0]!.proc.stop('SIGTERM', 30_000);
      hubs[0] = undefined;
      await settle('hub 1 (the only seed) stopped for good', 10, before, { moves: metricValue(seedTotals, 'lainlet_hub_balance_moves_total'), snapshots: metricValue(seedTotals, 'lainlet_hub_snapshots_sent_total'), resumes: metricValue(seedTotals, 'lainlet_hub_resumes_total'), bytes: metricValue(seedTotals, 'lainlet_hub_bytes_sent_total') });
      const simStatus = await sim.call<{ snapshots: number; reconnects: number; live: number }>('status');

      const moved = phases.reduce((n, p) => n + p.moves, 0);
      const balancingSeconds = phases.reduce((n, p) => n + (Number.isFinite(p.settledMs) ? p.settledMs : 0), 0) / 1000;
      const markdown = [
        `${AGENTS} simulated agents (the agent's HubClient, one WebSocket each, in a separate process), all given only hub 1; hub processes with the default membership settings (\`--members-refresh 2000\`, \`--members-ttl 10\`, 25 moves per hub per round), \`--workers 1\`. A phase is settled when every hub holds ${AGENTS}/hubs ± the slack for three samples in a row (500 ms apart).`,
        '',
        table(['phase', 'hubs', 'settled after', 'agents per hub then', 'moves asked', 'snapshots sent', 'resumes'],
          phases.map((p) => [p.name, p.hubs, ms(p.settledMs), p.counts.join(' / '), p.moves, p.snapshots, p.resumes])),
        '',
        `Moves asked in all: ${moved}, over ${balancingSeconds.toFixed(1)} s of balancing (${(moved / Math.max(balancingSeconds, 1e-9)).toFixed(1)} moves/s across the tier; each hub asks at most 25 per 2 s round). **The cost of a move**: a reconnect and a resume from the agent's revision — snapshots sent across the phases after the first syncs: ${phases.reduce((n, p) => n + p.snapshots, 0)} (the first phase's ${AGENTS} first-sync snapshots excluded); bytes the hubs sent per resume in the join phase (progress + the deltas since, no state): ${phases[1] && phases[1].resumes > 0 ? Math.round(phases[1].resumeBytes / phases[1].resumes) : '–'} B. Agents' own count at the end: ${simStatus.snapshots} snapshots for ${AGENTS} agents, ${simStatus.live} live, ${simStatus.reconnects} reconnects (a SIGKILLed hub's agents reconnect; moves are not reconnects).`,
      ].join('\n');
      const nHubs = 4;
      const series = Array.from({ length: nHubs }, (_, i) => ({
        name: `hub ${i + 1}`,
        points: timeline.filter((s) => s.counts[i] !== undefined).map((s) => [s.t, s.counts[i]!] as [number, number]),
      }));
      const svg = lineChart({ title: 'agents per hub: 3 hubs, a 4th joins, hub 2 killed, hub 1 leaves', xLabel: 'seconds', yLabel: 'agents', series });
      return {
        markdown,
        charts: [{ file: 'tier-agents-per-hub.svg', svg, caption: 'Agents per hub through join / kill / leave (every agent seeded with hub 1 only)' }],
        targets: [{
          target: 'hub tier: 300 agents seeded with one hub even out (100 ± 10 on 3 hubs, 75 ± 8 on 4), after a kill and after the seed leaves, each within 60 s, with no snapshot for a move',
          measured: phases.map((p) => `${p.name}: ${ms(p.settledMs)}`).join('; ') + `; snapshots after the first syncs: ${phases.reduce((n, p) => n + p.snapshots, 0)}`,
          met: phases.every((p) => Number.isFinite(p.settledMs) && p.settledMs <= 60_000) && phases.reduce((n, p) => n + p.snapshots, 0) === 0,
        }],
        data: { phases, timeline, simStatus },
      };
    } finally {
      await sim.call('stopAll').catch(() => {});
      await sim.close();
      for (const h of live()) await h.proc.kill();
      await etcd.stop();
    }
  },
};
