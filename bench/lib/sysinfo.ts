// The machine a run happened on, for the head of RESULTS.md.
import { execFileSync, spawnSync } from 'node:child_process';
import os from 'node:os';
import { median } from './stats.js';

export interface SystemInfo {
  cpuModel: string;
  cpuCount: number;
  memTotalBytes: number;
  node: string;
  os: string;
  etcd: string;
  wrk: string;
  date: string;
  /** The commit the run was built from, and files changed from it outside bench/ (a dirty tree). */
  commit: string;
  dirty: string[];
}

/** stdout + stderr of a command (wrk --version exits 1), or 'not found'. */
function tryRun(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return 'not found';
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
}

export function systemInfo(repoRoot: string): SystemInfo {
  const cpus = os.cpus();
  let osName = `${os.type()} ${os.release()}`;
  const pretty = /^PRETTY_NAME="?([^"\n]+)"?/m.exec(tryRun('cat', ['/etc/os-release']))?.[1];
  if (pretty) osName = `${pretty}, kernel ${os.release()}`;
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpuCount: cpus.length,
    memTotalBytes: os.totalmem(),
    node: process.version,
    os: osName,
    etcd: /etcd Version: (\S+)/.exec(tryRun('etcd', ['--version']))?.[1] ?? 'not found',
    wrk: tryRun('wrk', ['--version']).split('\n')[0]?.replace(/ Copyright.*/, '') ?? 'not found',
    date: new Date().toISOString(),
    commit: tryRun('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']),
    dirty: (spawnSync('git', ['-C', repoRoot, 'status', '--porcelain'], { encoding: 'utf8' }).stdout ?? '')
      .split('\n').map((l) => l.slice(3).trim()).filter((f) => f && !f.startsWith('bench/')),
  };
}

/** How fast the machine is at one moment: figures to compare across runs before any absolute one. */
export interface MachineSpeed {
  /** Median wall time of a bare `node -e 0` (spawn to exit), ms. */
  nodeStartMs: number;
  /** Median time of a JSON.parse of a fixed ~1 MB text in this process, ms. */
  jsonParseMs: number;
}

/** A fixed text of ~1 MB shaped like lainlet's values (objects, strings, numbers). */
const YARDSTICK_JSON = JSON.stringify(Array.from({ length: 7000 }, (_, i) => ({
  name: `app${i}.web.web`, instance: i % 7, ip: `172.20.${i >> 8}.${i & 255}`, env: ['TZ=Asia/Shanghai', `LAIN_APPNAME=app${i}`, `LAIN_PROCNAME=web${i % 3}`], memory: 268435456 + i,
})));

/** The machine's speed now: 7 bare node starts and 7 parses, medians (a few seconds). */
export function machineSpeed(): MachineSpeed {
  const starts: number[] = [];
  const parses: number[] = [];
  for (let i = 0; i < 7; i++) {
    let t = performance.now();
    execFileSync(process.execPath, ['-e', '0']);
    starts.push(performance.now() - t);
    t = performance.now();
    JSON.parse(YARDSTICK_JSON);
    parses.push(performance.now() - t);
  }
  return { nodeStartMs: median(starts), jsonParseMs: median(parses) };
}
