// Where the repository and its built programs are, for the tests and the benchmark alike.
import { copyFileSync, cpSync, mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * This file runs from source under the tests (tsx: <root>/testkit/) and built under the
 * benchmark (<root>/dist/testkit/, or a snapshot's copy of dist/: see useDistSnapshot).
 */
const HERE = fileURLToPath(new URL('.', import.meta.url));
const BUILT = path.basename(path.dirname(HERE)) === 'dist';

/** The repository root (for a snapshot, the snapshot's root: node_modules and package.json are there). */
export const REPO_ROOT = path.resolve(HERE, BUILT ? '../..' : '..') + path.sep;
/** The built programs; live bindings, so that useDistSnapshot() moves every later start. */
export let DIST = BUILT ? path.resolve(HERE, '..') + path.sep : path.join(REPO_ROOT, 'dist') + path.sep;
export let HUB_SCRIPT = `${DIST}hub/main.js`;
export let AGENT_SCRIPT = `${DIST}agent/main.js`;
/** The benchmark's own child programs (load generators, ceiling servers). */
export let BENCH_LIB = `${DIST}bench/lib/`;

/**
 * Runs every program from a private copy of dist/ in `dir`, so that a rebuild of dist/ during
 * a long run (other people build in the same checkout) cannot change or break what is being
 * measured half-way. node_modules and package.json ("type": "module") are linked beside it.
 */
export function useDistSnapshot(dir: string): void {
  const root = path.join(dir, 'snapshot');
  mkdirSync(root, { recursive: true });
  // Source maps stay out, but for the agent's bundle (build/bundle-agent.mjs): bench/lib/cpuprofile.ts
  // reads it to name the bundled files in profiles.
  cpSync(DIST, path.join(root, 'dist'), { recursive: true, filter: (src) => !src.endsWith('.map') || src.endsWith(`${path.sep}agent${path.sep}main.js.map`) });
  symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(root, 'node_modules'), 'dir');
  copyFileSync(path.join(REPO_ROOT, 'package.json'), path.join(root, 'package.json'));
  DIST = path.join(root, 'dist') + path.sep;
  HUB_SCRIPT = `${DIST}hub/main.js`;
  AGENT_SCRIPT = `${DIST}agent/main.js`;
  BENCH_LIB = `${DIST}bench/lib/`;
}
