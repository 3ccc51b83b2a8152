// Operating lainlet (issue #5): the token and TLS between tiers, the refusal to serve strangers,
// standalone mode, and /metrics — with real etcd, hub and agent processes.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VERSION } from '../shared/version.js';
import WebSocket from 'ws';
import { etcdClient, putAll, startEtcd, v2Delete, v2Put, type EtcdServer } from '../testkit/etcd.js';
import { httpGet, openStream } from '../testkit/http.js';
import { freePorts } from '../testkit/ports.js';
import { startAgent, startHub, waitFor, type Proc } from '../testkit/procs.js';
import { agentSynced, fixtureKvs, hubHealthy } from './helpers/cluster.js';
import { LainletClient } from './grpc/client.js';

let etcd: EtcdServer;
let dir: string;
const TOKEN = 'correct-horse-battery-staple-42';

test.before(async () => {
  etcd = await startEtcd();
  const client = etcdClient(etcd);
  await putAll(client, fixtureKvs('cluster-small'));
  client.close();
  dir = mkdtempSync(join(tmpdir(), 'lainlet-ops-'));
  writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
  writeFileSync(join(dir, 'wrong'), 'this-is-not-the-right-token\n');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
});

test.after.always(async () => {
  await etcd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function withProcs(procs: Proc[], body: () => Promise<void>): Promise<void> {
  try { await body(); } finally { await Promise.all(procs.map((p) => p.kill().catch(() => {}))); }
}

function metricValue(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`metric ${name} missing`);
  return Number(m[1]);
}

test.serial('with --token-file, an agent without the token or with a wrong one is refused (401) and gets no data; the right token is served', async (t) => {
  const [hubPort, a1, a2, a3] = await freePorts(4);
  const hub = startHub(['--etcd', etcd.endpoint, '--listen', `127.0.0.1:${hubPort}`, '--token-file', join(dir, 'token')]);
  const procs = [hub];
  await withProcs(procs, async () => {
    await waitFor(() => hubHealthy(hubPort), { timeoutMs: 15_000, message: 'hub healthy' });
    // A raw client: 401 at the upgrade, no frame ever.
    const raw = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${hubPort}`);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => {});
    });
    t.is(raw, 401);
    const hubUrl = `ws://127.0.0.1:${hubPort}`;
    const none = startAgent(['-web', `127.0.0.1:${a1}`, '-hub', hubUrl]);
    const wrong = startAgent(['-web', `127.0.0.1:${a2}`, '-hub', hubUrl, '-token-file', join(dir, 'wrong')]);
    const right = startAgent(['-web', `127.0.0.1:${a3}`, '-hub', hubUrl, '-token-file', join(dir, 'token')]);
    procs.push(none, wrong, right);
    await waitFor(() => agentSynced(`http://127.0.0.1:${a3}`), { timeoutMs: 10_000, message: 'agent with the token syncs' });
    for (const port of [a1, a2]) {
      const debugOf = async () => JSON.parse((await httpGet(`http://127.0.0.1:${port}/debug`)).body) as { hub: { lastError: string } };
      await waitFor(async () => /401/.test((await debugOf()).hub.lastError), { timeoutMs: 10_000, message: 'refused agent reports 401' });
      const res = await httpGet(`http://127.0.0.1:${port}/v2/configwatcher?target=domain`);
      t.is(res.status, 503, 'no data without the right token');
    }
    t.regex(hub.output(), /missing or wrong token/);
  });
});

test.serial('TLS: the hub serves wss:// and an agent with -ca-file verifies it', async (t) => {
  const [hubPort, agentPort, plainAgentPort] = await freePorts(3);
  const hub = startHub(['--etcd', etcd.endpoint, '--listen', `127.0.0.1:${hubPort}`, '--token-file', join(dir, 'token'), '--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')]);
  const procs: Proc[] = [hub];
  await withProcs(procs, async () => {
    // Agents start once the hub listens, so their first error is about TLS, not a refused
    // connection (and a short backoff keeps the retries coming on a loaded machine).
    const listening = () => new Promise<boolean>((resolve) => {
      const s = net.connect(hubPort, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    await waitFor(listening, { timeoutMs: 15_000, message: 'TLS hub listening' });
    const agent = startAgent(['-web', `127.0.0.1:${agentPort}`, '-hub', `wss://127.0.0.1:${hubPort}`, '-token-file', join(dir, 'token'), '-ca-file', join(dir, 'cert.pem'), '-reconnect-max', '1000']);
    const untrusting = startAgent(['-web', `127.0.0.1:${plainAgentPort}`, '-hub', `wss://127.0.0.1:${hubPort}`, '-token-file', join(dir, 'token'), '-reconnect-max', '1000']);
    procs.push(agent, untrusting);
    await waitFor(() => agentSynced(`http://127.0.0.1:${agentPort}`), { timeoutMs: 15_000, message: `agent over wss syncs\n${agent.output()}\n${hub.output()}` });
    t.is((await httpGet(`http://127.0.0.1:${agentPort}/v2/configwatcher?target=domain`)).body, '{"domain":"lain.local"}');
    const debugOf = async () => JSON.parse((await httpGet(`http://127.0.0.1:${plainAgentPort}/debug`)).body) as { hasState: boolean; hub: { lastError: string } };
    await waitFor(async () => /certificate/i.test((await debugOf()).hub.lastError), { timeoutMs: 10_000, message: 'the untrusting agent reports the certificate' });
    const debug = await debugOf();
    t.false(debug.hasState, 'an agent that does not trust the certificate gets nothing');
    t.regex(debug.hub.lastError, /certificate/i);
  });
});

test.serial('the hub refuses a non-loopback listen address without a token, unless --insecure', async (t) => {
  const [port] = await freePorts(1);
  const refused = startHub(['--etcd', etcd.endpoint, '--listen', `0.0.0.0:${port}`]);
  const code = await refused.waitForExit(10_000);
  t.not(code, 0);
  t.regex(refused.output(), /refusing to listen on 0\.0\.0\.0:\d+ without --token-file/);
  const insecure = startHub(['--etcd', etcd.endpoint, '--listen', `0.0.0.0:${port}`, '--insecure']);
  await withProcs([insecure], async () => {
    await waitFor(() => hubHealthy(port), { timeoutMs: 15_000, message: 'insecure hub starts' });
    t.pass();
  });
});

test.serial('standalone: the original\'s command line runs an embedded hub, with one etcd watch per node', async (t) => {
  const [web, grpcPort] = await freePorts(2);
  // Hubs of earlier tests were killed; etcd notices their watches end in its own time.
  await waitFor(async () => (await etcd.watcherCount()) === 0, { timeoutMs: 15_000, message: 'no watchers left from earlier tests' });
  const agent = startAgent(['-web', `127.0.0.1:${web}`, '-etcd', etcd.endpoint, '-ip', '127.0.0.1', '-hostname', 'node1', `-grpc.addr=127.0.0.1:${grpcPort}`, '-debug']);
  await withProcs([agent], async () => {
    const base = `http://127.0.0.1:${web}`;
    await waitFor(() => agentSynced(base), { timeoutMs: 15_000, message: `standalone agent syncs\n${agent.output()}` });
    await waitFor(async () => (await etcd.watcherCount()) === 1, { timeoutMs: 5000, message: 'one etcd watch for the standalone agent' });
    t.is(await etcd.watcherCount(), 1);
    const client = etcdClient(etcd);
    await client.put('/lain/config/standalone').value('yes');
    client.close();
    await waitFor(async () => (await httpGet(`${base}/v2/configwatcher?target=standalone`)).body === '{"standalone":"yes"}', { timeoutMs: 3000, message: 'put reaches the standalone agent' });
    const grpc = new LainletClient(`127.0.0.1:${grpcPort}`);
    t.deepEqual(await grpc.call('/message.Config/Get', { Target: 'standalone' }), { reply: { Data: { standalone: 'yes' } } });
    grpc.close();
  });
});

test.serial('/metrics on hub and agent: Prometheus text whose counters move', async (t) => {
  const [hubPort, web] = await freePorts(2);
  const hub = startHub(['--etcd', etcd.endpoint, '--listen', `127.0.0.1:${hubPort}`]);
  const agent = startAgent(['-web', `127.0.0.1:${web}`, '-hub', `ws://127.0.0.1:${hubPort}`, '-ip', '127.0.0.1']);
  await withProcs([hub, agent], async () => {
    const base = `http://127.0.0.1:${web}`;
    await waitFor(() => agentSynced(base), { timeoutMs: 15_000, message: 'agent syncs' });
    const hub0 = (await httpGet(`http://127.0.0.1:${hubPort}/metrics`)).body;
    const agent0 = (await httpGet(`${base}/metrics`)).body;
    t.regex(hub0, /^# TYPE lainlet_hub_deltas_total counter$/m);
    t.is(metricValue(hub0, 'lainlet_hub_agents_connected'), 1);
    t.is(metricValue(hub0, 'lainlet_hub_snapshots_sent_total'), 1);
    const client = etcdClient(etcd);
    await client.put('/lain/config/metrics').value('1');
    client.close();
    await waitFor(async () => (await httpGet(`${base}/v2/configwatcher?target=metrics`)).body === '{"metrics":"1"}', { timeoutMs: 3000, message: 'put arrives' });
    const hub1 = (await httpGet(`http://127.0.0.1:${hubPort}/metrics`)).body;
    const agent1 = (await httpGet(`${base}/metrics`)).body;
    t.true(metricValue(hub1, 'lainlet_hub_deltas_total') > metricValue(hub0, 'lainlet_hub_deltas_total'));
    t.true(metricValue(hub1, 'lainlet_hub_bytes_sent_total') > metricValue(hub0, 'lainlet_hub_bytes_sent_total'));
    t.true(metricValue(hub1, 'lainlet_hub_revision') > metricValue(hub0, 'lainlet_hub_revision'));
    t.true(metricValue(agent1, 'lainlet_agent_revision') > metricValue(agent0, 'lainlet_agent_revision'));
    t.regex(agent1, /^lainlet_agent_requests_total\{path="\/v2\/configwatcher",status="200"\} \d+$/m);
    t.is(metricValue(agent1, 'lainlet_agent_stale'), 0);
    t.is((await httpGet(`http://127.0.0.1:${hubPort}/healthz`)).status, 200);
  });
});

test.serial('standalone on the etcd v2 keyspace: -store etcd2 serves what deployd writes through v2, directory deletes included', async (t) => {
  t.timeout(60_000);
  const v2 = await startEtcd({ v2: true });
  const [web] = await freePorts(1);
  const agent = startAgent(['-web', `127.0.0.1:${web}`, '-etcd', v2.endpoint, '-store', 'etcd2', '-ip', '127.0.0.1']);
  try {
    await v2Put(v2, '/lain/config/domain', 'lain.local');
    await v2Put(v2, '/lain/config/vips/10.0.0.1', '{"app": "webrouter"}');
    await v2Put(v2, '/lain/config/vipsx', 'stays');
    const base = `http://127.0.0.1:${web}`;
    await waitFor(() => agentSynced(base), { timeoutMs: 15_000, message: `v2 standalone agent syncs\n${agent.output()}` });
    const stream = await openStream(`${base}/v2/configwatcher?target=vips&watch=1`);
    const [init] = await stream.waitForEvents(1, 3000);
    t.is(init.data, '{"vips/10.0.0.1":"{\\"app\\": \\"webrouter\\"}","vipsx":"stays"}');
    await v2Delete(v2, '/lain/config/vips', { dir: true, recursive: true });
    const ev = await stream.waitFor((e) => e.event === 'delete', 3000);
    t.is(ev.data, '{"vipsx":"stays"}');
    stream.close();
  } finally {
    await agent.kill();
    await v2.stop();
  }
});

test('-v prints the version; bad flags exit non-zero with the usage', (t) => {
  const agent = fileURLToPath(new URL('../dist/agent/main.js', import.meta.url));
  const hub = fileURLToPath(new URL('../dist/hub/main.js', import.meta.url));
  t.is(execFileSync(process.execPath, [agent, '-v'], { encoding: 'utf8' }).trim(), VERSION);
  t.is(execFileSync(process.execPath, [hub, '--version'], { encoding: 'utf8' }).trim(), VERSION);
  const err = t.throws<Error & { status: number; stderr: string }>(() => execFileSync(process.execPath, [agent, '-nosuch'], { encoding: 'utf8', stdio: 'pipe' }));
  t.is(err.status, 2);
  t.regex(err.stderr, /flag provided but not defined: -nosuch/);
  t.regex(err.stderr, /Usage of lainlet-agent/);
});
