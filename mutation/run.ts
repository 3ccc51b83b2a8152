/**
 * `npm run mutate [-- file...] [--force] [--report]`: StrykerJS over the core modules (mutation/targets.ts), one
 * Stryker run per module with its own unit tests as the command, incremental (only mutants
 * whose code or tests changed since the last run are tried again). Writes mutation/REPORT.md:
 * the score per file, every surviving mutant, and every mutant disabled in the source as
 * equivalent with the reason given there (`// Stryker disable next-line <mutator>: <reason>`).
 *
 * The command runner does not tell Stryker which test killed a mutant, so Stryker's incremental
 * diff sees changes to the mutated file only. When a target's test files (or the shared test
 * helpers) change, that target runs in full: a kept "killed" could hide a test that no longer
 * kills, a kept "survived" a test that now does. `npm run mutate -- --force` runs everything.
 *
 * Score = (killed + timed out) / (killed + timed out + survived + no coverage), as Stryker
 * counts it; ignored (equivalent) mutants are outside the score but listed.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { Stryker } from '@stryker-mutator/core';
import type { LogLevel, MutantResult } from '@stryker-mutator/api/core';
import { EXPLAINED } from './explained.js';
import { TARGETS, type Target } from './targets.js';

const GOAL = 85;
const REPORT = 'mutation/REPORT.md';
/** The README shows the table between these two lines (rewritten by every run). */
const README = 'README.md';
const README_START = '<!-- mutation table: written by npm run mutate -->';
const README_END = '<!-- end of mutation table -->';
const RESULTS = 'mutation/results.json';

interface FileSummary {
  file: string;
  tests: string[];
  killed: number;
  survived: number;
  timeout: number;
  noCoverage: number;
  ignored: number;
  errors: number;
  score: number;
  survivors: Array<{ line: number; mutator: string; replacement: string }>;
  equivalent: Array<{ line: number; mutator: string; reason: string }>;
}

function incrementalFile(t: Target): string {
  return `reports/stryker-incremental-${t.file.replace(/[/.]/g, '_')}.json`;
}

/** A digest of everything the target's verdicts depend on besides the mutated file itself. */
function testsDigest(t: Target): string {
  const h = createHash('sha256').update(t.tests.join('\0'));
  for (const f of [...t.tests, ...helperFiles()]) h.update(f).update(readFileSync(f));
  return h.digest('hex');
}

function helperFiles(): string[] {
  return ['test/helpers', 'testkit'].flatMap((dir) =>
    readdirSync(dir).filter((f) => f.endsWith('.ts')).sort().map((f) => `${dir}/${f}`),
  );
}

async function mutate(t: Target, forceAll: boolean): Promise<FileSummary> {
  const digestFile = incrementalFile(t).replace(/\.json$/, '.tests-sha256');
  const digest = testsDigest(t);
  const force = forceAll || !existsSync(digestFile) || readFileSync(digestFile, 'utf8') !== digest;
  if (force) process.stderr.write(`   (tests changed since the last run, or --force: every mutant runs)\n`);
  const stryker = new Stryker({
    mutate: [t.file],
    testRunner: 'command',
    commandRunner: { command: `npx ava --timeout=30s ${t.tests.join(' ')}` },
    coverageAnalysis: 'off',
    incremental: true,
    incrementalFile: incrementalFile(t),
    force,
    concurrency: Math.max(1, cpus().length),
    timeoutMS: 10_000,
    reporters: ['progress'],
    ignorePatterns: ['dist', 'bench/results.json', 'reports', 'mutation/results.json'],
    tempDirName: '.stryker-tmp',
    cleanTempDir: true,
    disableTypeChecks: false,
    logLevel: 'warn' as LogLevel,
  });
  const results: MutantResult[] = await stryker.runMutationTest();
  writeFileSync(digestFile, digest);
  return summarise(t, results);
}

function summarise(t: Target, results: MutantResult[]): FileSummary {
  const s: FileSummary = { file: t.file, tests: t.tests, killed: 0, survived: 0, timeout: 0, noCoverage: 0, ignored: 0, errors: 0, score: 0, survivors: [], equivalent: [] };
  for (const r of results) {
    const line = r.location.start.line;
    switch (r.status) {
      case 'Killed': s.killed++; break;
      case 'Timeout': s.timeout++; break;
      case 'Survived': s.survived++; s.survivors.push({ line, mutator: r.mutatorName, replacement: oneLine(r.replacement ?? '') }); break;
      case 'NoCoverage': s.noCoverage++; s.survivors.push({ line, mutator: r.mutatorName, replacement: oneLine(r.replacement ?? '') }); break;
      case 'Ignored': s.ignored++; s.equivalent.push({ line, mutator: r.mutatorName, reason: r.statusReason ?? '' }); break;
      default: s.errors++; break; // CompileError / RuntimeError: the mutant could not run, no verdict
    }
  }
  const valid = s.killed + s.timeout + s.survived + s.noCoverage;
  s.score = valid === 0 ? 100 : (100 * (s.killed + s.timeout)) / valid;
  s.survivors.sort((a, b) => a.line - b.line);
  s.equivalent.sort((a, b) => a.line - b.line);
  return s;
}

function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 80 ? `${flat.slice(0, 77)}...` : flat;
}

function tableRows(all: FileSummary[]): string[] {
  return all.map((s) => `| ${s.file} | ${s.score.toFixed(1)} % | ${s.killed + s.timeout} | ${s.survived + s.noCoverage} | ${s.ignored} | ${s.tests.join(', ')} |`);
}

const TABLE_HEAD = ['| file | score | killed | survived | equivalent | tests |', '|---|---|---|---|---|---|'];

function updateReadme(all: FileSummary[]): void {
  const text = readFileSync(README, 'utf8');
  const start = text.indexOf(README_START);
  const end = text.indexOf(README_END);
  if (start < 0 || end < start) throw new Error(`${README} has no mutation table markers (${README_START} … ${README_END})`);
  const table = [README_START, ...TABLE_HEAD, ...tableRows(all), README_END].join('\n');
  writeFileSync(README, text.slice(0, start) + table + text.slice(end + README_END.length));
}

function render(all: FileSummary[]): string {
  const rows = tableRows(all);
  const out = [
    '# Mutation testing report',
    '',
    `Written by \`npm run mutate\` (StrykerJS, command runner, incremental). Goal: ≥ ${GOAL} % on every file.`,
    'Score = killed / (killed + survived). Equivalent mutants are disabled in the source with',
    '`// Stryker disable next-line <mutator>: <reason>` and listed here with that reason.',
    '',
    ...TABLE_HEAD,
    ...rows,
    '',
  ];
  for (const s of all) {
    if (s.survivors.length === 0 && s.equivalent.length === 0) continue;
    out.push(`## ${s.file}`, '');
    for (const m of s.survivors) {
      const why = EXPLAINED.find((e) => e.file === s.file && e.line === m.line && e.mutator === m.mutator);
      const note = why ? (why.kind === 'equivalent' ? ` — equivalent: ${why.reason}` : ` — not killed yet: ${why.reason}`) : ' — UNEXPLAINED (kill it, or say why in mutation/explained.ts)';
      out.push(`- survived: line ${m.line}, ${m.mutator} → \`${m.replacement}\`${note}`);
    }
    for (const m of s.equivalent) out.push(`- disabled as equivalent: line ${m.line}, ${m.mutator}: ${m.reason}`);
    out.push('');
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const forceAll = args.includes('--force');
  // --report: write REPORT.md from results.json again, running nothing (e.g. after merging
  // results.json from branches that each ran their own files).
  const reportOnly = args.includes('--report');
  const only = args.filter((a) => a !== '--force' && a !== '--report');
  const targets = reportOnly ? [] : only.length > 0 ? TARGETS.filter((t) => only.includes(t.file)) : TARGETS;
  if (targets.length === 0 && !reportOnly) throw new Error(`no target matches ${only.join(' ')}; targets are in mutation/targets.ts`);
  for (const t of targets) for (const f of [t.file, ...t.tests]) if (!existsSync(f)) throw new Error(`${f} (mutation/targets.ts) does not exist`);
  mkdirSync('reports', { recursive: true });
  // Results of files not run this time are kept from the last run, so the report stays whole.
  const previous: FileSummary[] = existsSync(RESULTS) ? (JSON.parse(readFileSync(RESULTS, 'utf8')) as FileSummary[]) : [];
  const byFile = new Map(previous.map((s) => [s.file, s]));
  for (const t of targets) {
    process.stderr.write(`\n== ${t.file} (${t.tests.join(' ')})\n`);
    const s = await mutate(t, forceAll);
    byFile.set(t.file, s);
    process.stderr.write(`== ${t.file}: ${s.score.toFixed(1)} % (${s.killed + s.timeout} killed, ${s.survived + s.noCoverage} survived, ${s.ignored} equivalent, ${s.errors} could not run)\n`);
  }
  const all = TARGETS.map((t) => byFile.get(t.file)).filter((s): s is FileSummary => s !== undefined);
  writeFileSync(RESULTS, JSON.stringify(all, null, 1) + '\n');
  writeFileSync(REPORT, render(all));
  updateReadme(all);
  const below = all.filter((s) => s.score < GOAL);
  for (const s of below) process.stderr.write(`below ${GOAL} %: ${s.file} ${s.score.toFixed(1)} %\n`);
  process.exitCode = below.length > 0 ? 1 : 0;
}

await main();
