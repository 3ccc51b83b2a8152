// What lainlet needs of the Node.js it runs on, checked at start so an unsupported runtime
// fails with one clear line instead of half-working:
//
// - zlib.crc32 (agent/persist.ts checksums the persisted state): Node 20.15 and later. On an
//   older Node the static `import { crc32 } from 'node:zlib'` is a link error with a stack
//   trace, so the mains import the agent only after this check.
// - a native uWebSockets.js binary (the hub, and an agent in standalone mode, which embeds a
//   hub). The package (@trufflesuite/uws-js-unofficial, src/uws.js) requires
//   binaries/uws_<platform>_<arch>_<process.versions.modules>.node and, when that fails (no
//   binary for this Node ABI) or UWS_USE_FALLBACK is set, logs "Falling back to a NodeJS
//   implementation; performance may be degraded" and returns dist/index.js — a JavaScript
//   stand-in without SSLApp whose publish() throws "Not implemented". A hub on it listens and
//   accepts agents, and then never sends them a delta.
//
// Both are checked by the mains (hub/main.ts, agent/main.ts, demo/main.ts); package.json's
// "engines" states the same range.
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import zlib from 'node:zlib';

/** The Node.js major version of each module ABI (process.versions.modules). */
const NODE_OF_ABI: Record<number, number> = { 83: 14, 88: 15, 93: 16, 102: 17, 108: 18, 111: 19, 115: 20, 120: 21, 127: 22, 131: 23, 137: 24 };

/** The Node.js major version of a module ABI, or undefined for one this table does not know. */
export function nodeMajorOfAbi(abi: number): number | undefined { return NODE_OF_ABI[abi]; }

export const SUPPORTED_NODE = 'Node.js 20.15 or a later 20.x';

/** Why this runtime's zlib cannot checksum the agent's state file, or undefined if it can. */
export function crc32Problem(z: { crc32?: unknown } = zlib): string | undefined {
  if (typeof z.crc32 === 'function') return undefined;
  return `this Node.js (${process.version}) has no zlib.crc32, which the agent's state file needs (added in Node.js 20.15): run ${SUPPORTED_NODE}`;
}

function isNativeFunction(f: unknown): boolean {
  return typeof f === 'function' && /\{\s*\[native code\]\s*\}$/.test(Function.prototype.toString.call(f));
}

/**
 * True for the real uWebSockets.js addon, false for its JavaScript fallback (or anything else):
 * the addon's App, SSLApp and us_listen_socket_close are native functions; the fallback's are
 * JavaScript and it has no SSLApp at all.
 */
export function isNativeUws(mod: unknown): boolean {
  if (mod === null || (typeof mod !== 'object' && typeof mod !== 'function')) return false;
  const m = mod as Record<string, unknown>;
  return ['App', 'SSLApp', 'us_listen_socket_close'].every((name) => isNativeFunction(m[name]));
}

export interface UwsLoad {
  native: boolean;
  /** What the package printed while loading (its fallback warning and the cause). */
  printed: string[];
}

let loaded: UwsLoad | undefined;

/**
 * Loads uWebSockets.js (once; later imports get the same module from the CommonJS cache) with
 * its console output held back, so a missing binary is reported by uwsProblem() in one line
 * instead of by the package's misleading "performance may be degraded".
 */
export function loadUws(): UwsLoad {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const printed: string[] = [];
  const { log, warn } = console;
  console.log = console.warn = (...args: unknown[]) => { printed.push(args.map(String).join(' ')); };
  let mod: unknown;
  try {
    mod = require('uWebSockets.js');
  } finally {
    console.log = log;
    console.warn = warn;
  }
  loaded = { native: isNativeUws(mod), printed };
  // Whatever a working load printed is not ours to swallow.
  if (loaded.native) for (const line of printed) process.stderr.write(`${line}\n`);
  return loaded;
}

/** The module ABIs uWebSockets.js ships binaries for on this platform and architecture. */
export function uwsBinaryAbis(): number[] {
  const require = createRequire(import.meta.url);
  try {
    const dir = join(dirname(require.resolve('uWebSockets.js')), '..', 'binaries');
    const re = new RegExp(`^uws_${process.platform}_${process.arch}_(\\d+)\\.node$`);
    return readdirSync(dir).map((f) => re.exec(f)?.[1]).filter((abi): abi is string => abi !== undefined).map(Number).sort((a, b) => a - b);
  } catch {
    return [];
  }
}

function describeAbi(abi: number): string {
  const node = NODE_OF_ABI[abi];
  return node === undefined ? `${abi}` : `${abi} = Node.js ${node}`;
}

/** Why uWebSockets.js cannot serve agents on this runtime, or undefined if it can. */
export function uwsProblem(): string | undefined {
  const { native, printed } = loadUws();
  if (native) return undefined;
  const abi = Number(process.versions.modules);
  const have = uwsBinaryAbis();
  const platform = `${process.platform}-${process.arch}`;
  const head = `uWebSockets.js has no working native binary for this Node.js (${process.version}, ${platform}, module ABI ${abi}) and fell back to a JavaScript stand-in that cannot publish to agents`;
  // The values src/uws.js takes as "use the fallback".
  if (['true', 'True', 'TRUE', '1'].includes(process.env.UWS_USE_FALLBACK ?? '')) {
    return `${head}: UWS_USE_FALLBACK=${process.env.UWS_USE_FALLBACK} asks for it; unset it`;
  }
  const cause = printed.join('\n').split('\n').map((l) => l.trim()).find((l) => /error/i.test(l)) ?? 'the binary did not load';
  if (have.includes(abi)) return `${head}: its binary for this ABI is there but did not load, reinstall it (npm ci) (${cause})`;
  const shipped = have.length > 0 ? `its ${platform} binaries are for module ABIs ${have.map(describeAbi).join(', ')}` : `it ships no binary for ${platform}`;
  return `${head}: ${shipped}; run ${SUPPORTED_NODE} (${cause})`;
}

/** Every problem with this runtime for a program that needs `needs`; empty when it can run. */
export function runtimeProblems(needs: { uws?: boolean; crc32?: boolean }): string[] {
  const problems: string[] = [];
  if (needs.crc32) { const p = crc32Problem(); if (p) problems.push(p); }
  if (needs.uws) { const p = uwsProblem(); if (p) problems.push(p); }
  return problems;
}
