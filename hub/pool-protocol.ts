// What the hub's main thread and its worker threads say to each other (hub/pool.ts,
// hub/worker.ts), and the shared block of counters each worker writes and the main thread
// sums. Deltas and progress go through the frame ring (hub/ring.ts), never as messages: the
// messages are the rare things — a worker starting or falling behind, a snapshot, a store
// read, a /metrics scrape, shutdown.
import { COUNTER_NAMES, type AgentInfo, type HubCounters } from './fanout.js';
import type { RingSize } from './ring.js';
import type { HubServerOptions } from './server.js';
import type { StateSummary } from './worker-state.js';

export interface WorkerInit {
  index: number;
  ring: { sab: SharedArrayBuffer; size: RingSize };
  counters: SharedArrayBuffer;
  /** The server's options, except what cannot cross threads (functions). */
  server: Omit<HubServerOptions, 'authorize' | 'routes' | 'counters' | 'onAgentCount' | 'hubAgentCount' | 'sharedPort'>;
  /** The bearer token agents must present (the worker builds its own checker). */
  token?: string;
  /** Paths of the extra routes; the main thread answers them. */
  routes: string[];
  logLevel: string;
}

export type WorkerToMain =
  | { t: 'listening'; port: number }
  /** Where to start reading the ring: at start, and after an overrun. */
  | { t: 'summary?' }
  | { t: 'snap?'; reset: boolean }
  | { t: 'probe?'; id: number }
  /** Agents wait at revisions up to aheadRev, past the hub's: list the present (rate-limited there). */
  | { t: 'list?'; why: string; aheadRev: number }
  | { t: 'route?'; id: number; path: string }
  | { t: 'log'; line: string }
  | { t: 'drained' }
  | { t: 'stalling' }
  | { t: 'moved'; id: number; asked: number }
  | { t: 'agents'; id: number; agents: AgentInfo[] }
  | { t: 'crashed'; error: string };

export type MainToWorker =
  | { t: 'summary'; seq: number; summary: StateSummary }
  /** A snapshot at `rev`, taken when the ring held `seq` records: `parts` are [offset, length] in `sab`. */
  | { t: 'snap'; reset: boolean; seq: number; rev: number; sab: SharedArrayBuffer; parts: Array<[number, number]> }
  | { t: 'probe'; id: number; revision: number; error?: string }
  | { t: 'route'; id: number; status: number; contentType: string; body: string }
  | { t: 'drain'; spreadMs: number; graceMs: number; targets: string[] }
  | { t: 'members'; frame: Uint8Array }
  | { t: 'move'; id: number; count: number; targets: string[]; reason: string; spreadMs: number }
  | { t: 'agents?'; id: number }
  | { t: 'close' }
  /** Fault injection (tests): throw as a bug would; block the thread for `ms` (a long pause). */
  | { t: 'crash'; why: string }
  | { t: 'stall'; ms: number };

/** Gauges a worker keeps beside its counters. */
export interface WorkerGauges {
  agents: number;
  /** Agents told to move that are still connected. */
  moving: number;
  /** Ring records published that the worker has not read yet (last seen). */
  lag: number;
  overruns: number;
}

const GAUGE_NAMES: ReadonlyArray<keyof WorkerGauges> = ['agents', 'moving', 'lag', 'overruns'];
const FIELDS = COUNTER_NAMES.length + GAUGE_NAMES.length;

/** The shared block of counters for `workers` workers (Float64 fields; one writer per block). */
export function counterBlocks(workers: number): SharedArrayBuffer {
  return new SharedArrayBuffer(8 * FIELDS * workers);
}

/**
 * Worker `index`'s counters and gauges as plain properties over its block (a HubServer bumps
 * them as it would a plain object), and the whole hub's connected agents. A block is written by
 * one worker only and read by the main thread; an 8-byte aligned double is written whole.
 */
export function workerCounters(sab: SharedArrayBuffer, index: number): { counters: HubCounters; gauges: WorkerGauges; hubAgents(): number } {
  const all = new Float64Array(sab);
  const base = index * FIELDS;
  const view = <K extends string>(names: ReadonlyArray<K>, offset: number) => {
    const o = {} as Record<K, number>;
    names.forEach((name, i) => Object.defineProperty(o, name, {
      get: () => all[base + offset + i],
      set: (v: number) => { all[base + offset + i] = v; },
      enumerable: true,
    }));
    return o;
  };
  return {
    counters: view(COUNTER_NAMES, 0),
    gauges: view(GAUGE_NAMES, COUNTER_NAMES.length),
    hubAgents: () => hubAgents(sab),
  };
}

/** Field `field` summed over every worker's block. */
function sumField(all: Float64Array, field: number): number {
  let n = 0;
  for (let base = 0; base < all.length; base += FIELDS) n += all[base + field];
  return n;
}

/** Agents connected, over all workers. */
export function hubAgents(sab: SharedArrayBuffer): number { return sumField(new Float64Array(sab), COUNTER_NAMES.length); }

/** Agents told to move, over all workers. */
export function hubMoving(sab: SharedArrayBuffer): number { return sumField(new Float64Array(sab), COUNTER_NAMES.length + 1); }

/** The counters of all workers, summed (a fresh object). */
export function summedCounters(sab: SharedArrayBuffer): HubCounters {
  const all = new Float64Array(sab);
  const out = {} as HubCounters;
  COUNTER_NAMES.forEach((name, i) => { out[name] = sumField(all, i); });
  return out;
}
