// Child processes of the benchmark (etcd, hubs, agents, ceiling servers, load generators):
// spawned here, tracked, and all killed when the benchmark ends — normally, on error, or on a
// signal — so no run leaves a process behind.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (bench/lib/ compiles to dist/bench/lib/). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** The built programs the benchmark runs; see useDistSnapshot(). */
export let DIST = fileURLToPath(new URL('../../', import.meta.url));
export let HUB_SCRIPT = `${DIST}hub/main.js`;
export let AGENT_SCRIPT = `${DIST}agent/main.js`;
export let BENCH_LIB = `${DIST}bench/lib/`;

/**
 * Runs every program from a private copy of dist/ in `dir`, so that a rebuild of dist/ during
 * a long run (other people build in the same checkout) cannot change or break what is being
 * measured half-way. node_modules and package.json ("type": "module") are linked beside it.
 */
export function useDistSnapshot(dir: string): void {
  const root = path.join(dir, 'snapshot');
  mkdirSync(root, { recursive: true });
  cpSync(DIST, path.join(root, 'dist'), { recursive: true, filter: (src) => !src.endsWith('.map') });
  symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(root, 'node_modules'), 'dir');
  copyFileSync(path.join(REPO_ROOT, 'package.json'), path.join(root, 'package.json'));
  DIST = path.join(root, 'dist') + '/';
  HUB_SCRIPT = `${DIST}hub/main.js`;
  AGENT_SCRIPT = `${DIST}agent/main.js`;
  BENCH_LIB = `${DIST}bench/lib/`;
}

const running = new Set<ChildProcess>();

process.on('exit', () => {
  for (const child of running) {
    try { child.kill('SIGKILL'); } catch { /* gone */ }
  }
});

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Registers a child so that it is killed with the benchmark. */
export function track(child: ChildProcess): void {
  if (exited(child)) return;
  running.add(child);
  child.once('exit', () => running.delete(child));
}

/** SIGKILLs every child still running and waits for them to go. */
export async function killAll(): Promise<void> {
  const children = [...running];
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  await Promise.all(children.map((c) => waitForExit(c, 5000)));
}

export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onExit = () => { clearTimeout(timer); resolve(true); };
    const timer = setTimeout(() => { child.off('exit', onExit); resolve(false); }, timeoutMs);
    child.once('exit', onExit);
  });
}

export async function waitFor(
  condition: () => Promise<boolean> | boolean,
  { timeoutMs = 15_000, intervalMs = 20, message = 'condition' } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try { if (await condition()) return; } catch (e) { lastError = e; }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}${lastError ? ` (last error: ${lastError instanceof Error ? String(lastError) : JSON.stringify(lastError)})` : ''}`);
    }
    await sleep(intervalMs);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface Proc {
  name: string;
  proc: ChildProcess;
  pid: number;
  output(): string;
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Signal, wait (SIGKILL after timeoutMs). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<void>;
  kill(): Promise<void>;
  readonly running: boolean;
}

export interface SpawnOptions {
  nodeArgs?: string[];
  env?: Record<string, string | undefined>;
  /** Open an IPC channel (child_process.fork style): the child can process.send(). */
  ipc?: boolean;
  /** Keep this many lines of output for error messages (default 200). */
  keepLines?: number;
}

/** Starts `command` with piped output kept for error messages. */
export function spawnProgram(name: string, command: string, args: string[], opts: SpawnOptions = {}): Proc {
  const stdio: StdioOptions = opts.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'];
  const child = spawn(command, args, { cwd: REPO_ROOT, env: { ...process.env, ...opts.env }, stdio });
  track(child);
  const keep = opts.keepLines ?? 200;
  const lines: string[] = [];
  const watchers = new Set<(line: string) => void>();
  for (const stream of [child.stdout!, child.stderr!]) {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        if (lines.length > keep) lines.shift();
        for (const w of watchers) w(line);
      }
    });
  }
  const label = `${name} (pid ${child.pid})`;
  const output = () => lines.join('\n');
  return {
    name,
    proc: child,
    pid: child.pid!,
    output,
    get running() { return !exited(child); },
    waitForLine(re, timeoutMs = 15_000) {
      const seen = lines.find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const done = () => { clearTimeout(timer); watchers.delete(onLine); child.off('exit', onExit); };
        const onLine = (l: string) => { if (re.test(l)) { done(); resolve(l); } };
        const onExit = () => { done(); reject(new Error(`${label} exited before printing ${re}:\n${output()}`)); };
        const timer = setTimeout(() => { done(); reject(new Error(`${label} printed no ${re} within ${timeoutMs} ms:\n${output()}`)); }, timeoutMs);
        watchers.add(onLine);
        child.once('exit', onExit);
      });
    },
    async stop(signal = 'SIGTERM', timeoutMs = 10_000) {
      if (exited(child)) return;
      child.kill(signal);
      if (await waitForExit(child, timeoutMs)) return;
      child.kill('SIGKILL');
      await waitForExit(child, 5000);
    },
    async kill() {
      if (!exited(child)) child.kill('SIGKILL');
      await waitForExit(child, 5000);
    },
  };
}

/** Runs a Node program of this repository (a dist/ script). */
export function spawnNode(name: string, script: string, args: string[], opts: SpawnOptions = {}): Proc {
  if (!existsSync(script)) throw new Error(`${script} does not exist: run \`npm run build\` first`);
  return spawnProgram(name, process.execPath, [...(opts.nodeArgs ?? []), script, ...args], opts);
}

/** Runs a command to completion and returns its output. */
export function runCommand(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

// ---------------------------------------------------------------------------
// /proc readings
// ---------------------------------------------------------------------------

const CLOCK_TICKS_PER_SEC = 100; // Linux USER_HZ on every common distribution

export interface ProcReading {
  /** Resident set size now, bytes. */
  rss: number;
  /** Peak resident set size (VmHWM), bytes. */
  rssPeak: number;
  /** User + system CPU time used so far, ms. */
  cpuMs: number;
}

export function readProc(pid: number): ProcReading {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after the last ")".
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
  return { rss: kb('VmRSS'), rssPeak: kb('VmHWM'), cpuMs: (ticks * 1000) / CLOCK_TICKS_PER_SEC };
}

/** CPU use of `pid` between two readings, as a fraction of one core. */
export function cpuShare(before: ProcReading, after: ProcReading, wallMs: number): number {
  return wallMs > 0 ? (after.cpuMs - before.cpuMs) / wallMs : NaN;
}

/**
 * Established TCP connections whose local port is `port` (the server side of connections to
 * it), read from /proc/net/tcp{,6}: real sockets, counted by the kernel, not by the program.
 */
export function countEstablished(port: number): number {
  let n = 0;
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try { text = readFileSync(file, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 4) continue;
      if (cols[1].endsWith(`:${hex}`) && cols[3] === '01') n++;
    }
  }
  return n;
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

export interface HttpResult { status: number; body: string; bytes: number; headers: http.IncomingHttpHeaders }

/** One GET on a fresh connection. */
export function httpGet(url: string, timeoutMs = 10_000): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        const buf = Buffer.concat(chunks);
        resolve({ status: res.statusCode!, body: buf.toString('utf8'), bytes: buf.length, headers: res.headers });
      });
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(new Error(`GET ${url}: timeout`)), timeoutMs);
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

/** Prometheus text → value of the first sample named `name` (labels ignored unless given in `name`). */
export function metricValue(text: string, name: string): number {
  const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${esc}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

/** Sum of every sample of `name` whose labels contain all of `labels` ('k="v"' strings). */
export function metricSum(text: string, name: string, labels: string[] = []): number {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([^{\s]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (!labels.every((l) => (m[2] ?? '').includes(l))) continue;
    sum += Number(m[3]);
    found = true;
  }
  return found ? sum : NaN;
}

/** Whole-machine CPU counters from /proc/stat (jiffies), for "how busy was the machine". */
export function readMachineCpu(): { busy: number; total: number } {
  const first = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = first.reduce((a, b) => a + b, 0);
  const idle = (first[3] ?? 0) + (first[4] ?? 0);
  return { busy: total - idle, total };
}

/** Share of all cores busy between two readings (0..1). */
export function machineBusy(a: { busy: number; total: number }, b: { busy: number; total: number }): number {
  return b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : NaN;
}
