// The agent's HTTP layer (API.md §2, golden/transcripts/http-misc.txt): routing, the two 404s,
// HEAD, trailing slash, watch parsing, HTTP/1.0, IPv4-mapped peers, 503 before the first sync,
// slow stream clients. The hub runs in-process on the memory store: this is the HTTP layer's
// unit test; the real-etcd path is in integration.test.ts and golden.test.ts.
import test from 'ava';
import net from 'node:net';
import { startAgent, type Agent } from '../agent/agent.js';
import { goTarget, heartbeatSeconds } from '../agent/http.js';
import { every } from '../agent/streams.js';
import { startHub, type Hub } from '../hub/hub.js';
import { MemoryStore } from '../hub/store/memory.js';
import { silentLogger } from '../shared/log.js';
import { VERSION } from '../shared/version.js';
import { fixtureKvs } from './helpers/cluster.js';
import { httpGet, openStream, rawRequest } from '../testkit/http.js';
import { freePort } from '../testkit/ports.js';
import { waitFor } from '../testkit/procs.js';
import { installFakeClock, nextTurn, rawUntil } from './helpers/wait.js';

let store: MemoryStore;
let hub: Hub;
let agent: Agent;
let base: string;

async function agentOn(hubs: string[], over: Partial<Parameters<typeof startAgent>[0]> = {}): Promise<Agent> {
  return startAgent({ host: '127.0.0.1', port: 0, nodeIp: '127.0.0.1', hostname: 'node1', noauth: false, hubs, ...over }, silentLogger);
}

test.before(async () => {
  store = new MemoryStore(fixtureKvs('cluster-small'));
  hub = await startHub({ store, prefix: '/lain/', host: '127.0.0.1', port: 0, historyMaxCount: 100, historyMaxBytes: 1 << 24, maxBackpressure: 1 << 26, progressIntervalMs: 500 }, silentLogger);
  await hub.ready;
  agent = await agentOn([`ws://127.0.0.1:${hub.port}`]);
  base = `http://127.0.0.1:${agent.port}`;
  await waitFor(() => agent.cache.hasState, { timeoutMs: 5000, message: 'agent sync' });
});

test.after.always(async () => {
  await agent?.stop();
  await hub?.stop();
});

test('HEAD runs GET and keeps Content-Length without a body', async (t) => {
  const res = await httpGet(`${base}/v2/configwatcher?target=domain`, { method: 'HEAD' });
  t.is(res.status, 200);
  t.is(res.headers['content-length'], '23');
  t.is(res.body, '');
});

test('wrong method on a known path: Go\'s 404 page not found', async (t) => {
  for (const path of ['/v2/configwatcher?target=domain', '/version']) {
    const res = await httpGet(`${base}${path}`, { method: 'POST' });
    t.is(res.status, 404);
    t.is(res.body, '404 page not found\n');
    t.is(res.headers['x-content-type-options'], 'nosniff');
  }
});

test('unknown paths, any method: 404 not found', async (t) => {
  for (const [method, path] of [['PUT', '/nosuch'], ['GET', '//v2/configwatcher?target=domain'], ['GET', '/V2/configwatcher'], ['GET', '/v2'], ['GET', '/v2/'], ['GET', '/v2/localspecwatcherx']]) {
    const res = await httpGet(`${base}${path}`, { method });
    t.is(res.status, 404, `${method} ${path}`);
    t.is(res.body, '404 not found');
  }
});

test('one trailing slash is accepted', async (t) => {
  t.is((await httpGet(`${base}/version/`)).body, VERSION);
  t.is((await httpGet(`${base}/v2/configwatcher/?target=domain`)).body, '{"domain":"lain.local"}');
  t.is((await httpGet(`${base}/v2/configwatcher//?target=domain`)).status, 404);
});

test('watch is on for any value but "", "0" and "false"; the first value of a parameter wins', async (t) => {
  for (const v of ['0', 'false', '']) {
    const res = await httpGet(`${base}/v2/configwatcher?target=domain&watch=${v}`);
    t.is(res.body, '{"domain":"lain.local"}', `watch=${v}`);
  }
  t.is((await httpGet(`${base}/v2/configwatcher?target=domain&target=vip`)).body, '{"domain":"lain.local"}');
  for (const v of ['False', '1', 'yes', 'true']) {
    const s = await openStream(`${base}/v2/configwatcher?target=domain&watch=${v}`);
    const [init] = await s.waitForEvents(1, 2000);
    t.is(s.headers['content-type'], 'text/event-stream', `watch=${v}`);
    t.deepEqual([init.id, init.event, init.data], [1, 'init', '{"domain":"lain.local"}']);
    s.close();
  }
});

test('the event stream is written raw, exactly like the original', async (t) => {
  const port = agent.port;
  // The stream never ends: read until the init event is complete (the header block, then a frame).
  const bytes = await rawUntil(port, '127.0.0.1', 'GET /v2/configwatcher?target=domain&watch=1 HTTP/1.1\r\nHost: x\r\n\r\n', (got) => /\r\n\r\n[^]*\n\n/.test(got));
  t.is(bytes, 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nVary: Accept-Encoding\r\n\r\nid: 1\nevent: init\ndata: {"domain":"lain.local"}\n\n');
});

test('POST with watch=1: the header block, then the connection closes with no events', async (t) => {
  const bytes = await rawRequest(agent.port, '127.0.0.1', 'POST /v2/configwatcher?target=domain&watch=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n', { timeoutMs: 2000 });
  t.is(bytes.toString(), 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nVary: Accept-Encoding\r\n\r\n');
});

test('HEAD with watch=1 still writes the stream; heartbeat=abc means no heartbeats', async (t) => {
  const head = await rawUntil(agent.port, '127.0.0.1', 'HEAD /v2/configwatcher?target=domain&watch=1 HTTP/1.1\r\nHost: x\r\n\r\n', (got) => /\r\n\r\n[^]*\n\n/.test(got));
  t.regex(head, /\r\n\r\nid: 1\nevent: init\ndata: \{"domain":"lain.local"\}\n\n$/);
  const s = await openStream(`${base}/v2/configwatcher?target=domain&watch=1&heartbeat=abc`);
  // The barrier: a stream opened after it with heartbeat=1, the shortest period there is. Timers of
  // one period fire in the order they were set, so had heartbeat=abc meant any beat, its first one
  // would have been written before the control's; both reach this process in the same turn.
  const control = await openStream(`${base}/v2/configwatcher?target=domain&watch=1&heartbeat=1`);
  await control.waitFor((e) => e.event === 'heartbeat');
  await nextTurn();
  t.deepEqual(s.events.map((e) => e.event), ['init']);
  s.close();
  control.close();
});

test('heartbeats: id 0, no data line, every N seconds', async (t) => {
  const s = await openStream(`${base}/v2/configwatcher?target=domain&watch=1&heartbeat=1`);
  await s.waitFor((e) => e.event === 'heartbeat', 2500);
  t.true(s.raw().includes('\n\nid: 0\nevent: heartbeat\n\n'));
  s.close();
});

test('HTTP/1.0 clients, with or without a Host header, get complete answers', async (t) => {
  for (const req of ['GET /v2/configwatcher?target=domain HTTP/1.0\r\n\r\n', 'GET /v2/configwatcher?target=domain HTTP/1.0\r\nHost: lainlet.lain:9001\r\n\r\n']) {
    const bytes = (await rawRequest(agent.port, '127.0.0.1', req, { timeoutMs: 3000 })).toString();
    t.regex(bytes, /^HTTP\/1\.1 200 OK\r\n/);
    t.regex(bytes, /\r\nContent-Length: 23\r\n/i);
    t.true(bytes.endsWith('\r\n\r\n{"domain":"lain.local"}'), bytes);
  }
  const noHost11 = (await rawRequest(agent.port, '127.0.0.1', 'GET /version HTTP/1.1\r\nConnection: close\r\n\r\n', { timeoutMs: 3000 })).toString();
  t.true(noHost11.endsWith(VERSION));
});

test('/debug keeps the two fields monitoring reads', async (t) => {
  const d = JSON.parse((await httpGet(`${base}/debug`)).body) as Record<string, unknown>;
  t.is(typeof d.connections, 'number');
  t.is(typeof d.goroutines, 'number');
  t.true((d.connections as number) >= 1);
});

test('IPv4-mapped peers on a dual-stack listener are normalised before auth', async (t) => {
  const dual = await startAgent({ host: '::', port: 0, nodeIp: '10.9.9.9', hostname: 'node1', noauth: false, hubs: [`ws://127.0.0.1:${hub.port}`] }, silentLogger);
  try {
    await waitFor(() => dual.cache.hasState, { timeoutMs: 5000, message: 'dual agent sync' });
    const local = await httpGet(`http://127.0.0.1:${dual.port}/v2/configwatcher?target=vip`, { localAddress: '127.0.0.1' });
    t.is(local.status, 200, 'peer ::ffff:127.0.0.1 is local');
    const other = await httpGet(`http://127.0.0.1:${dual.port}/v2/configwatcher?target=vip`, { localAddress: '127.0.0.2' });
    t.is(other.status, 400);
    t.is(other.body, 'authorize failed, super required');
  } finally {
    await dual.stop();
  }
});

test('before the first sync every /v2 request answers 503 with a one-line reason', async (t) => {
  const closedPort = await freePort();
  const lonely = await agentOn([`ws://127.0.0.1:${closedPort}`]);
  try {
    const lb = `http://127.0.0.1:${lonely.port}`;
    for (const path of ['/v2/configwatcher?target=domain', '/v2/webrouter/webprocs', '/v2/configwatcher?target=domain&watch=1', '/appname?ip=1.2.3.4']) {
      const res = await httpGet(`${lb}${path}`);
      t.is(res.status, 503, path);
      t.regex(res.body, /^[^\n]+$/);
    }
    t.is((await httpGet(`${lb}/debug`)).status, 200);
    t.is((await httpGet(`${lb}/version`)).status, 200);
  } finally {
    await lonely.stop();
  }
});

test('a stream client that stops reading is disconnected, not buffered without bound', async (t) => {
  const small = await agentOn([`ws://127.0.0.1:${hub.port}`], { maxStreamBufferBytes: 256 * 1024 });
  try {
    await waitFor(() => small.cache.hasState, { timeoutMs: 5000, message: 'sync' });
    const sock = net.connect(small.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write('GET /v2/configwatcher?target=slow/&watch=1 HTTP/1.1\r\nHost: x\r\n\r\n');
    sock.pause();
    sock.on('error', () => {});
    const debug = async () => JSON.parse((await httpGet(`http://127.0.0.1:${small.port}/debug`)).body) as { streams: { closedSlow: number; open: number } };
    await waitFor(async () => (await debug()).streams.open === 1, { timeoutMs: 2000, message: 'stream open' });
    const big = 'y'.repeat(256 * 1024);
    for (let i = 0; i < 60 && (await debug()).streams.closedSlow === 0; i++) {
      const revision = store.put(`/lain/config/slow/k${i % 3}`, big + i);
      await waitFor(() => small.cache.revision >= revision, { intervalMs: 5, message: `the agent at revision ${revision}` });
    }
    const d = await debug();
    t.true(d.streams.closedSlow >= 1, 'closed for not reading');
    t.is(d.streams.open, 0);
    sock.destroy();
  } finally {
    await small.stop();
  }
});

test.serial('many streams watching the same thing cost one encoding per change, not one per stream', async (t) => {
  const streams = await Promise.all(Array.from({ length: 20 }, () => openStream(`${base}/v2/coreinfowatcher?watch=1`)));
  for (const s of streams) await s.waitForEvents(1, 3000);
  const before = JSON.parse((await httpGet(`${base}/debug`)).body) as { answers: { renders: number } };
  const hello = fixtureKvs('cluster-small')['/lain/deployd/pod_groups/hello/hello.worker.cron'];
  store.put('/lain/deployd/pod_groups/hello/hello.worker.cron', hello.replace('"InstanceNo":1', '"InstanceNo":7'));
  for (const s of streams) await s.waitFor((e) => e.event === 'update', 3000);
  const after = JSON.parse((await httpGet(`${base}/debug`)).body) as { answers: { renders: number; held: number; dropped: number } };
  t.is(after.answers.renders - before.answers.renders, 1);
  t.true(after.answers.held >= 1, '/debug shows the answers the cache holds');
  t.is(after.answers.dropped, 0, 'and how many its sweeps dropped (none here: no sweep has run)');
  const frames = new Set(streams.map((s) => s.raw().slice(s.raw().indexOf('event: update'))));
  t.is(frames.size, 1, 'the same bytes went to every stream');
  for (const s of streams) s.close();
  store.put('/lain/deployd/pod_groups/hello/hello.worker.cron', hello);
});

test('heartbeat is read like Go\'s strconv.Atoi on int64: errors, ≤ 0 and values beyond int64 mean none', (t) => {
  const cases: Array<[string, number]> = [
    ['5', 5], ['+5', 5], ['0005', 5], ['+0', 0], ['0', 0], ['-5', 0], ['-0', 0],
    ['5.0', 0], [' 5', 0], ['5 ', 0], ['', 0], ['+', 0], ['-', 0], ['1e3', 0], ['0x10', 0], ['5_000', 0], ['٥', 0],
    ['9223372036854775807', Number('9223372036854775807')], ['09223372036854775807', Number('9223372036854775807')],
    ['9223372036854775808', 0], ['99999999999999999999', 0],
  ];
  for (const [value, seconds] of cases) t.is(heartbeatSeconds(value), seconds, JSON.stringify(value));
});

test('request targets are read like Go\'s url.ParseRequestURI: absolute form by its path, %XX decoded, bad ones undefined', (t) => {
  const cases: Array<[string, { path: string; search: string } | undefined]> = [
    ['http://x/v2/configwatcher?target=domain', { path: '/v2/configwatcher', search: 'target=domain' }],
    ['HTTPS://user@x:9001/version/', { path: '/version', search: '' }],
    ['http://x', { path: '', search: '' }],
    ['http://x?target=domain', { path: '', search: 'target=domain' }],
    ['http:/version', { path: '/version', search: '' }],
    ['mailto:x', { path: '', search: '' }],
    ['*', { path: '*', search: '' }],
    ['/v2/config%77atcher?target=a%2Fb', { path: '/v2/configwatcher', search: 'target=a%2Fb' }],
    ['/v2%2Fconfigwatcher%2F', { path: '/v2/configwatcher', search: '' }],
    ['/version%3F?x', { path: '/version?', search: 'x' }],
    ['/v2/%zz', undefined], ['/v2/%4', undefined], ['v2/configwatcher', undefined], [':x', undefined], ['1http://x/', undefined],
  ];
  for (const [target, expected] of cases) t.deepEqual(goTarget(target), expected, target);
});

test('every: a period longer than one timer holds is waited out in chained timers, one beat per period', (t) => {
  // maxTimerMs stands in for 2^31-1 ms: each 130 ms period is four chained timers (40+40+40+10).
  // Time is the subject, so the clock is a fake one, driven synchronously.
  const clock = installFakeClock();
  const beats: number[] = [];
  try {
    const stop = every(130, () => beats.push(clock.now), 40);
    clock.tick(129);
    t.deepEqual(beats, [], 'no beat per chained timer (at 40, 80, 120 ms), none before the period');
    clock.tick(1);
    t.deepEqual(beats, [130]);
    clock.tick(260);
    t.deepEqual(beats, [130, 260, 390], 'one beat per period');
    stop();
    clock.tick(1000);
    t.deepEqual(beats, [130, 260, 390], 'stop() stops it');
    // Up to maxTimerMs it is one interval timer.
    const short: number[] = [];
    const stopShort = every(40, () => short.push(clock.now), 40);
    clock.tick(120);
    stopShort();
    clock.tick(200);
    t.deepEqual(short, [1430, 1470, 1510]);
  } finally {
    clock.uninstall();
  }
});
