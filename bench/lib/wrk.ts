// Runs wrk (Debian's package) and parses its report.
import { existsSync } from 'node:fs';
import { runCommand } from '../../testkit/procs.js';

export interface WrkResult {
  requestsPerSec: number;
  transferBytesPerSec: number;
  requests: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  non2xx: number;
  socketErrors: string;
}

export function findWrk(): string | null {
  for (const p of ['/usr/bin/wrk', '/usr/local/bin/wrk']) if (existsSync(p)) return p;
  return null;
}

const UNIT: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
const TIME: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function parseTime(s: string | undefined): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(s ?? '');
  return m ? Number(m[1]) * TIME[m[2]] : NaN;
}

export function parseWrk(out: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const tr = /Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB|TB)/.exec(out);
  const total = /(\d+) requests in/.exec(out);
  const lat = (p: string) => parseTime(new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out)?.[1]);
  return {
    requestsPerSec: rps ? Number(rps[1]) : NaN,
    transferBytesPerSec: tr ? Number(tr[1]) * UNIT[tr[2]] : NaN,
    requests: total ? Number(total[1]) : 0,
    latencyP50Ms: lat('50'),
    latencyP99Ms: lat('99'),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    socketErrors: /Socket errors: (.*)/.exec(out)?.[1] ?? '',
  };
}

export async function runWrk(wrk: string, url: string, opts: { threads: number; connections: number; seconds: number }): Promise<WrkResult> {
  const r = await runCommand(wrk, [`-t${opts.threads}`, `-c${opts.connections}`, `-d${opts.seconds}s`, '--latency', url]);
  if (r.code !== 0) throw new Error(`wrk ${url} exited ${r.code}: ${r.stderr || r.stdout}`);
  return parseWrk(r.stdout);
}
