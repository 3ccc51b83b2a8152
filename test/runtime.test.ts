// The runtime lainlet needs, checked at start (shared/runtime.ts): a native uWebSockets.js
// binary for the hub tier (and a standalone agent's embedded hub), and zlib.crc32 for the
// agent's state file — with package.json's "engines" saying the same.
//
// The unsupported runtimes are simulated in child processes the way they really fail:
// - another Node ABI: a --require preload makes process.versions.modules say 127 (Node 22), so
//   the package looks for binaries/uws_<platform>_<arch>_127.node, does not find it, and loads
//   its JavaScript fallback, exactly as on Node 22;
// - a binary that does not load: a preload makes require() of uws_*.node throw;
// - UWS_USE_FALLBACK=1, the package's own switch;
// - Node before 20.15: a module hook serves node:zlib without crc32, so agent/persist.ts's
//   `import { crc32 } from 'node:zlib'` is the same link error as there.
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { crc32Problem, isNativeUws, nodeMajorOfAbi, uwsBinaryAbis } from '../shared/runtime.js';
import { run, type Run } from './helpers/cli.js';

const require = createRequire(import.meta.url);
let dir: string;
const env: Record<string, Record<string, string>> = {};

test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'lainlet-runtime-'));
  writeFileSync(join(dir, 'abi127.cjs'), "Object.defineProperty(process.versions, 'modules', { value: '127' });\n");
  writeFileSync(join(dir, 'unloadable.cjs'), `const Module = require('node:module');
const load = Module._extensions['.node'];
Module._extensions['.node'] = function (module, filename) {
  if (/uws_[^/]*\\.node$/.test(filename)) throw new Error('simulated: cannot load ' + filename);
  return load.call(this, module, filename);
};
`);
  writeFileSync(join(dir, 'zlib-hooks.mjs'), `import zlib from 'node:zlib';
const names = Object.keys(zlib).filter((k) => k !== 'crc32' && /^[A-Za-z_$][\\w$]*$/.test(k));
const source = "import z from 'node:zlib';\\nconst { crc32: _omitted, ...rest } = z;\\nexport default rest;\\n" + names.map((n) => 'export const ' + n + ' = z.' + n + ';').join('\\n');
const FAKE = 'data:text/javascript,' + encodeURIComponent(source);
export async function resolve(specifier, context, next) {
  if ((specifier === 'node:zlib' || specifier === 'zlib') && !context.parentURL?.startsWith('data:')) return { url: FAKE, shortCircuit: true };
  return next(specifier, context);
}
`);
  writeFileSync(join(dir, 'no-crc32.mjs'), `import { register } from 'node:module';\nregister(new URL('./zlib-hooks.mjs', import.meta.url));\n`);
  env.abi127 = { NODE_OPTIONS: `--require ${join(dir, 'abi127.cjs')}` };
  env.unloadable = { NODE_OPTIONS: `--require ${join(dir, 'unloadable.cjs')}` };
  env.fallbackFlag = { UWS_USE_FALLBACK: '1' };
  env.noCrc32 = { NODE_OPTIONS: `--import ${join(dir, 'no-crc32.mjs')}` };
});

test.after.always(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

test('isNativeUws tells the real addon from the package\'s JavaScript fallback', (t) => {
  t.true(isNativeUws(require('uWebSockets.js')));
  // What src/uws.js returns when the binary does not load.
  t.false(isNativeUws(require('uWebSockets.js/dist/index.js')));
  t.false(isNativeUws({ App() {}, SSLApp() {}, us_listen_socket_close() {} }));
  t.false(isNativeUws({ App: Math.max })); // native, but not the addon's shape
  t.false(isNativeUws(undefined));
  t.false(isNativeUws(null));
});

test('crc32Problem: none with zlib.crc32, a clear reason without it', (t) => {
  t.is(crc32Problem(zlib), undefined);
  t.is(crc32Problem(), undefined);
  t.regex(crc32Problem({})!, /has no zlib\.crc32.*Node\.js 20\.15/);
});

test('package.json "engines" states the range that runs: zlib.crc32 from 20.15, and only majors uWebSockets.js has binaries for', (t) => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { engines: { node: string } };
  const m = /^>=(\d+)\.(\d+)\.(\d+) <(\d+)$/.exec(pkg.engines.node);
  if (!m) { t.fail(`engines.node ${JSON.stringify(pkg.engines.node)} is not ">=X.Y.Z <M"`); return; }
  const [lowMajor, lowMinor, upper] = [Number(m[1]), Number(m[2]), Number(m[4])];
  t.true(lowMajor > 20 || (lowMajor === 20 && lowMinor >= 15), 'zlib.crc32 came in Node.js 20.15');
  const majors = uwsBinaryAbis().map(nodeMajorOfAbi);
  for (let major = lowMajor; major < upper; major++) t.true(majors.includes(major), `uWebSockets.js ships a ${process.platform}-${process.arch} binary for Node.js ${major}`);
  t.true(upper > lowMajor);
  const [maj, min] = process.versions.node.split('.').map(Number) as [number, number];
  t.true((maj > lowMajor || (maj === lowMajor && min >= lowMinor)) && maj < upper, `this Node.js ${process.version} is in the range`);
});

function failedAtStart(t: import('ava').ExecutionContext, r: Run, program: string, reason: RegExp): void {
  const all = `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  t.false(r.started, `${program} started on a runtime it cannot serve on\n${all}`);
  t.is(r.code, 1, all);
  t.regex(r.stderr, new RegExp(`^${program}: .+\\n$`), `one line\n${all}`);
  t.regex(r.stderr, reason, all);
  t.notRegex(r.stderr, /performance may be degraded|^\s+at /m, all);
}

const NO_BINARY = /uWebSockets\.js has no working native binary for this Node\.js \(v[\d.]+, [\w-]+, module ABI 127\) and fell back to a JavaScript stand-in that cannot publish to agents: its [\w-]+ binaries are for module ABIs .*115 = Node\.js 20.*; run Node\.js 20\.15 or a later 20\.x \(Error: Cannot find module '..\/binaries\/uws_\w+_\w+_127\.node'\)/;

test('lainlet-hub on a Node ABI without a uWebSockets.js binary fails at start, saying so', async (t) => {
  failedAtStart(t, await run('hub', ['--store', 'memory', '--listen', '127.0.0.1:0'], { env: env.abi127 }), 'lainlet-hub', NO_BINARY);
});

test('lainlet-hub fails at start when the binary is there but does not load, or UWS_USE_FALLBACK asks for the fallback', async (t) => {
  failedAtStart(t, await run('hub', ['--store', 'memory', '--listen', '127.0.0.1:0'], { env: env.unloadable }), 'lainlet-hub',
    /fell back to a JavaScript stand-in that cannot publish to agents: its binary for this ABI is there but did not load, reinstall it \(npm ci\) \(Error: simulated: cannot load .*uws_.*\.node\)/);
  failedAtStart(t, await run('hub', ['--store', 'memory', '--listen', '127.0.0.1:0'], { env: env.fallbackFlag }), 'lainlet-hub', /UWS_USE_FALLBACK=1 asks for it; unset it/);
});

test('a standalone agent (embedded hub) on a Node ABI without a uWebSockets.js binary fails at start', async (t) => {
  failedAtStart(t, await run('agent', ['-web', '127.0.0.1:0', '-etcd', '127.0.0.1:2379'], { env: env.abi127 }), 'lainlet-agent', NO_BINARY);
});

test('an agent in hub mode does not need uWebSockets.js: it starts on that runtime', async (t) => {
  const r = await run('agent', ['-web', '127.0.0.1:0', '-hub', 'ws://127.0.0.1:1'], { env: env.abi127 });
  t.true(r.started, r.stdout + r.stderr);
});

test('the agent on a Node without zlib.crc32 fails at start with one line, not a link error\'s stack trace', async (t) => {
  failedAtStart(t, await run('agent', ['-web', '127.0.0.1:0', '-hub', 'ws://127.0.0.1:1'], { env: env.noCrc32 }), 'lainlet-agent',
    /has no zlib\.crc32, which the agent's state file needs \(added in Node\.js 20\.15\): run Node\.js 20\.15 or a later 20\.x/);
});

test('npm start checks both: no uWebSockets.js binary, no zlib.crc32', async (t) => {
  failedAtStart(t, await run('demo', [], { env: { ...env.abi127, LAINLET_DEMO_PORT: '0' } }), 'lainlet-demo', NO_BINARY);
  failedAtStart(t, await run('demo', [], { env: { ...env.noCrc32, LAINLET_DEMO_PORT: '0' } }), 'lainlet-demo', /has no zlib\.crc32/);
});
