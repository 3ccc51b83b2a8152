// Measurement 3 — hub fan-out capacity: how many deltas per second, times how many agents, ONE
// hub process (one thread: uWebSockets.js and the state live on the main thread) sustains
// before latency degrades, and how many bytes a delta costs on the wire.
//
// Load: A sinks (raw WebSocket clients that only count bytes) + 2 probes (full clients that
// decode and time each delta), all in one separate process; the benchmark writes to etcd at a
// rising rate. A step counts as degraded when the probes' p99 exceeds 50 ms (the 1000-agent
// propagation target), a delta never arrives, or the hub drops an agent as too slow.
import type { Etcd3 } from 'etcd3';
import { setTimeout as sleep } from 'node:timers/promises';
import { currentRevision, putAll } from '../testkit/etcd.js';
import { metricValue } from '../testkit/metrics.js';
import { BENCH_LIB } from '../testkit/paths.js';
import { waitFor } from '../testkit/procs.js';
import { startEtcd } from './lib/etcd.js';
import { machineBusy, readMachineCpu, readProc } from './lib/proc-stats.js';
import { readFixture } from './lib/fixtures.js';
import { startRemote, type Remote } from './lib/ipc.js';
import { hubMetrics, startHub, type HubProc } from './lib/lainlet.js';
import { ms, table, type BenchContext, type Measurement, type SectionResult } from './lib/report.js';
import { fmtBytes, monoMs, summarize, type Summary } from './lib/stats.js';
import { lineChart } from './lib/svg.js';

const SMALL_KEY = '/lain/config/bench/fanout';
const PG_KEY = '/lain/deployd/pod_groups/hello/hello.web.web';
const DEGRADED_P99_MS = 50;
const MAX_IN_FLIGHT = 512;
const PROBES = 2;

interface Step {
  kind: 'small' | 'podgroup';
  agents: number;
  offered: number;
  /** Puts acknowledged per second. */
  written: number;
  latency: Summary;
  put: Summary;
  missing: number;
  framesPerSec: number;
  bytesPerSec: number;
  hubCpu: number;
  loadCpu: number;
  etcdCpu: number;
  /** The benchmark process itself (the etcd writer). */
  writerCpu: number;
  /** All cores, 0..1. */
  machineBusy: number;
  slowDisconnects: number;
  degraded: string;
}

interface ProbeReport { latency: Summary; deliveries: number; distinctSeqs: number; frameBytes: Summary }

/** Puts `valueOf(seq)` at `rate` per second for `durationMs`, at most MAX_IN_FLIGHT at once. */
async function writeAtRate(client: Etcd3, key: string, rate: number, durationMs: number, firstSeq: number, valueOf: (seq: number, t: number) => string) {
  const put: number[] = [];
  let issued = 0, inFlight = 0, errors = 0;
  const start = monoMs();
  const pending = new Set<Promise<void>>();
  for (;;) {
    const elapsed = monoMs() - start;
    if (elapsed >= durationMs) break;
    const due = Math.floor((elapsed * rate) / 1000);
    while (issued < due && inFlight < MAX_IN_FLIGHT) {
      const seq = firstSeq + issued++;
      const t = monoMs();
      inFlight++;
      const p = client.put(key).value(valueOf(seq, t)).exec().then(() => { put.push(monoMs() - t); }, () => { errors++; })
        .finally(() => { inFlight--; pending.delete(p); });
      pending.add(p);
    }
    await sleep(1);
  }
  await Promise.all([...pending]);
  return { issued, acked: put.length, errors, put: summarize(put), seconds: (monoMs() - start) / 1000 };
}

async function hubCounters(hub: HubProc) {
  const text = await hubMetrics(hub.port);
  return {
    frames: metricValue(text, 'lainlet_hub_delta_frames_sent_total'),
    bytes: metricValue(text, 'lainlet_hub_bytes_sent_total'),
    slow: metricValue(text, 'lainlet_hub_slow_agent_disconnects_total'),
  };
}

export async function ramp(ctx: BenchContext, kind: 'small' | 'podgroup', agents: number, rates: number[], template: string): Promise<{ steps: Step[]; frameBytes: Summary }> {
  const etcd = await startEtcd();
  let load: Remote | undefined;
  let probe: Remote | undefined;
  try {
    await putAll(etcd.client, readFixture('cluster-small'));
    const hub = await startHub(['--etcd', etcd.endpoint]);
    // Sinks and probes in separate processes: a probe must not wait behind a thousand sink reads.
    load = startRemote('fanout-sinks', `${BENCH_LIB}fanout-load.js`);
    probe = startRemote('fanout-probes', `${BENCH_LIB}fanout-load.js`);
    const rev = await currentRevision(etcd.client);
    await load.call('open', { port: hub.port, sinks: agents - PROBES, probes: 0, rev });
    await probe.call('open', { port: hub.port, sinks: 0, probes: PROBES, rev });
    await waitFor(async () => metricValue(await hubMetrics(hub.port), 'lainlet_hub_agents_connected') === agents, { timeoutMs: 60_000, message: `${agents} connections on the hub` });
    const key = kind === 'small' ? SMALL_KEY : PG_KEY;
    // The pod-group value stays a valid pod group: the marker goes in its LastError field.
    const valueOf = kind === 'small'
      ? (seq: number, t: number) => `bench:${seq}:${t.toFixed(3)}`
      : (seq: number, t: number) => template.replace(/"LastError":"[^"]*"/, `"LastError":"bench:${seq}:${t.toFixed(3)}"`);
    const durationMs = ctx.quick ? 1500 : 3000;
    const steps: Step[] = [];
    let seq = 1;
    let frameBytes: Summary | undefined;
    // Warm-up (not recorded): JIT, first sends on fresh sockets.
    seq += (await writeAtRate(etcd.client, key, rates[0], 1000, seq, valueOf)).issued;
    await sleep(300);
    for (const rate of rates) {
      await probe.call('reset');
      const c0 = await hubCounters(hub);
      const cpu0 = [readProc(hub.proc.pid), readProc(load.proc.pid), readProc(etcd.proc.pid), readProc(process.pid)];
      const m0 = readMachineCpu();
      const t0 = monoMs();
      const w = await writeAtRate(etcd.client, key, rate, durationMs, seq, valueOf);
      seq += w.issued;
      // Let the last deltas arrive (bounded: a hub that fell far behind is degraded anyway).
      await waitFor(async () => (await probe!.call<ProbeReport>('report')).distinctSeqs >= w.acked, { timeoutMs: 3000, intervalMs: 20 }).catch(() => {});
      const wall = monoMs() - t0;
      const cpu1 = [readProc(hub.proc.pid), readProc(load.proc.pid), readProc(etcd.proc.pid), readProc(process.pid)];
      const m1 = readMachineCpu();
      const c1 = await hubCounters(hub);
      const rep = await probe.call<ProbeReport>('report');
      frameBytes ??= rep.frameBytes;
      const missing = w.acked - rep.distinctSeqs;
      const slow = c1.slow - c0.slow;
      const reasons: string[] = [];
      if (rep.latency.p99 > DEGRADED_P99_MS) reasons.push(`p99 ${ms(rep.latency.p99)} > ${DEGRADED_P99_MS} ms`);
      if (missing > 0) reasons.push(`${missing} deltas not delivered within 3 s`);
      if (slow > 0) reasons.push(`${slow} agents dropped as too slow`);
      const step: Step = {
        kind, agents, offered: rate, written: w.acked / w.seconds,
        latency: rep.latency, put: w.put, missing,
        framesPerSec: (c1.frames - c0.frames) / (wall / 1000),
        bytesPerSec: (c1.bytes - c0.bytes) / (wall / 1000),
        hubCpu: (cpu1[0].cpuMs - cpu0[0].cpuMs) / wall,
        loadCpu: (cpu1[1].cpuMs - cpu0[1].cpuMs) / wall,
        etcdCpu: (cpu1[2].cpuMs - cpu0[2].cpuMs) / wall,
        writerCpu: (cpu1[3].cpuMs - cpu0[3].cpuMs) / wall,
        machineBusy: machineBusy(m0, m1),
        slowDisconnects: slow,
        degraded: reasons.join('; '),
      };
      ctx.log(`  ${kind} deltas, ${agents} agents, ${rate}/s offered: ${step.written.toFixed(0)}/s written, p50 ${rep.latency.p50.toFixed(1)} ms, p99 ${rep.latency.p99.toFixed(1)} ms, put p99 ${w.put.p99.toFixed(1)} ms, CPU hub ${(step.hubCpu * 100).toFixed(0)}% sinks ${(step.loadCpu * 100).toFixed(0)}% etcd ${(step.etcdCpu * 100).toFixed(0)}% writer ${(step.writerCpu * 100).toFixed(0)}% machine ${(step.machineBusy * 100).toFixed(0)}%${step.degraded ? ` — DEGRADED: ${step.degraded}` : ''}`);
      steps.push(step);
      // One bad step can be noise on a shared machine; two in a row end the ramp.
      if (step.degraded && steps.at(-2)?.degraded) break;
      await sleep(300);
    }
    return { steps, frameBytes: frameBytes! };
  } finally {
    await probe?.close();
    await load?.close();
    await etcd.stop();
  }
}

/** The highest step below the first two degraded steps in a row that was not itself degraded. */
/** Which resource ran out at a degraded step, from the CPU readings of that step. */
function limitOf(s: Step): string {
  if (s.writerCpu >= 0.9) return `the benchmark's etcd writer was saturated (${Math.round(s.writerCpu * 100)}% of a core; hub ${Math.round(s.hubCpu * 100)}%)`;
  if (s.hubCpu >= 0.9) return `the hub's core was saturated (${Math.round(s.hubCpu * 100)}%)`;
  if (s.machineBusy >= 0.95) return `all cores busy (machine ${Math.round(s.machineBusy * 100)}%: hub ${Math.round(s.hubCpu * 100)}%, sinks ${Math.round(s.loadCpu * 100)}%, etcd ${Math.round(s.etcdCpu * 100)}%, writer ${Math.round(s.writerCpu * 100)}%)`;
  return `no single process saturated (hub ${Math.round(s.hubCpu * 100)}%, machine ${Math.round(s.machineBusy * 100)}%)`;
}

function sustained(steps: Step[]): Step | undefined {
  let best: Step | undefined;
  for (let i = 0; i < steps.length; i++) {
    if (steps[i].degraded && steps[i + 1]?.degraded) break;
    if (!steps[i].degraded) best = steps[i];
  }
  return best;
}

export const fanout: Measurement = {
  name: 'fanout',
  title: 'hub fan-out capacity',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const template = readFixture('cluster-small')[PG_KEY];
    const smallRates = ctx.quick ? [100, 250, 500, 1000, 2000] : [100, 250, 500, 1000, 2000, 3000, 4000, 6000];
    const pgRates = ctx.quick ? [10, 25, 50, 100] : [10, 25, 50, 100, 200, 400];
    const runs: Array<{ kind: 'small' | 'podgroup'; agents: number; steps: Step[]; frameBytes: Summary }> = [];
    for (const agents of ctx.quick ? [1000] : [100, 1000]) {
      runs.push({ kind: 'small', agents, ...await ramp(ctx, 'small', agents, smallRates, template) });
    }
    runs.push({ kind: 'podgroup', agents: 1000, ...await ramp(ctx, 'podgroup', 1000, pgRates, template) });

    const label = (k: string) => (k === 'small' ? 'config-key delta' : 'pod-group delta');
    const rows = runs.flatMap((r) => r.steps.map((s) => [
      label(s.kind), s.agents, s.offered, Math.round(s.written), Math.round(s.framesPerSec).toLocaleString('en-US'), `${fmtBytes(s.bytesPerSec)}/s`,
      ms(s.latency.p50), ms(s.latency.p99), ms(s.latency.max), ms(s.put.p99),
      `${Math.round(s.hubCpu * 100)}%`, `${Math.round(s.loadCpu * 100)}%`, `${Math.round(s.etcdCpu * 100)}%`, `${Math.round(s.writerCpu * 100)}%`, `${Math.round(s.machineBusy * 100)}%`, s.degraded || 'no',
    ]));
    const summaryRows = runs.map((r) => {
      const ok = sustained(r.steps);
      const perFrameUs = ok && ok.framesPerSec > 0 ? (ok.hubCpu * 1e6) / ok.framesPerSec : NaN;
      const first = r.steps.find((s, i) => s.degraded && r.steps[i + 1]?.degraded) ?? r.steps.find((s) => s.degraded);
      return {
        r, ok, perFrameUs,
        cells: [
          label(r.kind), r.agents,
          ok ? `${Math.round(ok.written)}/s` : 'none',
          ok ? Math.round(ok.written * r.agents).toLocaleString('en-US') : '–',
          ok ? `${fmtBytes(ok.bytesPerSec)}/s` : '–',
          ok ? `${Math.round(ok.hubCpu * 100)}%` : '–',
          Number.isFinite(perFrameUs) ? `${perFrameUs.toFixed(2)} µs → ~${Math.round(1e6 / perFrameUs).toLocaleString('en-US')} frames/s` : '–',
          first ? `${first.offered}/s: ${first.degraded}` : `not reached (≤ ${r.steps.at(-1)?.offered}/s offered)`,
          first ? limitOf(first) : '–',
          `${Math.round(r.frameBytes.p50)} B`,
        ],
      };
    });
    const md = [
      `One hub process (\`dist/hub/main.js\`) on a real etcd; A agents = A − ${PROBES} sinks (raw WebSocket clients counting bytes) + ${PROBES} probes (full clients decoding every frame, connected last), all in one load process. The benchmark writes one key per etcd revision at each offered rate for ${ctx.quick ? 1.5 : 3} s; latency is from just before the etcd put to the probe decoding the delta. A step is **degraded** when the probes' p99 exceeds ${DEGRADED_P99_MS} ms, a delta does not arrive within 3 s, or the hub drops an agent as too slow; the ramp stops after two degraded steps in a row (one alone can be noise on a shared machine), and "sustained" is the highest rate below them that was not degraded.`,
      '',
      '**Capacity (highest rate before degradation)**',
      '',
      table(['delta', 'agents', 'deltas/s sustained', '× agents = frames/s', 'wire bytes/s', 'hub CPU there', 'hub CPU per frame → frames/s on one full core (extrapolated)', 'first degraded step', 'what ran out there', 'bytes per delta on the wire'], summaryRows.map((s) => s.cells)),
      '',
      `Bytes per delta on the wire = the WebSocket payload (the msgpack delta frame, encoded once and shared by every agent) + its WebSocket header, as received by the probes, for a put of \`${SMALL_KEY}\` with a ~35-byte value (config-key delta) and of \`${PG_KEY}\` (a ${fmtBytes(template.length)} pod group: the typical delta deployd writes). TCP/IP headers not included.`,
      '',
      '**Every step**',
      '',
      table(['delta', 'agents', 'offered /s', 'written /s', 'frames sent /s', 'wire bytes /s', 'p50', 'p99', 'max', 'etcd put p99', 'hub CPU', 'sinks CPU', 'etcd CPU', 'writer CPU', 'machine busy (all cores)', 'degraded'], rows),
      '',
      'CPU columns are shares of one core (from /proc, user + system); "machine busy" is the share of ALL cores in use (/proc/stat). The hub, the sinks, etcd and the benchmark\'s own etcd writer share the machine, so a step can degrade because the machine ran out of cores before the hub did: when "machine busy" is near 100% and the hub\'s CPU is well under 100%, the hub was not the limit. "hub CPU per frame" divides the hub\'s CPU time by the frames it sent at the sustained step; its inverse is the fan-out one fully used core could do if nothing else competed for it (an extrapolation, labelled as such).',
    ].join('\n');
    const chart = lineChart({
      title: 'Fan-out: probe p99 latency vs offered delta rate',
      xLabel: 'deltas per second (one etcd revision each)',
      yLabel: 'p99 ms (write → probe)',
      xLog: true,
      yLog: true,
      refLines: [{ value: DEGRADED_P99_MS, label: `degraded above ${DEGRADED_P99_MS} ms` }],
      series: runs.map((r) => ({ name: `${label(r.kind).replace(' delta', '')}, ${r.agents} agents`, points: r.steps.map((s) => [s.offered, s.latency.p99] as [number, number]) })),
    });
    const best = summaryRows.find((s) => s.r.kind === 'small' && s.r.agents === 1000);
    return {
      markdown: md,
      targets: [],
      charts: [{ file: 'fanout-latency.svg', svg: chart, caption: 'fan-out: p99 latency at the probes vs offered delta rate, per delta size and agent count (log–log)' }],
      data: { runs, capacity: summaryRows.map((s) => ({ kind: s.r.kind, agents: s.r.agents, sustained: s.ok, hubCpuPerFrameUs: s.perFrameUs })), headline: best?.cells },
    };
  },
};
