// The hub against operators' mistakes and hostile clients (issue "Nothing lost, nothing
// silent", items 9, 10, 11, 12): a served port, honest counters and log lines, bounded memory
// and store load whatever clients do, and the progress interval told to agents.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import WebSocket from 'ws';
import { startAgent } from '../agent/agent.js';
import { startHub } from '../hub/hub.js';
import type { HubServer } from '../hub/server.js';
import type { IBackoff } from 'cockatiel';
import { HUB_DEFAULTS } from '../hub/defaults.js';
import { Etcd3Store } from '../hub/store/etcd3.js';
import { MemoryStore } from '../hub/store/memory.js';
import { silentLogger } from '../shared/log.js';
import { LogLimiter } from '../shared/log-limit.js';
import { FakeAgent, hubOn } from './helpers/fake-agent.js';
import { httpGet } from '../testkit/http.js';
import { freePort } from '../testkit/ports.js';
import { startHub as startHubProc, waitFor } from '../testkit/procs.js';

const seed = { '/lain/config/domain': 'lain.local' };

/** A logger whose JSON lines a test can read. */
function capturingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({ write(chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l) lines.push(l); cb(); } });
  return { log: pino({ level: 'info' }, sink), lines };
}

test.serial('a second hub on a port already served refuses to start, with a clear message and a non-zero exit', async (t) => {
  const port = await freePort();
  const first = startHubProc(['--store', 'memory', '--listen', `127.0.0.1:${port}`]);
  try {
    await first.waitForLine(/hub listening/);
    const second = startHubProc(['--store', 'memory', '--listen', `127.0.0.1:${port}`]);
    const code = await second.waitForExit(15_000);
    t.not(code, 0);
    t.regex(second.output(), /already in use/);
    t.notRegex(second.output(), /hub listening/);
  } finally {
    await first.kill();
  }
});

test('refused tokens are counted as rejected clients, and the log line says why once', async (t) => {
  const { log, lines } = capturingLogger();
  const hub = await hubOn(new MemoryStore(seed), { token: 'right-token-123456' }, log);
  for (let i = 0; i < 5; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${hub.port}/`, { headers: { authorization: 'Bearer wrong' } });
    await new Promise<void>((resolve) => { ws.on('unexpected-response', () => resolve()); ws.on('error', () => resolve()); });
  }
  t.is(hub.server.counters.rejectedClients, 5);
  await hub.stop();
  const open = await hubOn(new MemoryStore(seed), {}, log);
  const bad = new FakeAgent(open.port, 'text is not the protocol');
  await bad.until(() => bad.closed !== undefined);
  await open.stop();
  const rejected = lines.find((l) => l.includes('"agent rejected"'));
  t.truthy(rejected, 'a protocol violation is logged');
  t.is(rejected!.match(/"msg":/g)!.length, 1, 'one msg key (pino\'s), so the reason is not hidden');
  t.truthy((JSON.parse(rejected!) as { detail?: string }).detail);
});

test('an agent that goes away (killed, cut) is not counted as a slow agent', async (t) => {
  const hub = await hubOn(new MemoryStore(seed));
  const a = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: 0 });
  await a.until(() => a.of('prog').length > 0);
  a.ws.terminate();
  await waitFor(() => hub.server.agentCount === 0, { message: 'the hub saw the agent go' });
  t.is(hub.server.counters.slowAgentDisconnects, 0);
  await hub.stop();
});

test.serial('the bytes queued to all agents together are bounded: the most backed-up agents are closed', async (t) => {
  t.timeout(60_000);
  const store = new MemoryStore(seed);
  // Each agent alone may queue 64 MB; all together only 4 MB.
  const hub = await hubOn(store, { maxBackpressure: 64 << 20, maxTotalBackpressure: 4 << 20, historyMaxBytes: 64 << 20 });
  const agents = Array.from({ length: 10 }, (_, i) => new FakeAgent(hub.port, { t: 'hello', v: 1, node: `n${i}`, rev: 0 }));
  for (const a of agents) await a.until(() => a.of('prog').length > 0);
  for (const a of agents) (a.ws as unknown as { _socket: { pause(): void } })._socket.pause();
  const big = 'x'.repeat(1 << 20);
  for (let i = 0; i < 40 && hub.server.counters.totalBackpressureDisconnects === 0; i++) {
    store.put(`/lain/config/big${i % 4}`, big + i);
    await new Promise((r) => setImmediate(r));
  }
  await waitFor(() => hub.server.counters.totalBackpressureDisconnects > 0, { timeoutMs: 20_000, message: 'a hub-wide disconnect' });
  // A disconnect is counted as slow when its close is seen, which (with worker threads) may be
  // a moment after the hub-wide counter moved: wait for it rather than race it.
  await waitFor(() => hub.server.counters.slowAgentDisconnects >= hub.server.counters.totalBackpressureDisconnects,
    { timeoutMs: 10_000, message: 'every hub-wide disconnect counted as slow, too' });
  t.pass();
  for (const a of agents) a.ws.terminate();
  await hub.stop();
});

test('agents claiming revisions far ahead cost at most one store read per second and no list: they get reset snapshots', async (t) => {
  const store = new MemoryStore(seed);
  const hub = await hubOn(store);
  const relists = hub.sync.relists;
  const probes = hub.sync.probes;
  const started = Date.now();
  const agents = Array.from({ length: 200 }, (_, i) => new FakeAgent(hub.port, { t: 'hello', v: 1, node: `n${i}`, rev: 1e12 }));
  for (const a of agents) await a.until(() => a.of('prog').length > 0, 10_000);
  const seconds = (Date.now() - started) / 1000;
  t.true(hub.sync.probes - probes <= Math.ceil(seconds) + 1, `${hub.sync.probes - probes} reads in ${seconds} s`);
  t.is(hub.sync.relists, relists, 'no list of the store');
  t.true(agents.every((a) => a.of('snap').every((s) => s.reset === true)));
  for (const a of agents) a.ws.close();
  await hub.stop();
});

test('an agent waiting for a hub that does not get current is sent away after the wait timeout', async (t) => {
  // Made not current behind the sync's back: a hub serving on its own thread.
  const hub = await hubOn(new MemoryStore(seed), { aheadTimeoutMs: 300, workers: 0 });
  (hub.server as HubServer).isCurrent = () => false;
  const a = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: 0 });
  await a.until(() => a.closed !== undefined);
  t.is(a.of('err')[0]?.code, 'not_ready');
  t.is(a.of('snap').length, 0, 'nothing of a state that is not current');
  t.is(hub.server.counters.waitTimeouts, 1);
  await hub.stop();
});

test('a storm of connection log lines is rate-limited, and every refusal is still counted', async (t) => {
  const { log, lines } = capturingLogger();
  const hub = await hubOn(new MemoryStore(seed), { token: 'a-token-no-client-sends' }, log);
  for (let i = 0; i < 400; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${hub.port}/`);
    await new Promise<void>((resolve) => { ws.on('unexpected-response', () => resolve()); ws.on('error', () => resolve()); });
  }
  const refusals = lines.filter((l) => l.includes('agent refused'));
  t.true(refusals.length < 200, `${refusals.length} lines for 400 refusals`);
  t.is(hub.server.counters.rejectedClients, 400, 'every refusal counted');
  await hub.stop();
});

test('the hub tells agents its progress interval, and agents derive their silence timeout from it', async (t) => {
  t.timeout(30_000);
  const hub = await hubOn(new MemoryStore(seed), { progressIntervalMs: 1500 });
  const agent = await startAgent({ host: '127.0.0.1', port: 0, nodeIp: '127.0.0.1', noauth: true, hubs: [`ws://127.0.0.1:${hub.port}`], silenceTimeoutMs: 1000 }, silentLogger);
  try {
    await waitFor(() => agent.client.status.live, { message: 'agent live' });
    t.is(agent.client.silenceTimeoutMs, 3 * 1500 + 1000);
    // Two of the hub's progress periods, each longer than the configured silence timeout.
    const liveAt = Date.now();
    await waitFor(() => agent.client.status.lastFrameAt - liveAt > 2500, { timeoutMs: 10_000, message: 'two progress frames' });
    t.is(agent.client.status.reconnects, 0, 'never dropped the hub as silent');
  } finally {
    await agent.stop();
    await hub.stop();
  }
});

test('the connection log limiter lets a burst through, then one line per period, which counts those left out', (t) => {
  let now = 0;
  const limiter = new LogLimiter(3, 1, () => now);
  t.deepEqual([limiter.take(), limiter.take(), limiter.take(), limiter.take(), limiter.take()], [0, 0, 0, -1, -1]);
  now += 1000;
  t.is(limiter.take(), 2, 'the next line says two were left out');
  t.is(limiter.take(), -1);
});

test.serial('an agent restarted from its state file onto an unchanged hub is not stale once it is live', async (t) => {
  const hub = await hubOn(new MemoryStore(seed));
  const stateDir = mkdtempSync(join(tmpdir(), 'lainlet-stale-'));
  const opts = { host: '127.0.0.1', port: 0, nodeIp: '127.0.0.1', noauth: true, hubs: [`ws://127.0.0.1:${hub.port}`], stateDir };
  try {
    let agent = await startAgent(opts, silentLogger);
    await waitFor(() => agent.client.status.live, { message: 'first agent live' });
    await agent.stop(); // saves the state file
    agent = await startAgent(opts, silentLogger);
    t.is(agent.cache.source, 'state-file');
    await waitFor(() => agent.client.status.live, { message: 'restarted agent live' });
    const debug = JSON.parse((await httpGet(`http://127.0.0.1:${agent.port}/debug`)).body) as { stale: boolean; revision: number };
    t.false(debug.stale, 'live on a hub that had nothing newer: not stale');
    t.is(debug.revision, hub.state.revision);
    await agent.stop();
  } finally {
    await hub.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('a hub that cannot reach etcd at start says it has no state yet, not that it serves a stale one', async (t) => {
  const { log, lines } = capturingLogger();
  const deadPort = await freePort();
  const store = new Etcd3Store({ endpoints: [`127.0.0.1:${deadPort}`], dialTimeoutMs: 300 });
  const hub = await startHub({ store, prefix: '/lain/', host: '127.0.0.1', port: 0, historyMaxCount: 10, historyMaxBytes: 1 << 20, maxBackpressure: 1 << 20, progressIntervalMs: 200 }, log);
  try {
    await waitFor(() => lines.some((l) => l.includes('store list/watch failed')), { timeoutMs: 15_000, message: 'a failed list' });
    const failed = lines.filter((l) => l.includes('store list/watch failed'));
    t.true(failed.every((l) => l.includes('no state to serve yet')), failed.join('\n'));
    t.false(lines.some((l) => l.includes('serving last state')));
  } finally {
    await hub.stop();
  }
});

test('the etcd client waits at most etcd3WatchRetryCapMs before it re-creates a broken watch, however many attempts failed before', async (t) => {
  // The library's own default grows to 30 s: a soak's hub stayed stale 20 s after every fault
  // had healed. Its wait is the chain the watch manager steps through, one step per failure.
  const store = new Etcd3Store({ endpoints: ['127.0.0.1:1'] });
  try {
    const manager = (store as unknown as { client: { watchManager: { initialBackoff: IBackoff<unknown> } } }).client.watchManager;
    let step = manager.initialBackoff.next(undefined);
    const waits: number[] = [];
    for (let failures = 0; failures < 200; failures++, step = step.next(undefined)) waits.push(step.duration);
    t.true(Math.max(...waits) <= HUB_DEFAULTS.etcd3WatchRetryCapMs, `longest wait ${Math.max(...waits)} ms`);
    // It still backs off: the waits reach the cap's order, not a busy loop.
    t.true(Math.max(...waits) > HUB_DEFAULTS.etcd3WatchRetryCapMs / 2, `longest wait ${Math.max(...waits)} ms`);
    // The first wait is the generator's first step: below 2^1 / 1.4 of the base (cockatiel's
    // decorrelated jitter), whatever the random draw.
    t.true(waits[0] < HUB_DEFAULTS.etcd3WatchRetryBaseMs * 2, `first wait ${waits[0]} ms`);
  } finally {
    await store.close();
  }
});
