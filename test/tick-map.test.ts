// shared/tick-map.ts: each program holds one of Node's own process.nextTick records for its
// whole life, so that a full garbage collection never takes the records' map with it (after
// which node:http's nextTick calls ran on V8's slow runtime path: 12–14 % of an agent's CPU
// per small GET, bench/RESULTS.md). Pinned here: the record held is a real one, with the very
// map a record made after full collections has (V8's %HaveSameMap); and the agent, the hub
// and the hub's worker threads each take one as they start.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { freePorts } from '../testkit/ports.js';
import { DIST } from '../testkit/paths.js';
import { startAgent, startHub, waitFor } from '../testkit/procs.js';

const run = promisify(execFile);

test('the record held is one of Node\'s own nextTick records, with the map of a record made after full collections', async (t) => {
  const code = `
    import { executionAsyncResource } from 'node:async_hooks';
    import { pinnedTickObject } from ${JSON.stringify(pathToFileURL(`${DIST}shared/tick-map.js`).href)};
    const idle = () => new Promise((r) => setTimeout(r, 5));
    await idle();
    const pinned = pinnedTickObject();
    for (let i = 0; i < 3; i++) { globalThis.gc(); await idle(); }
    const fresh = await new Promise((r) => process.nextTick(() => r(executionAsyncResource())));
    console.log(JSON.stringify({
      symbols: Object.getOwnPropertySymbols(pinned ?? {}).map((s) => s.description),
      keys: Object.keys(pinned ?? {}),
      sameMap: pinned !== undefined && %HaveSameMap(pinned, fresh),
    }));`;
  const { stdout } = await run(process.execPath, ['--allow-natives-syntax', '--expose-gc', '--input-type=module', '-e', code]);
  const got = JSON.parse(stdout) as { symbols: string[]; keys: string[]; sameMap: boolean };
  t.deepEqual(got.symbols, ['async_id_symbol', 'trigger_async_id_symbol']);
  t.deepEqual(got.keys, ['callback', 'args']);
  t.true(got.sameMap, 'a record made after three full collections has the held record\'s map');
});

test('the agent, the hub and each hub worker thread hold a record from their start', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'lainlet-tickmap-'));
  try {
    // Preloaded in each program (and, through execArgv, in each worker thread): every record
    // returned by executionAsyncResource() inside a nextTick callback is written down.
    const log = join(dir, 'pins');
    writeFileSync(log, '');
    const preload = join(dir, 'spy.mjs');
    writeFileSync(preload, `import hooks from 'node:async_hooks';
import { syncBuiltinESMExports } from 'node:module';
import { appendFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';
const original = hooks.executionAsyncResource;
hooks.executionAsyncResource = () => {
  const r = original();
  if (Object.getOwnPropertySymbols(r).some((s) => s.description === 'async_id_symbol') && 'callback' in r) {
    appendFileSync(${JSON.stringify(log)}, (isMainThread ? 'main' : 'worker') + ' ' + process.pid + '\\n');
  }
  return r;
};
syncBuiltinESMExports();
`);
    const [hubPort, agentPort] = await freePorts(2);
    const nodeArgs = ['--import', pathToFileURL(preload).href];
    const hub = startHub(['--store', 'memory', '--listen', `127.0.0.1:${hubPort}`, '--workers', '2'], { nodeArgs });
    const agent = startAgent(['-web', `127.0.0.1:${agentPort}`, '-hub', `ws://127.0.0.1:${hubPort}`, '-ip', '127.0.0.1'], { nodeArgs });
    try {
      const pins = () => readFileSync(log, 'utf8').split('\n').filter(Boolean);
      await waitFor(() => pins().filter((l) => l === `worker ${hub.pid}`).length === 2 && pins().includes(`main ${hub.pid}`) && pins().includes(`main ${agent.pid}`),
        { timeoutMs: 20_000, message: `a record held by the agent, the hub and both its workers\n${readFileSync(log, 'utf8')}\n${hub.output()}\n${agent.output()}` });
      t.pass();
    } finally {
      await Promise.all([agent.kill(), hub.kill()]);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
