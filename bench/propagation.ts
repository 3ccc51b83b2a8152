// Measurement 2 — propagation latency: etcd write → event on a REAL agent's /v2 event stream,
// with 1 agent and with 100 and 1000 agents connected to the same hub (the extra ones simulated
// in a separate process with the agent's real HubClient + Cache + Indexes).
//
// Each write puts {"seq":n,"t":<CLOCK_MONOTONIC ms>} to LATENCY_KEY; the clock starts just
// before the etcd put is issued, so the numbers include etcd's commit. The put's own
// round-trip is reported beside them. Writes are paced (one at a time, GAP_MS apart) so this
// measures latency, not saturation (measurement 3 does that).
import { setTimeout as sleep } from 'node:timers/promises';
import { putAll, putOne } from '../testkit/etcd.js';
import { BENCH_LIB } from '../testkit/paths.js';
import { waitFor } from '../testkit/procs.js';
import { startEtcd } from './lib/etcd.js';
import { readProc } from './lib/proc-stats.js';
import { openEventStream } from './lib/event-stream.js';
import { readFixture } from './lib/fixtures.js';
import { startRemote } from './lib/ipc.js';
import { startAgent, startHub, waitSynced } from './lib/lainlet.js';
import { ms, table, type BenchContext, type Measurement, type SectionResult } from './lib/report.js';
import { LATENCY_KEY } from './lib/sim-agents.js';
import { monoMs, summarize, type Summary } from './lib/stats.js';
import { lineChart } from './lib/svg.js';

const GAP_MS = 25;
const WARMUP = 20;
const TARGET_KEY = LATENCY_KEY.replace('/lain/config/', '');

interface Row {
  agents: number;
  writes: number;
  real: Summary;
  put: Summary;
  /** Simulated agents: every delivery, and the last of them per write. */
  simDelivery?: Summary;
  simLastAgent?: Summary;
  simWritesComplete?: number;
  hubCpuShare: number;
  lost: number;
}

interface SimReport { deliveries: number; perDelivery: Summary; writesSeen: number; writesComplete: number; lastAgentPerWrite: Summary }

export const propagation: Measurement = {
  name: 'propagation',
  title: 'propagation latency',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const writes = ctx.quick ? 100 : 500;
    const counts = [1, 100, 1000];
    const etcd = await startEtcd();
    const sim = startRemote('sim-agents', `${BENCH_LIB}sim-agents.js`, { nodeArgs: ['--max-old-space-size=8192'] });
    const rows: Row[] = [];
    let seq = 0;
    try {
      await putAll(etcd.client, { ...readFixture('cluster-small'), [LATENCY_KEY]: JSON.stringify({ seq: 0, t: 0 }) });
      const hub = await startHub(['--etcd', etcd.endpoint]);
      const agent = await startAgent([hub.url]);
      await waitSynced(agent);
      const stream = await openEventStream(`${agent.base}/v2/configwatcher?target=${TARGET_KEY}&watch=1`);
      if (stream.status !== 200) throw new Error(`event stream answered ${stream.status}`);
      let simCount = 0;
      for (const n of counts) {
        if (n - 1 > simCount) {
          await sim.call('add', { n: n - 1 - simCount, hubs: [hub.url], indexes: true });
          simCount = n - 1;
          await waitFor(async () => (await sim.call<{ live: number }>('status')).live === simCount, { timeoutMs: 120_000, intervalMs: 50, message: `${simCount} simulated agents live` });
          await sleep(500);
        }
        const real: number[] = [];
        const put: number[] = [];
        let lost = 0;
        const cpu0 = readProc(hub.proc.pid);
        const wall0 = monoMs();
        for (let i = 0; i < WARMUP + writes; i++) {
          if (i === WARMUP) await sim.call('latencyReset');
          const mySeq = ++seq;
          const arrived = stream.next((e) => e.event === 'update' && e.data.includes(`"seq\\":${mySeq},`), 5000);
          const t0 = monoMs();
          await putOne(etcd.client, LATENCY_KEY, JSON.stringify({ seq: mySeq, t: t0 }));
          const acked = monoMs();
          try {
            const ev = await arrived;
            if (i >= WARMUP) { real.push(ev.at - t0); put.push(acked - t0); }
          } catch {
            if (i >= WARMUP) lost++;
          }
          await sleep(GAP_MS);
        }
        const hubCpuShare = (readProc(hub.proc.pid).cpuMs - cpu0.cpuMs) / (monoMs() - wall0);
        const row: Row = { agents: n, writes, real: summarize(real), put: summarize(put), hubCpuShare, lost };
        if (simCount > 0) {
          // Give the simulated agents a moment to apply the last writes.
          await waitFor(async () => (await sim.call<SimReport>('latencyReport', { agents: simCount })).writesComplete >= writes, { timeoutMs: 30_000, intervalMs: 100, message: 'simulated agents to apply every write' }).catch(() => {});
          const rep = await sim.call<SimReport>('latencyReport', { agents: simCount });
          row.simDelivery = rep.perDelivery;
          row.simLastAgent = rep.lastAgentPerWrite;
          row.simWritesComplete = rep.writesComplete;
        }
        ctx.log(`  ${n} agent(s): real agent p50 ${row.real.p50.toFixed(2)} ms, p99 ${row.real.p99.toFixed(2)} ms, max ${row.real.max.toFixed(2)} ms${row.simLastAgent ? `; last simulated agent p99 ${row.simLastAgent.p99.toFixed(1)} ms` : ''}`);
        rows.push(row);
      }
      stream.close();
    } finally {
      await sim.close();
      await etcd.stop();
    }

    const one = rows.find((r) => r.agents === 1)!;
    const thousand = rows.find((r) => r.agents === 1000)!;
    const met1 = one.real.p99 <= 10 && one.lost === 0;
    const met1000 = thousand.real.p99 <= 50 && thousand.lost === 0;
    const md = [
      `${writes} writes per agent count (after ${WARMUP} warm-up writes), one at a time, ${GAP_MS} ms apart, to \`${LATENCY_KEY}\`; the REAL agent process (\`dist/agent/main.js\`) serves \`/v2/configwatcher?target=${TARGET_KEY}&watch=1\` and the benchmark times each \`update\` event's arrival. Clock: CLOCK_MONOTONIC, started just before the etcd put is sent (so etcd's commit is included; its put round-trip is shown separately). The other agents are simulated in one process (HubClient + Cache + Indexes, real WebSockets to the same hub); their own delivery latency is measured the same way.`,
      '',
      table(
        ['agents connected', 'real agent p50', 'p99', 'max', 'lost', 'etcd put round-trip p50 / p99', 'simulated agents: every delivery p50 / p99', 'last of all agents per write p50 / p99 / max', 'hub CPU'],
        rows.map((r) => [
          r.agents, ms(r.real.p50), ms(r.real.p99), ms(r.real.max), r.lost,
          `${ms(r.put.p50)} / ${ms(r.put.p99)}`,
          r.simDelivery ? `${ms(r.simDelivery.p50)} / ${ms(r.simDelivery.p99)}` : '–',
          r.simLastAgent ? `${ms(r.simLastAgent.p50)} / ${ms(r.simLastAgent.p99)} / ${ms(r.simLastAgent.max)}` : '–',
          `${Math.round(r.hubCpuShare * 100)}%`,
        ]),
      ),
      '',
      'The simulated agents decode and apply every delta (msgpack → Cache → Indexes) for up to 999 agents in ONE Node process, on the same cores as the hub, etcd and the real agent; their "last of all agents" column is therefore the time for one process to work through 999 agents\' worth of deltas, an upper bound for real nodes that each do one.',
    ].join('\n');
    const chart = lineChart({
      title: 'Propagation latency: etcd write → agent event stream',
      xLabel: 'agents connected to the hub',
      yLabel: 'ms',
      xLog: true,
      yLog: true,
      xTicks: counts,
      refLines: [{ value: 10, label: 'target p99, 1 agent (10 ms)' }, { value: 50, label: 'target p99, 1000 agents (50 ms)' }],
      series: [
        { name: 'real agent p50', points: rows.map((r) => [r.agents, r.real.p50]) },
        { name: 'real agent p99', points: rows.map((r) => [r.agents, r.real.p99]) },
        { name: 'real agent max', points: rows.map((r) => [r.agents, r.real.max]) },
        { name: 'last sim. agent p99', points: rows.filter((r) => r.simLastAgent).map((r) => [r.agents, r.simLastAgent!.p99]), dashed: true },
      ],
    });
    const limitNote = (r: Row) => `p99 ${ms(r.real.p99)} vs target; etcd put round-trip p99 ${ms(r.put.p99)}, hub CPU ${Math.round(r.hubCpuShare * 100)}%`;
    return {
      markdown: md,
      targets: [
        { target: 'propagation p99 ≤ 10 ms with one agent', measured: `p99 ${ms(one.real.p99)} (p50 ${ms(one.real.p50)}, max ${ms(one.real.max)}, ${one.lost} lost)`, met: met1, note: met1 ? undefined : `missed by ${ms(one.real.p99 - 10)}: ${limitNote(one)}` },
        { target: 'propagation p99 ≤ 50 ms with 1000 agents', measured: `p99 ${ms(thousand.real.p99)} at the real agent (p50 ${ms(thousand.real.p50)}, max ${ms(thousand.real.max)}); last of all 1000 agents p99 ${ms(thousand.simLastAgent?.p99 ?? NaN)}`, met: met1000, note: met1000 ? undefined : `missed by ${ms(thousand.real.p99 - 50)}: ${limitNote(thousand)}` },
      ],
      charts: [{ file: 'propagation-latency.svg', svg: chart, caption: 'propagation latency percentiles vs agents connected (log–log), with the targets' }],
      data: rows,
    };
  },
};
