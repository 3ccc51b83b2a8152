// The lainlet-agent program is one bundled file (build/bundle-agent.mjs, issue 13: start-up):
// the bin and testkit's AGENT_SCRIPT (so every process test) run dist/agent/main.js, the bundle;
// what it loads at run time is only what it must (no gRPC, etcd3 or hub code without
// -grpc.addr and -etcd, no file of tsc's dist/agent/ on the way); its source map names the
// sources, and bench/lib/cpuprofile.ts maps profiles with it; a SIGTERM on the 'agent listening'
// line is a graceful stop. test/grpc-api.test.ts runs the gRPC mirror through the same bundle.
import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { hotSpots, phaseTimes } from '../bench/lib/cpuprofile.js';
import { freePort } from '../testkit/ports.js';
import { AGENT_SCRIPT, DIST, REPO_ROOT } from '../testkit/paths.js';
import { startAgent } from '../testkit/procs.js';

let dir: string;
let hook: string;

test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'lainlet-bundle-'));
  // Every ESM resolution of the agent (its own files, packages it imports, their ESM
  // imports) appended to $LAINLET_TEST_LOADS, from Node's module hooks.
  writeFileSync(join(dir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  if (process.env.LAINLET_TEST_LOADS) appendFileSync(process.env.LAINLET_TEST_LOADS, r.url + '\\n');
  return r;
}
`);
  hook = join(dir, 'register.mjs');
  writeFileSync(hook, `import { register } from 'node:module';\nregister(new URL('./hooks.mjs', import.meta.url));\n`);
});

test.after.always(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

/** The URLs an agent started with `args` resolved until it said it was listening (then SIGTERM). */
async function loadsOf(name: string, args: string[]): Promise<string[]> {
  const file = join(dir, `${name}.loads`);
  writeFileSync(file, '');
  const agent = startAgent(['-web', `127.0.0.1:${await freePort()}`, '-hub', 'ws://127.0.0.1:1', '-ip', '127.0.0.1', ...args], {
    nodeArgs: ['--import', hook], env: { LAINLET_TEST_LOADS: file },
  });
  try {
    await agent.waitForLine(/agent listening/, 20_000);
    return readFileSync(file, 'utf8').split('\n').filter(Boolean);
  } finally {
    await agent.kill();
  }
}

test('the lainlet-agent bin, the tests\' AGENT_SCRIPT and the systemd unit run dist/agent/main.js', (t) => {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>; scripts: Record<string, string> };
  t.is(pkg.bin['lainlet-agent'], 'dist/agent/main.js');
  t.is(AGENT_SCRIPT, `${DIST}agent/main.js`);
  t.regex(pkg.scripts.build, /&& node build\/bundle-agent\.mjs$/, '`npm run build` bundles the agent after tsc');
  t.regex(readFileSync(join(REPO_ROOT, 'systemd/lainlet-agent.service'), 'utf8'), /\nExecStart=\/usr\/bin\/env lainlet-agent /);
});

test('dist/agent/main.js is the bundle: the shebang of agent/main.ts, no import of another file of dist/ but the lazy ones, a source map', (t) => {
  const code = readFileSync(AGENT_SCRIPT, 'utf8');
  t.is(code.split('\n')[0], readFileSync(join(REPO_ROOT, 'agent/main.ts'), 'utf8').split('\n')[0], 'the V8 flag of the shebang is kept');
  // tsc's main.js imports ./agent.js, ../shared/…: the bundle holds them.
  const relative = [...code.matchAll(/(?:from|import\()\s*["'](\.{1,2}\/[^"']+)["']/g)].map((m) => m[1]);
  t.deepEqual([...new Set(relative)].sort(), ['../hub/hub.js', '../hub/store/create.js', './grpc/server.js']);
  t.true(code.length > 200_000, 'pino, ws and msgpackr are inside');
  t.regex(code, /\n\/\/# sourceMappingURL=main\.js\.map\n?$/);
  const map = JSON.parse(readFileSync(`${AGENT_SCRIPT}.map`, 'utf8')) as { sources: string[] };
  for (const source of ['../../agent/main.ts', '../../agent/model/podgroup.ts', '../../agent/persist.ts', '../../node_modules/pino/pino.js', '../../node_modules/ws/lib/websocket.js']) {
    t.true(map.sources.includes(source), `the source map names ${source}`);
  }
});

test('an agent without -grpc.addr or -etcd loads only the bundle of dist/, and no gRPC, etcd3 or hub code', async (t) => {
  const loads = await loadsOf('plain', []);
  const ours = loads.filter((u) => u.startsWith(pathToFileURL(DIST).href));
  t.deepEqual([...new Set(ours)], [pathToFileURL(AGENT_SCRIPT).href]);
  t.deepEqual(loads.filter((u) => /\/(@grpc|etcd3|protobufjs|uWebSockets\.js|prom-client)\/|\/dist\/hub\/|\/dist\/agent\/grpc\//.test(u)), []);
});

test('with -grpc.addr the agent loads the gRPC mirror and @grpc/grpc-js (the control of the test above)', async (t) => {
  const loads = await loadsOf('grpc', ['-grpc.addr', `127.0.0.1:${await freePort()}`]);
  t.true(loads.includes(pathToFileURL(`${DIST}agent/grpc/server.js`).href));
  t.true(loads.some((u) => u.includes('/node_modules/@grpc/grpc-js/')));
  t.false(loads.some((u) => /\/etcd3\/|\/dist\/hub\//.test(u)));
});

test('a CPU profile of the bundle names the bundled files as before bundling (bench/lib/cpuprofile.ts reads main.js.map)', async (t) => {
  const profDir = join(dir, 'prof');
  const agent = startAgent(['-web', `127.0.0.1:${await freePort()}`, '-hub', 'ws://127.0.0.1:1', '-ip', '127.0.0.1'], {
    nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`, '--cpu-prof-interval=100'],
  });
  await agent.waitForLine(/agent listening/, 20_000);
  t.is(await agent.stop('SIGTERM'), 0, agent.output());
  const profile = join(profDir, readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'))!);
  const { phases } = phaseTimes(profile, [
    { label: 'pino', match: /\/node_modules\/pino\// },
    { label: 'ws', match: /\/node_modules\/ws\// },
    { label: 'agent', match: /\/dist\/agent\/(main|agent|http)\.js/ },
  ]);
  for (const p of phases.filter((x) => x.label !== 'other')) t.true(p.ms > 0, `samples under ${p.label}`);
  // What still says dist/agent/main.js is agent/main.ts itself (mapped to its tsc name) and the
  // bundle's glue: esbuild's module wrappers (__init, __require, __toESM, …) and the top level.
  const left = hotSpots(profile, 10_000, REPO_ROOT).filter((s) => s.where.startsWith('dist/agent/main.js:')).map((s) => s.fn);
  t.deepEqual([...new Set(left)].filter((fn) => !/^(__\w+|\(anonymous\)|main|orRefuse|refuse|fail|shutdown)$/.test(fn)), []);
});

test('SIGTERM sent the moment "agent listening" is printed stops the agent gracefully (exit 0, "agent stopped"), every time', async (t) => {
  // The handlers were installed after the line: a reader's signal could land first (4 in 20 here).
  for (let i = 0; i < 25; i++) {
    const agent = startAgent(['-web', '127.0.0.1:0', '-hub', 'ws://127.0.0.1:1', '-ip', '127.0.0.1']);
    try {
      await agent.waitForLine(/agent listening/, 20_000);
      agent.proc.kill('SIGTERM');
      t.is(await agent.waitForExit(10_000), 0, `start ${i}:\n${agent.output()}`);
      t.regex(agent.output(), /"msg":"agent stopped"/);
    } finally {
      await agent.kill();
    }
  }
});
