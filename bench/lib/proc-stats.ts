// What the kernel says a measured process, or the whole machine, used: /proc readings, not the
// programs' own accounts.
import { readFileSync } from 'node:fs';

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
