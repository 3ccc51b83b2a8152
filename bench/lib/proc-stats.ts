// What the kernel says a measured process, or the whole machine, used: /proc readings, not the
// programs' own accounts.
import { readdirSync, readFileSync } from 'node:fs';

const CLOCK_TICKS_PER_SEC = 100; // Linux USER_HZ on every common distribution

export interface ProcReading {
  /** Resident set size now, bytes. */
  rss: number;
  /** Peak resident set size (VmHWM), bytes. */
  rssPeak: number;
  /** User + system CPU time used so far, ms. */
  cpuMs: number;
}

/** A "Field:  123 kB" line of a /proc text (status, smaps_rollup), in bytes; NaN when absent. */
function kbField(text: string, field: string): number {
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
}

export function readProc(pid: number): ProcReading {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rss: kbField(status, 'VmRSS'), rssPeak: kbField(status, 'VmHWM'), cpuMs: statCpuMs(`/proc/${pid}`) };
}

/**
 * A process's resident memory split by where its pages come from (/proc/<pid>/smaps_rollup):
 * mapped from files — the node binary's code and data, which every node process on the machine
 * maps from the same file, and which the kernel can drop and read again — or anonymous (heaps,
 * stacks: the process's own). RSS counts both.
 */
export interface MemoryMap {
  /** Bytes. */
  rss: number;
  anonymous: number;
  /** rss − anonymous: file pages (and shared memory). */
  fromFiles: number;
}

export function parseSmapsRollup(text: string): MemoryMap {
  const rss = kbField(text, 'Rss');
  const anonymous = kbField(text, 'Anonymous');
  return { rss, anonymous, fromFiles: rss - anonymous };
}

export function readMemoryMap(pid: number): MemoryMap {
  return parseSmapsRollup(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
}

/** utime and stime of a /proc/<pid> or /proc/<pid>/task/<tid> directory, ms (clock-tick resolution). */
function statTimes(dir: string): { userMs: number; sysMs: number } {
  const stat = readFileSync(`${dir}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after the last ")".
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime, stime (fields 14 and 15)
  return { userMs: (Number(fields[11]) * 1000) / CLOCK_TICKS_PER_SEC, sysMs: (Number(fields[12]) * 1000) / CLOCK_TICKS_PER_SEC };
}

function statCpuMs(dir: string): number {
  const t = statTimes(dir);
  return t.userMs + t.sysMs;
}

export interface ThreadReading {
  /** utime + stime from the thread's stat, ms (10 ms clock ticks). */
  cpuMs: number;
  /** The stime part: in the kernel (on loopback, a send also runs the receiving side of TCP). */
  sysMs: number;
  /** Time on a CPU from the thread's schedstat, ms (nanosecond resolution; NaN without schedstats). */
  runMs: number;
  /** Time runnable but waiting for a CPU (the run queue), from schedstat, ms (NaN without schedstats). */
  waitMs: number;
}

/** One thread of `pid` (the main thread's id is the pid). */
export function readThread(pid: number, tid: number): ThreadReading {
  const dir = `/proc/${pid}/task/${tid}`;
  let runMs = NaN;
  let waitMs = NaN;
  try {
    const [run, wait] = readFileSync(`${dir}/schedstat`, 'utf8').split(' ');
    runMs = Number(run) / 1e6;
    waitMs = Number(wait) / 1e6;
  } catch { /* kernel without schedstats */ }
  const t = statTimes(dir);
  return { cpuMs: t.userMs + t.sysMs, sysMs: t.sysMs, runMs, waitMs };
}

/** Every thread of `pid` now, by thread id (threads that exit between the listing and the read are left out). */
export function readThreads(pid: number): Map<number, ThreadReading> {
  const out = new Map<number, ThreadReading>();
  for (const name of readdirSync(`/proc/${pid}/task`)) {
    try { out.set(Number(name), readThread(pid, Number(name))); } catch { /* gone */ }
  }
  return out;
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
