// Reads a V8 .cpuprofile (node --cpu-prof) and says where the samples fell.
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap, type SourceMapPayload } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

interface CallFrame { functionName: string; url: string; lineNumber: number; columnNumber?: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

/** Only samples taken in [fromMs, toMs] of CLOCK_MONOTONIC (V8's profile clock; see stats.monoMs). */
export interface Window { fromMs: number; toMs: number }

export interface HotSpot { fn: string; where: string; selfShare: number }
export interface Attribution { fn: string; where: string; share: number; ms: number }

interface Loaded { byId: Map<number, ProfileNode>; parent: Map<number, number>; samples: number[]; msPerSample: number; totalMs: number }

type Mapper = (cf: CallFrame) => CallFrame;

/**
 * For a bundle (a .js file whose source map beside it names more than one source: the agent's
 * dist/agent/main.js, build/bundle-agent.mjs), maps frames to where their code was before
 * bundling, so that phases and hot spots name files as for the unbundled program: the
 * project's own sources as their tsc output under dist/ (agent/model/podgroup.ts →
 * dist/agent/model/podgroup.js, with the .ts line), packages as node_modules/<pkg>/… .
 * Undefined for any other file (tsc's one-source maps change nothing worth the time).
 */
function bundleMapper(url: string): Mapper | undefined {
  if (!url.startsWith('file://')) return undefined;
  const file = fileURLToPath(url);
  const mapFile = `${file}.map`;
  const i = file.lastIndexOf(`${path.sep}dist${path.sep}`);
  if (i < 0 || !existsSync(mapFile)) return undefined;
  const payload = JSON.parse(readFileSync(mapFile, 'utf8')) as SourceMapPayload;
  if (payload.sources.length < 2) return undefined;
  const map = new SourceMap(payload);
  const root = file.slice(0, i + 1);
  const dist = file.slice(0, i + 6);
  const resolved = new Map<string, string>();
  const urlOf = (source: string): string => {
    let u = resolved.get(source);
    if (u === undefined) {
      const abs = source.startsWith('file://') ? fileURLToPath(source) : path.resolve(path.dirname(mapFile), source);
      const own = abs.startsWith(root) && !abs.includes(`${path.sep}node_modules${path.sep}`);
      u = pathToFileURL(own ? dist + abs.slice(root.length).replace(/\.ts$/, '.js') : abs).href;
      resolved.set(source, u);
    }
    return u;
  };
  return (cf) => {
    const e = map.findEntry(cf.lineNumber, cf.columnNumber ?? 0) as { originalSource?: string; originalLine?: number; originalColumn?: number };
    if (!e.originalSource) return cf;
    return { functionName: cf.functionName, url: urlOf(e.originalSource), lineNumber: e.originalLine ?? 0, columnNumber: e.originalColumn ?? 0 };
  };
}

/** Rewrites the frames of bundled files in place (bundleMapper). */
function unbundle(p: Profile): void {
  const mappers = new Map<string, Mapper | undefined>();
  for (const n of p.nodes) {
    const url = n.callFrame.url;
    if (!url.endsWith('.js')) continue;
    if (!mappers.has(url)) mappers.set(url, bundleMapper(url));
    const m = mappers.get(url);
    if (m) n.callFrame = m(n.callFrame);
  }
}

function load(file: string, window?: Window): Loaded {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  unbundle(p);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const totalMs = (p.endTime - p.startTime) / 1000;
  const msPerSample = p.samples.length ? totalMs / p.samples.length : 0;
  if (!window) return { byId, parent, samples: p.samples, msPerSample, totalMs };
  const samples: number[] = [];
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    if (t / 1000 >= window.fromMs && t / 1000 <= window.toMs) samples.push(p.samples[i]);
  }
  return { byId, parent, samples, msPerSample, totalMs: samples.length * msPerSample };
}

function where(cf: CallFrame, repoRoot: string): string {
  let w = cf.url.replace(/^file:\/\//, '');
  if (repoRoot && w.startsWith(repoRoot)) w = w.slice(repoRoot.length);
  // Programs may run from a copy of dist/ (procs.useDistSnapshot): name files as dist/...
  w = w.replace(/^.*node_modules\//, 'node_modules/').replace(/^\/.*?\/dist\//, 'dist/');
  return w ? `${w}:${cf.lineNumber + 1}` : '(native/V8)';
}

const isIdle = (cf: CallFrame) => cf.functionName === '(idle)';

/** Functions by self time, largest first (shares of non-idle samples). */
export function hotSpots(file: string, top = 12, repoRoot = '', window?: Window): HotSpot[] {
  const p = load(file, window);
  const counts = new Map<string, number>();
  let total = 0;
  for (const id of p.samples) {
    const cf = p.byId.get(id)!.callFrame;
    if (isIdle(cf)) continue;
    total++;
    const key = `${cf.functionName || '(anonymous)'}\u0000${where(cf, repoRoot)}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, c]) => {
    const [fn, w] = k.split('\u0000') as [string, string];
    return { fn, where: w, selfShare: c / total };
  });
}

/**
 * Each non-idle sample charged to the innermost frame of the project's own compiled code
 * (dist/) on its stack — so time spent inside Node or V8 on behalf of, say, agent/http.js
 * counts for agent/http.js. Samples with no such frame go to `outside`.
 */
export function byOwnCode(file: string, repoRoot: string, window?: Window, outside = '(not under the project\'s code: HTTP parsing, socket I/O, GC)', top = 10): Attribution[] {
  const p = load(file, window);
  const counts = new Map<string, number>();
  let total = 0;
  for (const id of p.samples) {
    if (isIdle(p.byId.get(id)!.callFrame)) continue;
    total++;
    let key = `${outside}\u0000`;
    for (let x: number | undefined = id; x !== undefined; x = p.parent.get(x)) {
      const cf = p.byId.get(x)!.callFrame;
      if (cf.url.includes('/dist/') && !cf.url.includes('/dist/bench/')) { key = `${cf.functionName || '(anonymous)'}\u0000${where(cf, repoRoot)}`; break; }
    }
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, c]) => {
    const [fn, w] = k.split('\u0000') as [string, string];
    return { fn, where: w, share: c / total, ms: c * p.msPerSample };
  });
}

export interface Phase { label: string; match: RegExp }

/**
 * Milliseconds per phase. Phases are in priority order: a sample goes to the first phase that
 * matches ANY frame of its stack (tested against "functionName url"); the rest to "other".
 */
export function phaseTimes(file: string, phases: Phase[], window?: Window): { totalMs: number; phases: Array<{ label: string; ms: number }> } {
  const p = load(file, window);
  const ms = new Map<string, number>(phases.map((ph) => [ph.label, 0]));
  ms.set('other', 0);
  for (const id of p.samples) {
    if (isIdle(p.byId.get(id)!.callFrame)) continue;
    const stack: string[] = [];
    for (let x: number | undefined = id; x !== undefined; x = p.parent.get(x)) {
      const cf = p.byId.get(x)!.callFrame;
      stack.push(`${cf.functionName} ${cf.url}`);
    }
    const phase = phases.find((ph) => stack.some((f) => ph.match.test(f)));
    const label = phase?.label ?? 'other';
    ms.set(label, ms.get(label)! + p.msPerSample);
  }
  return { totalMs: p.totalMs, phases: [...ms.entries()].map(([label, v]) => ({ label, ms: v })) };
}
