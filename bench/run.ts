// Runs the benchmark and writes RESULTS.md, results.json and the SVG charts.
//
//   npm run bench                       everything, full size → bench/RESULTS.md, bench/charts/
//   npm run bench -- --quick            smaller runs (< 3 min)  → bench/out/
//   npm run bench -- --only=a,b         only these measurements → bench/out/
//   npm run bench -- --out=DIR          write somewhere else
//
// Measurements run one after another (the machine may have two cores: nothing else of the
// benchmark runs beside one), each with its own etcd and programs, all stopped afterwards.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { agentGet } from './agent-get.js';
import { agentStartup } from './agent-startup.js';
import { etcdLoad } from './etcd-load.js';
import { fanout } from './fanout.js';
import { REPO_ROOT, useDistSnapshot } from '../testkit/paths.js';
import { killAll } from '../testkit/procs.js';
import type { BenchContext, Measurement, SectionResult, TargetResult } from './lib/report.js';
import { machineSpeed, systemInfo } from './lib/sysinfo.js';
import { propagation } from './propagation.js';
import { reconnectStorm } from './reconnect-storm.js';
import { tier } from './tier.js';
import { workers } from './workers.js';

const MEASUREMENTS: Measurement[] = [etcdLoad, propagation, fanout, agentGet, agentStartup, reconnectStorm, workers, tier];
/** bench/ in the source tree (this file runs from dist/bench/). */
const BENCH_SRC = fileURLToPath(new URL('../../bench/', import.meta.url));

interface Args { quick: boolean; only: string[] | null; out: string }

function parseArgs(argv: string[]): Args {
  let quick = false;
  let only: string[] | null = null;
  let out = '';
  for (const a of argv) {
    if (a === '--quick') quick = true;
    else if (a.startsWith('--only=')) only = a.slice(7).split(',').map((s) => s.trim()).filter(Boolean);
    else if (a.startsWith('--out=')) out = a.slice(6);
    else if (a === '-h' || a === '--help') {
      process.stdout.write(`usage: npm run bench -- [--quick] [--only=${MEASUREMENTS.map((m) => m.name).join(',')}] [--out=DIR]\n`);
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  if (only) {
    const unknown = only.filter((n) => !MEASUREMENTS.some((m) => m.name === n));
    if (unknown.length) { process.stderr.write(`unknown measurement(s): ${unknown.join(', ')}; known: ${MEASUREMENTS.map((m) => m.name).join(', ')}\n`); process.exit(2); }
  }
  // Only a full run of everything replaces the committed results.
  out ||= !quick && !only ? BENCH_SRC : path.join(BENCH_SRC, 'out');
  return { quick, only, out: path.resolve(out) };
}

function targetRow(t: TargetResult): string {
  const verdict = t.met === null ? 'not measured' : t.met ? '**met**' : '**missed**';
  return `| ${t.target} | ${t.measured.replace(/\|/g, '\\|')} | ${verdict} | ${(t.note ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const tmpDir = mkdtempSync(path.join(os.tmpdir(), 'lainlet-bench-'));
  const log = (msg: string) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
  const ctx: BenchContext = { quick: args.quick, log, tmpDir };
  const cleanup = async () => { await killAll(); rmSync(tmpDir, { recursive: true, force: true }); };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => { log(`${sig}: stopping everything`); void cleanup().finally(() => process.exit(130)); });
  }
  const sys = systemInfo(REPO_ROOT);
  // The same machine runs at different speeds on different days (a shared host): measured at
  // both ends of the run, so runs are compared by these before their absolute figures.
  const speedBefore = machineSpeed();
  useDistSnapshot(tmpDir);
  const selected = MEASUREMENTS.filter((m) => !args.only || args.only.includes(m.name));
  const results: Array<{ m: Measurement; r?: SectionResult; error?: string; seconds: number }> = [];
  try {
    for (const m of selected) {
      log(`${m.name}: ${m.title}`);
      const t0 = Date.now();
      try {
        const r = await m.run(ctx);
        results.push({ m, r, seconds: (Date.now() - t0) / 1000 });
      } catch (e) {
        log(`${m.name} FAILED: ${(e as Error).stack ?? String(e)}`);
        results.push({ m, error: (e as Error).stack ?? String(e), seconds: (Date.now() - t0) / 1000 });
      } finally {
        await killAll();
      }
      log(`${m.name}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  } finally {
    await cleanup();
  }
  const speedAfter = machineSpeed();

  const chartsDir = path.join(args.out, 'charts');
  mkdirSync(chartsDir, { recursive: true });
  const lines: string[] = [];
  lines.push('# lainlet benchmark results', '');
  lines.push(`Generated by \`npm run bench${args.quick ? ' -- --quick' : ''}${args.only ? ` -- --only=${args.only.join(',')}` : ''}\` (bench/run.ts); see bench/README.md for how to run and read it. ${args.quick ? '**Quick run: fewer agents, writes and requests than the full run.**' : ''}`);
  lines.push('');
  lines.push('| machine | |', '| --- | --- |');
  lines.push(`| CPU | ${sys.cpuModel} × ${sys.cpuCount} |`);
  lines.push(`| memory | ${(sys.memTotalBytes / 1024 ** 3).toFixed(1)} GiB |`);
  lines.push(`| OS | ${sys.os} |`);
  lines.push(`| Node.js | ${sys.node} |`);
  lines.push(`| etcd | ${sys.etcd} (data dir on tmpfs when /dev/shm exists: the numbers are lainlet's, not a disk's fsync) |`);
  lines.push(`| wrk | ${sys.wrk} |`);
  lines.push(`| date | ${sys.date} |`);
  lines.push(`| code | commit ${sys.commit}${sys.dirty.length ? `, plus uncommitted changes to ${sys.dirty.join(', ')}` : ''} (built into dist/ before the run) |`);
  lines.push(`| run time | ${Math.round((Date.now() - started) / 1000)} s |`);
  lines.push(`| speed at the start / end of the run | a bare \`node -e 0\` ${speedBefore.nodeStartMs.toFixed(0)} / ${speedAfter.nodeStartMs.toFixed(0)} ms; JSON.parse of a fixed 1 MB text ${speedBefore.jsonParseMs.toFixed(1)} / ${speedAfter.jsonParseMs.toFixed(1)} ms (medians of 7): compare runs by these before comparing absolute times |`);
  lines.push('');
  lines.push('Everything ran on this one machine at once (etcd, hubs, agents, load generators), so the processes share its cores; ratios are measured side by side in this run and are the numbers to compare, not absolute claims about other machines.', '');
  lines.push('## Targets', '', '| target | measured | verdict | by how much / what limits it |', '| --- | --- | --- | --- |');
  for (const { m, r, error } of results) {
    if (r) for (const t of r.targets) lines.push(targetRow(t));
    else lines.push(`| ${m.title} | failed: ${(error ?? '').split('\n')[0]} | not measured | |`);
  }
  lines.push('');
  let n = 1;
  for (const { m, r, error, seconds } of results) {
    lines.push(`## ${n++}. ${m.title[0].toUpperCase()}${m.title.slice(1)}`, '');
    if (!r) { lines.push('**Failed:**', '', '```', error ?? '', '```', ''); continue; }
    lines.push(r.markdown, '');
    for (const c of r.charts) {
      writeFileSync(path.join(chartsDir, c.file), c.svg);
      lines.push(`![${c.caption}](charts/${c.file})`, '', `*${c.caption}*`, '');
    }
    lines.push(`<sub>${m.name}: ${seconds.toFixed(0)} s</sub>`, '');
  }
  writeFileSync(path.join(args.out, 'RESULTS.md'), lines.join('\n'));
  writeFileSync(path.join(args.out, 'results.json'), JSON.stringify({
    system: sys, quick: args.quick,
    results: results.map(({ m, r, error, seconds }) => ({ name: m.name, seconds, error, targets: r?.targets, data: r?.data })),
  }, null, 2) + '\n');
  log(`wrote ${path.join(args.out, 'RESULTS.md')} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  if (results.some((x) => x.error)) process.exitCode = 1;
}

void main().catch(async (e: Error) => {
  process.stderr.write(`${e.stack ?? e}\n`);
  await killAll();
  process.exit(1);
});
