// Measurement 3 — hub fan-out capacity: how many deltas per second, times how many agents, ONE
// hub process (one thread, `--workers 0`: uWebSockets.js and the state live on the main
// thread; bench/workers.ts measures the worker threads with this file's rig and ramp) sustains
// before latency degrades, and how many bytes a delta costs on the wire.
//
// Load: A sinks (raw WebSocket clients that only count bytes) + 2 probes (full clients that
// decode and time each delta), all in one separate process; the benchmark writes to etcd at a
// rising rate. A step counts as degraded when the probes' p99 exceeds 50 ms (the 1000-agent
// propagation target), a delta never arrives, or the hub drops an agent as too slow.
import type { Etcd3 } from 'etcd3';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { currentRevision, putAll, type EtcdServer } from '../testkit/etcd.js';
import { metricValue } from '../testkit/metrics.js';
import { BENCH_LIB } from '../testkit/paths.js';
import { waitFor } from '../testkit/procs.js';
import { startEtcd } from './lib/etcd.js';
import { machineBusy, readMachineCpu, readProc, readThreads, type ThreadReading } from './lib/proc-stats.js';
import { readFixture } from './lib/fixtures.js';
import { startRemote, type Remote } from './lib/ipc.js';
import { hubMetrics, startHub, type HubProc } from './lib/lainlet.js';
import { ms, pct, table, type BenchContext, type Measurement, type SectionResult } from './lib/report.js';
import { fmtBytes, monoMs, summarize, type Summary } from './lib/stats.js';
import { lineChart } from './lib/svg.js';

export const SMALL_KEY = '/lain/config/bench/fanout';
export const PG_KEY = '/lain/deployd/pod_groups/hello/hello.web.web';
export const DEGRADED_P99_MS = 50;
const MAX_IN_FLIGHT = 512;
export const PROBES = 2;
const CORES = os.cpus().length;

/** CPU of the hub's threads over a step, shares of one core (a hub with worker threads). */
export interface ThreadShares { main: number; workers: number[]; other: number }

export interface Step {
  kind: 'small' | 'podgroup';
  agents: number;
  offered: number;
  /** Puts acknowledged per second. */
  written: number;
  latency: Summary;
  put: Summary;
  missing: number;
  framesPerSec: number;
  /** Deltas the hub published per second (one per etcd watch response: several puts can share one). */
  deltasPerSec: number;
  bytesPerSec: number;
  hubCpu: number;
  /** All the sinks' processes together. */
  loadCpu: number;
  /** The busiest sinks' process. */
  loadMax: number;
  /** The probes' process. */
  probeCpu: number;
  etcdCpu: number;
  /** The benchmark process itself (the etcd writer). */
  writerCpu: number;
  /** All cores, 0..1. */
  machineBusy: number;
  /** Processes not of this benchmark (machine busy × cores − the processes above), shares of one core. */
  othersCpu: number;
  slowDisconnects: number;
  /** Agents connected at the end of the step (hub gauge). */
  agentsAfter: number;
  /** The hub's threads, when the rig was given its worker threads' ids. */
  threads?: ThreadShares;
  degraded: string;
}

interface ProbeReport { latency: Summary; deliveries: number; distinctSeqs: number; frameBytes: Summary }

/** Puts `valueOf(seq)` at `rate` per second for `durationMs`, at most MAX_IN_FLIGHT at once. */
export async function writeAtRate(client: Etcd3, key: string, rate: number, durationMs: number, firstSeq: number, valueOf: (seq: number, t: number) => string) {
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

export async function hubCounters(hub: HubProc) {
  const text = await hubMetrics(hub.port);
  return {
    agents: metricValue(text, 'lainlet_hub_agents_connected'),
    frames: metricValue(text, 'lainlet_hub_delta_frames_sent_total'),
    /** Deltas the hub published (a watch response with several revisions becomes one delta). */
    deltas: metricValue(text, 'lainlet_hub_deltas_total'),
    bytes: metricValue(text, 'lainlet_hub_bytes_sent_total'),
    slow: metricValue(text, 'lainlet_hub_slow_agent_disconnects_total') + metricValue(text, 'lainlet_hub_total_backpressure_disconnects_total'),
  };
}

/** The delta a step writes: a config key, or a pod group that stays valid (the marker goes in its LastError field). */
export function deltaOf(kind: 'small' | 'podgroup', template: string): { key: string; valueOf: (seq: number, t: number) => string } {
  if (kind === 'small') return { key: SMALL_KEY, valueOf: (seq, t) => `bench:${seq}:${t.toFixed(3)}` };
  return { key: PG_KEY, valueOf: (seq, t) => template.replace(/"LastError":"[^"]*"/, `"LastError":"bench:${seq}:${t.toFixed(3)}"`) };
}

/** A hub on its own etcd with A − PROBES sinks in one or more load processes and PROBES probes in another, all synced. */
export interface Rig {
  etcd: EtcdServer;
  hub: HubProc;
  /** The sinks' processes (the sinks split evenly between them). */
  loads: Remote[];
  probe: Remote;
  agents: number;
  /** Hub RSS before any agent connected, bytes. */
  rssIdle: number;
  /** From the first sink's connect to the last sink's upgrade, ms. */
  upgradedMs: number;
  /** From the first sink's connect until the hub counts every agent and every sink got its first frame, ms. */
  syncedMs: number;
  /** Sinks opened so far (node names go on from here). */
  sinksOpened: number;
  /** The hub's worker threads' ids, once known (per-thread CPU in each step). */
  workerTids?: number[];
  close(): Promise<void>;
}

/** CPU used so far by all the sinks' processes, ms. */
export function loadCpuMs(rig: Rig): number {
  return rig.loads.reduce((a, l) => a + readProc(l.proc.pid).cpuMs, 0);
}

/** Sends `cmd` to every sinks' process; their answers, in order. */
export function callLoads<T>(rig: Rig, cmd: string, args: Record<string, unknown> = {}): Promise<T[]> {
  return Promise.all(rig.loads.map((l) => l.call<T>(cmd, args)));
}

export async function startRig(agents: number, hubArgs: string[], sinkProcs = 1): Promise<Rig> {
  const etcd = await startEtcd();
  const loads: Remote[] = [];
  let probe: Remote | undefined;
  try {
    await putAll(etcd.client, readFixture('cluster-small'));
    const hub = await startHub(['--etcd', etcd.endpoint, ...hubArgs]);
    // Sinks and probes in separate processes: a probe must not wait behind a thousand sink reads.
    for (let i = 0; i < sinkProcs; i++) loads.push(startRemote(sinkProcs > 1 ? `fanout-sinks-${i}` : 'fanout-sinks', `${BENCH_LIB}fanout-load.js`));
    probe = startRemote('fanout-probes', `${BENCH_LIB}fanout-load.js`);
    const rev = await currentRevision(etcd.client);
    await sleep(500);
    const rssIdle = readProc(hub.proc.pid).rss;
    const sinks = agents - PROBES;
    const t0 = monoMs();
    // 10,000 handshakes in batches of 100 take a while on a shared machine: allow for it.
    const openMs = Math.max(120_000, agents * 30);
    await Promise.all(loads.map((l, i) => {
      const from = Math.floor((sinks * i) / loads.length), to = Math.floor((sinks * (i + 1)) / loads.length);
      return l.call('open', { port: hub.port, sinks: to - from, probes: 0, first: from, rev }, openMs);
    }));
    const upgradedMs = monoMs() - t0;
    await probe.call('open', { port: hub.port, sinks: 0, probes: PROBES, rev });
    await waitFor(async () => (await Promise.all(loads.map((l) => l.call<{ sinksSynced: number }>('status')))).reduce((a, x) => a + x.sinksSynced, 0) >= sinks
      && metricValue(await hubMetrics(hub.port), 'lainlet_hub_agents_connected') === agents, { timeoutMs: openMs, intervalMs: 20, message: `${agents} connections on the hub, every sink synced` });
    const syncedMs = monoMs() - t0;
    const rig: Rig = {
      etcd, hub, loads, probe, agents, rssIdle, upgradedMs, syncedMs, sinksOpened: sinks,
      async close() { await rig.probe.close(); for (const l of loads) await l.close(); await etcd.stop(); },
    };
    return rig;
  } catch (e) {
    await probe?.close();
    for (const l of loads) await l.close();
    await etcd.stop();
    throw e;
  }
}

/**
 * Between ramps: waits until the sinks have read what was queued to them (their byte count
 * stops moving), then opens new sinks for any the hub dropped, so the next ramp has all agents.
 */
export async function settle(ctx: BenchContext, rig: Rig): Promise<void> {
  let last = -1;
  await waitFor(async () => {
    const sinkBytes = (await callLoads<{ sinkBytes: number }>(rig, 'status')).reduce((a, x) => a + x.sinkBytes, 0);
    const still = sinkBytes === last;
    last = sinkBytes;
    return still;
  }, { timeoutMs: 30_000, intervalMs: 300 }).catch(() => ctx.log('  sinks still reading after 30 s'));
  const have = metricValue(await hubMetrics(rig.hub.port), 'lainlet_hub_agents_connected');
  if (have >= rig.agents) return;
  const missing = rig.agents - have;
  ctx.log(`  ${missing} agents were dropped: opening ${missing} new sinks`);
  await rig.loads[0].call('open', { port: rig.hub.port, sinks: missing, probes: 0, first: rig.sinksOpened, rev: await currentRevision(rig.etcd.client) }, 120_000);
  rig.sinksOpened += missing;
  await waitFor(async () => metricValue(await hubMetrics(rig.hub.port), 'lainlet_hub_agents_connected') >= rig.agents, { timeoutMs: 60_000, message: `${rig.agents} agents again` });
}

function threadShares(pid: number, workerTids: number[], a: Map<number, ThreadReading>, b: Map<number, ThreadReading>, wall: number): ThreadShares {
  // schedstat's nanoseconds where the kernel has them: a 2 s step is only 200 clock ticks per core.
  const at = (r: ThreadReading | undefined) => (r ? (Number.isFinite(r.runMs) ? r.runMs : r.cpuMs) : 0);
  const d = (tid: number) => (at(b.get(tid)) - at(a.get(tid))) / wall;
  let all = 0;
  for (const tid of b.keys()) all += d(tid);
  const main = d(pid);
  const workers = workerTids.map(d);
  // "other" from the threads' own readings (never below zero, unlike the process total minus them).
  return { main, workers, other: all - main - workers.reduce((x, y) => x + y, 0) };
}

/** The ramp of ONE delta kind on a rig: rising rates until two steps in a row are degraded. */
export async function rampOn(ctx: BenchContext, rig: Rig, kind: 'small' | 'podgroup', rates: number[], template: string, stepMs = ctx.quick ? 1500 : 3000): Promise<{ steps: Step[]; frameBytes: Summary }> {
  const { etcd, hub, probe, agents } = rig;
  const { key, valueOf } = deltaOf(kind, template);
  const steps: Step[] = [];
  let seq = 1;
  let frameBytes: Summary | undefined;
  const pids = [hub.proc.pid, probe.proc.pid, etcd.proc.pid, process.pid];
  const threads = () => (rig.workerTids ? readThreads(hub.proc.pid) : undefined);
  // Warm-up (not recorded): JIT, first sends on fresh sockets.
  seq += (await writeAtRate(etcd.client, key, rates[0], 1000, seq, valueOf)).issued;
  await sleep(300);
  for (const rate of rates) {
    await probe.call('reset');
    const c0 = await hubCounters(hub);
    const cpu0 = pids.map(readProc), load0 = rig.loads.map((l) => readProc(l.proc.pid).cpuMs);
    const th0 = threads();
    const m0 = readMachineCpu();
    const t0 = monoMs();
    const w = await writeAtRate(etcd.client, key, rate, stepMs, seq, valueOf);
    seq += w.issued;
    // Let the last deltas arrive (bounded: a hub that fell far behind is degraded anyway).
    await waitFor(async () => (await probe.call<ProbeReport>('report')).distinctSeqs >= w.acked, { timeoutMs: 3000, intervalMs: 20 }).catch(() => {});
    const wall = monoMs() - t0;
    const cpu1 = pids.map(readProc), load1 = rig.loads.map((l) => readProc(l.proc.pid).cpuMs);
    const loadShares = load1.map((v, i) => (v - load0[i]) / wall);
    const th1 = threads();
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
    const cpu = (i: number) => (cpu1[i].cpuMs - cpu0[i].cpuMs) / wall;
    const step: Step = {
      kind, agents, offered: rate, written: w.acked / w.seconds,
      latency: rep.latency, put: w.put, missing,
      framesPerSec: (c1.frames - c0.frames) / (wall / 1000),
      deltasPerSec: (c1.deltas - c0.deltas) / (wall / 1000),
      bytesPerSec: (c1.bytes - c0.bytes) / (wall / 1000),
      hubCpu: cpu(0), loadCpu: loadShares.reduce((a, b) => a + b, 0), loadMax: Math.max(...loadShares), probeCpu: cpu(1), etcdCpu: cpu(2), writerCpu: cpu(3),
      machineBusy: machineBusy(m0, m1),
      othersCpu: Math.max(0, machineBusy(m0, m1) * CORES - [0, 1, 2, 3].reduce((a, i) => a + cpu(i), 0) - loadShares.reduce((a, b) => a + b, 0)),
      slowDisconnects: slow,
      agentsAfter: c1.agents,
      threads: th0 && th1 ? threadShares(hub.proc.pid, rig.workerTids!, th0, th1, wall) : undefined,
      degraded: reasons.join('; '),
    };
    const th = step.threads ? ` (main ${pct(step.threads.main)}${step.threads.workers.length ? `, workers ${step.threads.workers.map(pct).join('/')}` : ''}, other ${pct(step.threads.other)})` : '';
    ctx.log(`  ${kind} deltas, ${agents} agents, ${rate}/s offered: ${step.written.toFixed(0)}/s written, p50 ${ms(rep.latency.p50)}, p99 ${ms(rep.latency.p99)}, put p99 ${ms(w.put.p99)}, CPU hub ${pct(step.hubCpu)}${th} sinks ${pct(step.loadCpu)} probes ${pct(step.probeCpu)} etcd ${pct(step.etcdCpu)} writer ${pct(step.writerCpu)} machine ${pct(step.machineBusy)} (not ours: ${pct(step.othersCpu)})${step.degraded ? ` — DEGRADED: ${step.degraded}` : ''}`);
    steps.push(step);
    // One bad step can be noise on a shared machine; two in a row end the ramp.
    if (step.degraded && steps.at(-2)?.degraded) break;
    await sleep(300);
  }
  return { steps, frameBytes: frameBytes! };
}

/** Measurement 3's ramp: a fresh single-threaded hub (`--workers 0`) and rig for one delta kind. */
async function ramp(ctx: BenchContext, kind: 'small' | 'podgroup', agents: number, rates: number[], template: string): Promise<{ steps: Step[]; frameBytes: Summary }> {
  const rig = await startRig(agents, ['--workers', '0']);
  try {
    return await rampOn(ctx, rig, kind, rates, template);
  } finally {
    await rig.close();
  }
}

/** Which resource ran out at a degraded step, from the CPU readings of that step. */
export function limitOf(s: Step): string {
  const t = s.threads;
  if (s.writerCpu >= 0.9) return `the benchmark's etcd writer was saturated (${Math.round(s.writerCpu * 100)}% of a core; hub ${Math.round(s.hubCpu * 100)}%)`;
  if (!t && s.hubCpu >= 0.9) return `the hub's core was saturated (${Math.round(s.hubCpu * 100)}%)`;
  if (t && t.main >= 0.9) return `the hub's main thread was saturated (${pct(t.main)}${t.workers.length ? `; workers ${t.workers.map(pct).join(', ')}` : ''})`;
  const busiest = t?.workers.length ? Math.max(...t.workers) : 0;
  if (busiest >= 0.9) return `a hub worker thread was saturated (${pct(busiest)}; main thread ${pct(t!.main)})`;
  if (s.loadMax >= 0.9) return `a sinks' load process was saturated (${pct(s.loadMax)}; hub ${pct(s.hubCpu)}, machine ${pct(s.machineBusy)})`;
  if (s.etcdCpu >= 0.9) return `etcd was saturated (${pct(s.etcdCpu)})`;
  if (s.machineBusy >= 0.95) return `all cores busy (machine ${Math.round(s.machineBusy * 100)}%: hub ${Math.round(s.hubCpu * 100)}%${t?.workers.length ? ` [main ${pct(t.main)}, workers ${t.workers.map(pct).join('/')}]` : ''}, sinks ${Math.round(s.loadCpu * 100)}%, etcd ${Math.round(s.etcdCpu * 100)}%, writer ${Math.round(s.writerCpu * 100)}%${s.othersCpu >= 0.1 ? `, processes not of this benchmark ${pct(s.othersCpu)}` : ''})`;
  return `no single process${t ? ' or hub thread' : ''} saturated (hub ${Math.round(s.hubCpu * 100)}%${t?.workers.length ? ' over its threads' : ''}, machine ${Math.round(s.machineBusy * 100)}%)`;
}

/** The highest step below the first two degraded steps in a row that was not itself degraded. */
export function sustained(steps: Step[]): Step | undefined {
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
      `One hub process (\`dist/hub/main.js --workers 0\`: one thread, the design before the worker threads; section "hub worker threads" measures those) on a real etcd; A agents = A − ${PROBES} sinks (raw WebSocket clients counting bytes, one load process) + ${PROBES} probes (full clients decoding every frame, connected last, in a second process). The benchmark writes one key per etcd revision at each offered rate for ${ctx.quick ? 1.5 : 3} s; latency is from just before the etcd put to the probe decoding the delta. A step is **degraded** when the probes' p99 exceeds ${DEGRADED_P99_MS} ms, a delta does not arrive within 3 s, or the hub drops an agent as too slow; the ramp stops after two degraded steps in a row (one alone can be noise on a shared machine), and "sustained" is the highest rate below them that was not degraded.`,
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
