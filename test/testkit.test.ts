// testkit/ as the benchmark uses it (harness.test.ts covers what the tests themselves use): each
// test here fails if a feature the benchmark relies on is lost from the shared library.
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { currentRevision, putAll, startEtcd, v2Put } from '../testkit/etcd.js';
import { httpGet } from '../testkit/http.js';
import { metricSum, metricValue } from '../testkit/metrics.js';
import { AGENT_SCRIPT, BENCH_LIB, DIST, HUB_SCRIPT, REPO_ROOT, useDistSnapshot } from '../testkit/paths.js';
import { deployedNodeArgs } from '../bench/lib/lainlet.js';
import { killAll, runCommand, startNodeProgram, startProgram, waitFor } from '../testkit/procs.js';

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lainlet-testkit-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes `source` to a temp .mjs file (removed when the test ends) and returns its path. */
async function scriptFile(t: ExecutionContext, source: string): Promise<string> {
  const file = path.join(await tempDir(t), 'program.mjs');
  await writeFile(file, source);
  return file;
}

// Serial, and before the paths test: that one points AGENT_SCRIPT into a snapshot it removes.
test.serial('deployedNodeArgs: the benchmarks run the agent with the node options of the installed command\'s shebang', (t) => {
  const shebang = readFileSync(path.join(REPO_ROOT, 'agent', 'main.ts'), 'utf8').split('\n', 1)[0];
  t.regex(shebang, /^#!\/usr\/bin\/env -S node /);
  t.deepEqual(deployedNodeArgs(), shebang.replace(/^#!\/usr\/bin\/env -S node /, '').split(' '));
  t.true(deployedNodeArgs().length > 0, 'the shebang gives node options');
});

// Serial: it moves HUB_SCRIPT and the rest for the whole file, and serial tests run first.
test.serial('paths: the repository from source and built, and useDistSnapshot moves every program into a copy', async (t) => {
  t.true(existsSync(path.join(REPO_ROOT, 'package.json')));
  t.is(DIST, path.join(REPO_ROOT, 'dist') + path.sep);
  t.is(HUB_SCRIPT, `${DIST}hub/main.js`);
  t.is(AGENT_SCRIPT, `${DIST}agent/main.js`);
  t.is(BENCH_LIB, `${DIST}bench/lib/`);
  const printRoot = (dist: string) =>
    runCommand(process.execPath, ['--input-type=module', '-e', `const p = await import(${JSON.stringify(`${dist}testkit/paths.js`)}); console.log(p.REPO_ROOT)`]);
  // The benchmark runs this file built, from dist/testkit/: the same root.
  t.is((await printRoot(DIST)).stdout.trim(), REPO_ROOT);

  const dir = await tempDir(t);
  useDistSnapshot(dir);
  const snapshotRoot = path.join(dir, 'snapshot') + path.sep;
  t.is(DIST, path.join(snapshotRoot, 'dist') + path.sep);
  t.is(HUB_SCRIPT, `${DIST}hub/main.js`);
  t.is(AGENT_SCRIPT, `${DIST}agent/main.js`);
  t.is(BENCH_LIB, `${DIST}bench/lib/`);
  t.true(existsSync(HUB_SCRIPT));
  // Source maps stay behind, but the agent bundle's: bench/lib/cpuprofile.ts maps its profiles.
  t.true(existsSync(`${AGENT_SCRIPT}.map`));
  t.false(existsSync(`${HUB_SCRIPT}.map`));
  // A program started from the snapshot finds node_modules and package.json beside its copy.
  t.is((await printRoot(DIST)).stdout.trim(), snapshotRoot);
});

test('a program: name, running, nodeArgs before the script, an environment variable removed, keepLines', async (t) => {
  process.env.LAINLET_TESTKIT_REMOVED = 'inherited';
  const script = await scriptFile(
    t,
    `for (let i = 0; i < 5; i++) console.log('line ' + i);
     console.log(JSON.stringify({ execArgv: process.execArgv, removed: process.env.LAINLET_TESTKIT_REMOVED ?? null }));
     setInterval(() => {}, 1000);`,
  );
  const program = startNodeProgram('fixture', script, [], {
    nodeArgs: ['--max-old-space-size=64'],
    env: { LAINLET_TESTKIT_REMOVED: undefined },
    keepLines: 2,
  });
  t.teardown(() => program.kill());
  t.is(program.name, 'fixture');
  t.true(program.running);
  const report = JSON.parse(await program.waitForLine(/execArgv/)) as { execArgv: string[]; removed: string | null };
  t.deepEqual(report, { execArgv: ['--max-old-space-size=64'], removed: null });
  t.is(program.output().split('\n').length, 2);
  await program.stop();
  t.false(program.running);
});

test('a program with ipc can send to its parent', async (t) => {
  const script = await scriptFile(t, `process.send({ hello: process.argv[2] }); process.disconnect();`);
  const program = startNodeProgram('ipc', script, ['there'], { ipc: true });
  t.teardown(() => program.kill());
  const message = await new Promise((resolve) => program.proc.once('message', resolve));
  t.deepEqual(message, { hello: 'there' });
  t.is(await program.waitForExit(), 0);
});

test('a command that cannot be started is not running, says why, and fails waitForLine at once', async (t) => {
  const program = startProgram('missing', 'lainlet-no-such-command', []);
  await t.throwsAsync(program.waitForLine(/anything/, 60_000), { message: /could not start: spawn lainlet-no-such-command ENOENT/ });
  t.false(program.running);
  t.regex(program.spawnError?.message ?? '', /ENOENT/);
  t.is(await program.waitForExit(), -2);
});

// Serial: killAll would kill the other tests' programs too.
test.serial('runCommand returns the exit code and both outputs; killAll kills every child still running', async (t) => {
  t.deepEqual(await runCommand(process.execPath, ['-e', 'console.log("out"); console.error("err"); process.exit(4)']), {
    code: 4,
    stdout: 'out\n',
    stderr: 'err\n',
  });
  const script = await scriptFile(t, `console.log('up'); setInterval(() => {}, 1000);`);
  const programs = [startNodeProgram('a', script, []), startNodeProgram('b', script, [])];
  await Promise.all(programs.map((program) => program.waitForLine(/up/)));
  await killAll();
  t.deepEqual(programs.map((program) => [program.running, program.proc.signalCode]), [[false, 'SIGKILL'], [false, 'SIGKILL']]);
});

test('httpGet: a number is the timeout; bytes counts the body on the wire', async (t) => {
  const server = http.createServer((request, response) => {
    if (request.url === '/slow') return; // never answers
    response.end('é'); // two bytes in UTF-8
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  const response = await httpGet(`${base}/`, 2000);
  t.like(response, { status: 200, body: 'é', bytes: 2 });
  await t.throwsAsync(httpGet(`${base}/slow`, 50), { message: /no complete response within 50 ms/ });
});

test('metricValue and metricSum read Prometheus text', (t) => {
  const text = [
    '# HELP etcd_debugging_mvcc_watcher_total Total number of watchers.',
    'etcd_debugging_mvcc_watcher_total 3',
    'etcd_debugging_mvcc_watcher_total_extra 9',
    'grpc_server_started_total{grpc_method="Watch",grpc_type="bidi_stream"} 5',
    'grpc_server_started_total{grpc_method="Range",grpc_type="unary"} 7',
    'grpc_server_started_total{grpc_method="Watch",grpc_type="other"} 1',
  ].join('\n');
  t.is(metricValue(text, 'etcd_debugging_mvcc_watcher_total'), 3);
  t.is(metricValue(text, 'grpc_server_started_total'), 5);
  t.true(Number.isNaN(metricValue(text, 'absent_total')));
  t.is(metricSum(text, 'grpc_server_started_total'), 13);
  t.is(metricSum(text, 'grpc_server_started_total', ['grpc_method="Watch"']), 6);
  t.true(Number.isNaN(metricSum(text, 'grpc_server_started_total', ['grpc_method="Put"'])));
});

test("the benchmark's etcd: data in tmpfs, large requests, a shared client reading large answers, its process, watchLoad", async (t) => {
  const etcd = await startEtcd({ dataOnTmpfs: true, maxRequestBytes: 32 * 1024 * 1024 });
  t.teardown(() => etcd.stop());
  t.true(etcd.onTmpfs);
  t.true(etcd.dataDir.startsWith('/dev/shm/'));
  t.true(etcd.proc.pid > 0);
  t.is(etcd.client, etcd.client);

  // 9 MiB: over etcd's default 1.5 MiB request limit and grpc's default 4 MiB answer limit,
  // and over putAll's 8 MiB transaction bound, so it takes two revisions.
  const value = 'x'.repeat(1024 * 1024);
  const kvs = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`/big/${i}`, value]));
  const before = await currentRevision(etcd.client);
  t.is(await putAll(etcd.client, kvs), before + 2);
  t.is(Object.keys(await etcd.client.getAll().prefix('/big/').strings()).length, 9);

  const watcher = await etcd.client.watch().prefix('/big/').create();
  await waitFor(async () => (await etcd.watchLoad()).watchers === 1, { message: 'etcd to count the watch' });
  const load = await etcd.watchLoad();
  t.like(load, { watchers: 1, watchStreams: 1 });
  t.true(load.grpcWatchCalls >= 1);
  await watcher.cancel();

  const dataDir = etcd.dataDir;
  await etcd.stop();
  t.false(existsSync(dataDir));
  t.throws(() => etcd.client, { message: /after stop/ });
});

test("etcd ignores ETCD_* settings in this process's environment (they would override its flags)", async (t) => {
  // Read by etcd when no flag says otherwise: with it, the v2 API would answer.
  process.env.ETCD_ENABLE_V2 = 'true';
  t.teardown(() => delete process.env.ETCD_ENABLE_V2);
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  await t.throwsAsync(v2Put(etcd, '/lain/k', 'v'), { message: /: 404 / });
});

