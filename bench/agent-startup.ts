// Measurement 5 — the real agent process with the LARGE cluster: its memory (RSS), and its
// start-up time to a full answer of GET /v2/coreinfowatcher (all apps), (a) synced from a hub
// and (b) from its state file with no hub reachable (the -hub address is a closed port).
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { phaseTimes, type Phase } from './lib/cpuprofile.js';
import { readFixture } from './lib/fixtures.js';
import { largeClusterNote, startLargeCluster } from './lib/large-cluster.js';
import { deployedNodeArgs, startAgent, startHub, waitSynced, type AgentProc } from './lib/lainlet.js';
import { httpGet } from '../testkit/http.js';
import { metricValue } from '../testkit/metrics.js';
import { freePort } from '../testkit/ports.js';
import { runCommand, startProgram, waitFor, type Proc } from '../testkit/procs.js';
import { parseSmapsRollup, readMemoryMap, readProc, type MemoryMap } from './lib/proc-stats.js';
import { ms, table, type BenchContext, type Measurement, type SectionResult } from './lib/report.js';
import { fmtBytes, median, monoMs } from './lib/stats.js';
import { barChart } from './lib/svg.js';

const FULL_PATH = '/v2/coreinfowatcher';
const RSS_TARGET = 64 * 1024 * 1024;
/** Issue 13: a full answer this soon after the process starts, from the hub and from the state file. */
const START_TARGET_MS = 300;
const START_FILE_TARGET_MS = 150;

interface StartRun { listeningMs: number; fullMs: number; rss: number; profile?: string }

/**
 * Where start-up time goes, by priority: a sample counts for the first phase that matches any
 * frame of its stack. Module loading that happens outside any package's own code (compiling
 * the files) falls to the generic "load modules" phase, so the etcd3/gRPC figure is a floor.
 */
const START_PHASES: Phase[] = [
  { label: 'gRPC (the -grpc.addr mirror), etcd3 and hub code (the -etcd embedded hub): loaded only with those flags', match: /node_modules\/(etcd3|@grpc|protobufjs|@protobufjs|cockatiel)\/|dist\/hub\/|dist\/agent\/grpc\// },
  { label: 'decode pod-group values (agent/model)', match: /dist\/agent\/model\// },
  { label: 'build indexes (agent/indexes)', match: /dist\/agent\/indexes\// },
  { label: 'render answers (agent/api)', match: /dist\/agent\/api\/|dist\/shared\/gojson/ },
  { label: 'msgpack decode (msgpackr)', match: /node_modules\/msgpackr\// },
  { label: 'receive the snapshot (agent/client, ws)', match: /dist\/agent\/client\.js|node_modules\/ws\// },
  { label: 'read the state file (agent/persist)', match: /dist\/agent\/persist\.js/ },
  { label: 'cache (agent/cache)', match: /dist\/agent\/cache\.js/ },
  { label: 'load and compile other modules (pino, prom-client, ws, msgpackr, the agent)', match: /node:internal\/modules|compileForInternalLoader|requireBuiltin|ModuleJob/ },
  { label: 'garbage collection', match: /\(garbage collector\)/ },
];

/**
 * Polls GET /v2/coreinfowatcher at `base` every few ms on fresh connections until it answers 200
 * with the full body: the first answer of any kind and that one, in ms since `t0`.
 */
async function untilFullAnswer(base: string, fullBytes: number, t0: number, proc: Proc, what: string): Promise<{ listeningMs: number; fullMs: number }> {
  let listeningMs = NaN;
  const deadline = t0 + 30_000;
  while (monoMs() < deadline) {
    if (!proc.running) throw new Error(`${what} exited:\n${proc.output()}`);
    try {
      const r = await httpGet(`${base}${FULL_PATH}`, 5000);
      const now = monoMs();
      if (Number.isNaN(listeningMs)) listeningMs = now - t0;
      if (r.status === 200 && r.bytes === fullBytes) return { listeningMs, fullMs: now - t0 };
    } catch { /* not listening yet */ }
    await sleep(3);
  }
  throw new Error(`${what} gave no full answer within 30 s:\n${proc.output()}`);
}

/**
 * Spawns an agent and polls GET /v2/coreinfowatcher every few ms on fresh connections until it
 * answers 200 with the full body. Times are from just before the spawn. With `profileDir`, the
 * agent runs under --cpu-prof and exits gracefully so the profile is written.
 */
async function timedStart(hubs: string[], extra: string[], fullBytes: number, profileDir?: string): Promise<StartRun> {
  const port = await freePort();
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const t0 = monoMs();
  // As installed: with the shebang's node options.
  const nodeArgs = [...deployedNodeArgs(), ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, '--cpu-prof-interval=250'] : [])];
  const agent = await startAgent(hubs, extra, { port, spawn: { nodeArgs } });
  try {
    const { listeningMs, fullMs } = await untilFullAnswer(agent.base, fullBytes, t0, agent.proc, 'agent');
    if (profileDir) {
      await agent.proc.stop('SIGTERM');
      const f = readdirSync(profileDir).find((x) => x.endsWith('.cpuprofile'));
      return { listeningMs, fullMs, rss: NaN, profile: f ? path.join(profileDir, f) : undefined };
    }
    await sleep(1000);
    return { listeningMs, fullMs, rss: readProc(agent.proc.pid).rss };
  } finally {
    await agent.proc.kill();
  }
}

/**
 * The floor of a start: a bare node:http process, with the agent's node options, that reads the
 * same answer from a file and serves it — Node's own start-up, a listen and the bytes, nothing
 * of the agent's. Timed like timedStart, interleaved with the agent's starts.
 */
async function floorStart(bodyFile: string, fullBytes: number): Promise<StartRun> {
  const port = await freePort();
  const script = `const b = require('node:fs').readFileSync(${JSON.stringify(bodyFile)});
require('node:http').createServer((q, r) => { r.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': b.length }); r.end(b); }).listen(${port}, '127.0.0.1');`;
  const t0 = monoMs();
  const proc = startProgram('floor', process.execPath, [...deployedNodeArgs(), '-e', script]);
  try {
    return { ...(await untilFullAnswer(`http://127.0.0.1:${port}`, fullBytes, t0, proc, 'floor server')), rss: NaN };
  } finally {
    await proc.kill();
  }
}

/** What the installed `lainlet-agent` command gives Node (its shebang): a 2 MB young generation. */
const deployedNodeOptions = (): string => deployedNodeArgs().join(' ');

/** Memory of an agent run as the installed command runs it (its shebang's V8 flag, here via NODE_OPTIONS; a state dir), synced and idle. */
async function deployedAgentRss(tmpDir: string, hubUrl: string): Promise<MemoryMap> {
  const stateDir = path.join(tmpDir, 'agent-state-deployed');
  mkdirSync(stateDir, { recursive: true });
  const agent = await startAgent([hubUrl], ['-state-dir', stateDir], { spawn: { env: { NODE_OPTIONS: deployedNodeOptions() } } });
  try {
    await waitSynced(agent, FULL_PATH, 60_000);
    await httpGet(agent.base + FULL_PATH);
    await waitFor(() => existsSync(path.join(stateDir, 'state.bin')), { timeoutMs: 15_000, message: 'the deployed-style agent to write its state file' });
    await sleep(2000);
    return readMemoryMap(agent.proc.pid);
  } finally {
    await agent.proc.kill();
  }
}

/** Memory of a bare Node process (no modules), for reference. */
async function bareNodeRss(): Promise<MemoryMap> {
  const r = await runCommand(process.execPath, ['-e', "setTimeout(() => process.stdout.write(require('node:fs').readFileSync('/proc/self/smaps_rollup', 'utf8')), 500)"]);
  return parseSmapsRollup(r.stdout);
}

/** RSS of an agent as installed synced to the small fixture (130 KB): the part of RSS that is not the cluster. */
async function smallClusterRss(tmpDir: string): Promise<number> {
  const seed = path.join(tmpDir, 'cluster-small.json');
  writeFileSync(seed, JSON.stringify({ kvs: readFixture('cluster-small') }));
  const hub = await startHub(['--store', 'memory', '--seed', seed]);
  const agent = await startAgent([hub.url], [], { spawn: { nodeArgs: deployedNodeArgs() } });
  try {
    await waitSynced(agent, FULL_PATH);
    await httpGet(agent.base + FULL_PATH);
    await sleep(2000);
    return readProc(agent.proc.pid).rss;
  } finally {
    await agent.proc.kill();
    await hub.proc.kill();
  }
}

export const agentStartup: Measurement = {
  name: 'agent-startup',
  title: 'agent memory and start-up time',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const repeats = ctx.quick ? 3 : 7;
    const cluster = await startLargeCluster(ctx.tmpDir);
    let ref: AgentProc | undefined;
    try {
      const stateDir = path.join(ctx.tmpDir, 'agent-state');
      mkdirSync(stateDir, { recursive: true });
      ref = await startAgent([cluster.hub.url], ['-state-dir', stateDir]);
      await waitSynced(ref, FULL_PATH, 60_000);
      const full = await httpGet(ref.base + FULL_PATH);
      const fullBytes = full.bytes;
      const bodyFile = path.join(ctx.tmpDir, 'coreinfowatcher-all.body');
      writeFileSync(bodyFile, full.body);
      const floor: StartRun[] = [];
      // The state file is written ~1 s after the last change (debounced).
      const stateFile = path.join(stateDir, 'state.bin');
      await waitFor(() => existsSync(stateFile), { timeoutMs: 15_000, message: 'the agent to write its state file' });
      await sleep(2000);
      const idle = readProc(ref.proc.pid);
      const m = (await httpGet(`${ref.base}/metrics`)).body;
      const heapUsed = metricValue(m, 'lainlet_agent_nodejs_heap_size_used_bytes');
      const heapTotal = metricValue(m, 'lainlet_agent_nodejs_heap_size_total_bytes');
      const external = metricValue(m, 'lainlet_agent_nodejs_external_memory_bytes');
      ctx.log(`  RSS after sync ${fmtBytes(idle.rss)} (peak ${fmtBytes(idle.rssPeak)}), V8 heap used ${fmtBytes(heapUsed)}`);
      const deployedRss = await deployedAgentRss(ctx.tmpDir, cluster.hub.url);
      ctx.log(`  RSS as installed (${deployedNodeOptions()}, the lainlet-agent shebang): ${fmtBytes(deployedRss.rss)} (${fmtBytes(deployedRss.fromFiles)} from files, ${fmtBytes(deployedRss.anonymous)} anonymous)`);

      const fromHub: StartRun[] = [];
      for (let i = 0; i < repeats; i++) {
        fromHub.push(await timedStart([cluster.hub.url], [], fullBytes));
        floor.push(await floorStart(bodyFile, fullBytes));
      }
      ctx.log(`  from the hub: full answer after ${fromHub.map((r) => Math.round(r.fullMs)).join(', ')} ms`);
      const profHub = await timedStart([cluster.hub.url], [], fullBytes, path.join(ctx.tmpDir, 'cpuprof-start-hub'));

      await ref.proc.stop('SIGTERM'); // saves the state file on the way out
      const stateBytes = statSync(stateFile).size;
      await cluster.hub.proc.kill();
      const closedPort = await freePort();
      const fromFile: StartRun[] = [];
      for (let i = 0; i < repeats; i++) {
        fromFile.push(await timedStart([`ws://127.0.0.1:${closedPort}`], ['-state-dir', stateDir], fullBytes));
        floor.push(await floorStart(bodyFile, fullBytes));
      }
      ctx.log(`  from the state file: full answer after ${fromFile.map((r) => Math.round(r.fullMs)).join(', ')} ms`);
      ctx.log(`  floor (bare node:http serving the bytes from a file): full answer after ${floor.map((r) => Math.round(r.fullMs)).join(', ')} ms`);
      const profFile = await timedStart([`ws://127.0.0.1:${closedPort}`], ['-state-dir', stateDir], fullBytes, path.join(ctx.tmpDir, 'cpuprof-start-file'));
      const smallRss = await smallClusterRss(ctx.tmpDir);
      const bareRss = await bareNodeRss();
      ctx.log(`  RSS with the small fixture for reference: ${fmtBytes(smallRss)}`);

      const phases = (r: StartRun) => (r.profile ? phaseTimes(r.profile, START_PHASES) : undefined);
      return report(ctx, {
        rss: idle.rss, rssPeak: idle.rssPeak, deployedRss, heapUsed, heapTotal, external, fullBytes, stateBytes, fromHub, fromFile, floor, repeats, smallRss, bareRss,
        phasesHub: phases(profHub), phasesFile: phases(profFile),
      }, largeClusterNote(cluster));
    } finally {
      await ref?.proc.kill();
      await cluster.stop();
    }
  },
};

interface StartupData {
  rss: number; rssPeak: number; deployedRss: MemoryMap; heapUsed: number; heapTotal: number; external: number;
  fullBytes: number; stateBytes: number; fromHub: StartRun[]; fromFile: StartRun[];
  /** floorStart runs, one after each of the agent's timed starts (from the hub, then from the file). */
  floor: StartRun[];
  repeats: number; smallRss: number; bareRss: MemoryMap;
  phasesHub?: ReturnType<typeof phaseTimes>; phasesFile?: ReturnType<typeof phaseTimes>;
}

/** The biggest phases of the profiled state-file start, in words. */
function startupLimits(d: StartupData): string {
  const ph = d.phasesFile ?? d.phasesHub;
  if (!ph) return 'no profile';
  const top = [...ph.phases].filter((p) => p.label !== 'other').sort((a, b) => b.ms - a.ms).slice(0, 3);
  return `the largest phases of a profiled start are ${top.map((p) => `${p.label.replace(/ \(.*\)$/, '')} ${ms(p.ms)}`).join(', ')}`;
}

function report(ctx: BenchContext, d: StartupData, clusterNote: string): SectionResult {
  const med = (runs: StartRun[], k: 'listeningMs' | 'fullMs') => median(runs.map((r) => r[k]));
  const max = (runs: StartRun[]) => Math.max(...runs.map((r) => r.fullMs));
  const rssMet = d.deployedRss.rss <= RSS_TARGET; // the target is as installed
  const own = d.deployedRss.anonymous - d.bareRss.anonymous;
  const hubMed = med(d.fromHub, 'fullMs');
  const fileMed = med(d.fromFile, 'fullMs');
  const startMet = hubMed <= START_TARGET_MS && fileMed <= START_FILE_TARGET_MS;
  const floorMed = med(d.floor, 'fullMs');
  const md = [
    clusterNote,
    '',
    `**Memory** of the real agent process (with -state-dir) once synced and idle, 2 s after its state file was written, with node's default options and as installed (the shebang's \`${deployedNodeOptions()}\`: the target's figure); for reference, the same agent as installed synced to the 130 KB cluster-small fixture (what is not the cluster), and a bare \`node\` process:`,
    '',
    table(['RSS', 'RSS as installed (`lainlet-agent` shebang)', 'of it from files / anonymous', 'peak RSS (VmHWM)', 'V8 heap used / total', 'external (Buffers, ArrayBuffers)', 'state file', 'RSS with cluster-small', 'bare node RSS', 'of it from files / anonymous'], [[
      `**${fmtBytes(d.rss)}**`, `**${fmtBytes(d.deployedRss.rss)}**`, `${fmtBytes(d.deployedRss.fromFiles)} / ${fmtBytes(d.deployedRss.anonymous)}`, fmtBytes(d.rssPeak), `${fmtBytes(d.heapUsed)} / ${fmtBytes(d.heapTotal)}`, fmtBytes(d.external), fmtBytes(d.stateBytes), fmtBytes(d.smallRss),
      fmtBytes(d.bareRss.rss), `${fmtBytes(d.bareRss.fromFiles)} / ${fmtBytes(d.bareRss.anonymous)}`]]),
    '',
    `"From files" are pages mapped from files (/proc/<pid>/smaps_rollup: Rss − Anonymous): almost all of them node's own binary — its code and read-only data, which every node process on a machine maps from the same file and the kernel can drop and read again; RSS counts them for each process. "Anonymous" is the process's own memory (the V8 heap, malloc, stacks). Of the agent's RSS as installed, ${fmtBytes(own)} are anonymous memory a bare node process does not have: that is the agent's own cost.`,
    '',
    `**Start-up to a full answer**, as installed (\`${deployedNodeOptions()}\`): from just before the process is spawned until GET ${FULL_PATH} (all apps, ${fmtBytes(d.fullBytes)}) answers 200 with the full body, polled every ~3 ms on fresh connections; ${d.repeats} runs each. "From the state file": the agent was started with -state-dir, left to save (debounced ~1 s), stopped, the hub killed, and the agent started again with -hub pointing to a closed port.`,
    '',
    table(['start', 'HTTP listening (median)', 'full answer: median', 'min', 'max', 'RSS 1 s later (median)'], [
      ['synced from the hub', ms(med(d.fromHub, 'listeningMs')), `**${ms(hubMed)}**`, ms(Math.min(...d.fromHub.map((r) => r.fullMs))), ms(max(d.fromHub)), fmtBytes(median(d.fromHub.map((r) => r.rss)))],
      ['from the state file, no hub', ms(med(d.fromFile, 'listeningMs')), `**${ms(fileMed)}**`, ms(Math.min(...d.fromFile.map((r) => r.fullMs))), ms(max(d.fromFile)), fmtBytes(median(d.fromFile.map((r) => r.rss)))],
      ['floor: bare node:http serving the same bytes from a file', ms(med(d.floor, 'listeningMs')), ms(floorMed), ms(Math.min(...d.floor.map((r) => r.fullMs))), ms(max(d.floor)), ''],
    ]),
    '',
    `The floor is Node's own start-up, a listen, a file read and the answer, nothing of the agent's: a \`node ${deployedNodeOptions()} -e\` node:http server started after each of the agent's starts (${d.floor.length} runs, interleaved), timed the same way. Beyond it the agent takes ${ms(hubMed - floorMed)} from the hub and ${ms(fileMed - floorMed)} from the state file (medians).`,
    '',
    '"HTTP listening" is the first answer of any kind (503 until the state arrives). From the state file the agent loads the file and builds its indexes before it listens, so both times coincide; from a hub, the snapshot usually arrives and is applied before the first poll is answered.',
  ];
  if (d.phasesHub && d.phasesFile) {
    const labels = d.phasesFile.phases.map((p) => p.label);
    const get = (ph: NonNullable<StartupData['phasesHub']>, l: string) => ph.phases.find((p) => p.label === l)?.ms ?? 0;
    md.push('', `**Where start-up time goes**: one more start of each kind under \`node --cpu-prof\` (which slows it a little), samples from the profiler's start (after Node's own bootstrap) until the process was stopped just after the full answer; each sample counts for the first phase below that any frame of its stack matches:`, '',
      table(['phase', 'from the hub', 'from the state file'], [
        ...labels.filter((l) => get(d.phasesHub!, l) >= 1 || get(d.phasesFile!, l) >= 1).map((l) => [l, ms(get(d.phasesHub!, l)), ms(get(d.phasesFile!, l))]),
        ['**profiled in total**', ms(d.phasesHub.totalMs), ms(d.phasesFile.totalMs)],
      ]));
  }
  const mdText = md.join('\n');
  const chart = barChart({
    title: 'Agent start-up to a full /v2/coreinfowatcher answer',
    yLabel: 'ms from spawn',
    categories: ['from hub', 'from state file'],
    series: [
      { name: 'HTTP listening (median)', values: [med(d.fromHub, 'listeningMs'), med(d.fromFile, 'listeningMs')] },
      { name: 'full answer (median)', values: [hubMed, fileMed] },
      { name: 'full answer (max)', values: [max(d.fromHub), max(d.fromFile)] },
    ],
    refLines: [{ value: START_TARGET_MS, label: `target from the hub ${START_TARGET_MS} ms` }, { value: START_FILE_TARGET_MS, label: `from the state file ${START_FILE_TARGET_MS} ms` }],
  });
  const heapShare = d.heapUsed / d.rss;
  return {
    markdown: mdText,
    targets: [
      {
        target: 'agent RSS ≤ 64 MB for a 10 MB cluster',
        measured: `${fmtBytes(d.rss)} RSS synced and idle (V8 heap used ${fmtBytes(d.heapUsed)}); ${fmtBytes(d.deployedRss.rss)} as installed (the lainlet-agent command's shebang: ${deployedNodeOptions()}): ${fmtBytes(d.deployedRss.fromFiles)} mapped from files (node's binary), ${fmtBytes(d.deployedRss.anonymous)} anonymous`,
        met: rssMet,
        note: rssMet ? undefined : `as installed missed by ${fmtBytes(d.deployedRss.rss - RSS_TARGET)} (${(d.deployedRss.rss / RSS_TARGET).toFixed(2)}× the target). A bare node process is ${fmtBytes(d.bareRss.rss)} of RSS, ${fmtBytes(d.bareRss.fromFiles)} of it node's binary mapped from its file; the agent touches more of that binary (${fmtBytes(d.deployedRss.fromFiles)}: the optimizing compiler, zlib, http — pages shared with every node process on the machine), and its own anonymous memory beyond a bare node's is ${fmtBytes(own)}. The V8 heap holds ${fmtBytes(d.heapUsed)} (${Math.round(heapShare * 100)}% of RSS): the raw values (≈${fmtBytes(d.stateBytes)}, kept by the cache and by the index entries) plus the decoded pod groups and the rendered answers; the same agent with the 130 KB fixture takes ${fmtBytes(d.smallRss)} (a bare node process: ${fmtBytes(d.bareRss.rss)})${d.smallRss > RSS_TARGET ? ', so Node plus the program\'s modules alone exceed the target' : `, leaving ${fmtBytes(Math.max(0, RSS_TARGET - d.smallRss))} of the target for a 10 MB cluster${d.stateBytes > RSS_TARGET - d.smallRss ? ', less than the raw values alone take: not within reach while the agent holds them as text' : ''}`}; ${fmtBytes(d.external)} of it are Buffers outside the V8 heap (agents started from a hub without -state-dir settle at ${fmtBytes(median(d.fromHub.map((r) => r.rss)))}) — see section 5.`,
      },
      {
        target: `a full answer ≤ ${START_TARGET_MS} ms after start from the hub, ≤ ${START_FILE_TARGET_MS} ms from the state file`,
        measured: `median ${ms(hubMed)} from the hub, ${ms(fileMed)} from the state file (max ${ms(max(d.fromHub))} / ${ms(max(d.fromFile))}); floor (bare node:http serving the same bytes, interleaved) ${ms(floorMed)}`,
        met: startMet,
        note: startMet ? undefined : [
          hubMed > START_TARGET_MS ? `from the hub missed by ${ms(hubMed - START_TARGET_MS)}` : '',
          fileMed > START_FILE_TARGET_MS ? `from the state file missed by ${ms(fileMed - START_FILE_TARGET_MS)}` : '',
        ].filter(Boolean).join('; ') + `; a bare node:http process serving the same bytes takes ${ms(floorMed)} of that (Node's start-up: ${floorMed > START_FILE_TARGET_MS ? 'alone above the state-file target on this machine' : `${ms(START_FILE_TARGET_MS - floorMed)} left for the agent under the state-file target`}), the agent ${ms(hubMed - floorMed)} / ${ms(fileMed - floorMed)} beyond it; ${startupLimits(d)} — phase table in section 5.`,
      },
    ],
    charts: [{ file: 'agent-startup.svg', svg: chart, caption: 'agent start-up: time to listen and to a full all-apps coreinfowatcher answer, with the target' }],
    data: d,
  };
  void ctx;
}
