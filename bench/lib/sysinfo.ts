// The machine a run happened on, for the head of RESULTS.md.
import { spawnSync } from 'node:child_process';
import os from 'node:os';

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
