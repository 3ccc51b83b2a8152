// The hub's store path under faults injected at precise moments (issue "Nothing lost, nothing
// silent", items 1, 5, 6, 7): real etcd, real hub and agent processes, the fault proxy between
// hub and etcd. Each test checks the agent against etcd, not a timer.
import test from 'ava';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { currentRevision, etcdClient, startEtcd } from '../testkit/etcd.js';
import { httpGet, openStream } from '../testkit/http.js';
import { freePorts } from '../testkit/ports.js';
import { startAgent, startHub, waitFor } from '../testkit/procs.js';
import { agentSynced, hubHealthy } from './helpers/cluster.js';
import { startProxy } from './helpers/proxy.js';
import { decodeFrame, encodeFrame, type HubFrame } from '../shared/protocol.js';

interface AgentDebug { revision: number; stale: boolean; hub: { live: boolean; reconnects: number; snapshots: number; resets: number } }

async function debugOf(base: string): Promise<AgentDebug> {
  return JSON.parse((await httpGet(`${base}/debug`)).body) as AgentDebug;
}

async function agentConfig(base: string, sub: string): Promise<Record<string, string>> {
  const res = await httpGet(`${base}/v2/configwatcher?target=${encodeURIComponent(sub)}`);
  if (res.status !== 200) throw new Error(`${res.status} ${res.body}`);
  return JSON.parse(res.body) as Record<string, string>;
}

async function etcdConfig(client: ReturnType<typeof etcdClient>, sub: string): Promise<Record<string, string>> {
  const kvs = await client.getAll().prefix(`/lain/config/${sub}`).strings();
  return Object.fromEntries(Object.entries(kvs).map(([k, v]) => [k.slice('/lain/config/'.length), v]));
}

/** `promise`, or a clear failure after `ms` (a fault that never happens must not hang the run). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(timer));
}

async function hubMetric(port: number, name: string): Promise<number> {
  const text = (await httpGet(`http://127.0.0.1:${port}/metrics`)).body;
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`metric ${name} not found`);
  return Number(m[1]);
}

// Each round is a reconnection whose backlog is cut again; four show that it holds every time
// (the soak breaks watches at random on top).
const ROUNDS = 4;

test.serial('etcd watch broken again mid-backlog after each reconnect: the hub resumes from its own cursor and no revision is skipped', async (t) => {
  t.timeout(600_000);
  const etcd = await startEtcd();
  const proxy = await startProxy(Number(etcd.endpoint.split(':')[1]));
  const [hubPort, agentPort] = await freePorts(2);
  const hub = startHub(['--etcd', `127.0.0.1:${proxy.port}`, '--listen', `127.0.0.1:${hubPort}`, '--progress-interval', '300', '--history-prefill', '0']);
  const base = `http://127.0.0.1:${agentPort}`;
  const agent = startAgent(['-web', `127.0.0.1:${agentPort}`, '-hub', `ws://127.0.0.1:${hubPort}`, '-ip', '127.0.0.1', '-silence-timeout', '1500', '-reconnect-max', '1000']);
  const client = etcdClient(etcd);
  try {
    await client.put('/lain/config/rounds/start').value('0');
    await waitFor(() => agentSynced(base), { timeoutMs: 20_000, message: `agent sync\n${agent.output()}` });
    for (let round = 0; round < ROUNDS; round++) {
      // A partition that keeps the proxy's port (cut() would give it up, and on a busy machine
      // another process may take it before restore()): new connections are reset, open ones dropped.
      proxy.refuse();
      proxy.drop();
      for (let i = 0; i < 20; i++) await client.put(`/lain/config/rounds/r${round}k${i}`).value(`value ${round}.${i} ${'x'.repeat(40)}`);
      // The next connection may carry only a few hundred bytes: enough for the watch to be
      // re-created, not for its backlog of 20 revisions. The hub's client may open a connection,
      // leave it idle (its circuit breaker open) and carry the watch on a later one: each later
      // connection moves the budget onto all open ones, so whichever carries the backlog is cut
      // in it (instead of waiting out an idle connection's budget).
      let budget = proxy.cutAfter(400, { direction: 'down', connections: 'next' });
      let accepted = 0;
      const onConnection = () => {
        if (++accepted === 1) return;
        budget.cancel();
        budget = proxy.cutAfter(400, { direction: 'down', connections: 'current' });
      };
      proxy.events.on('connection', onConnection);
      let result;
      try {
        await proxy.restore();
        for (;;) {
          const awaited = budget;
          result = await within(awaited.exhausted, 60_000, `round ${round}: the budget\n${hub.output()}`);
          // A budget moved onto a later connection resolves cut: false; await its successor.
          if (result.cut || budget === awaited) break;
        }
      } finally {
        proxy.events.off('connection', onConnection);
      }
      t.true(result.cut, `round ${round}: the budget was used up`);
    }
    await proxy.heal();
    // A marker written after every round: once the agent has it, the watch is live past all
    // the rounds — every key before it must be there too.
    await client.put('/lain/config/rounds/marker').value('done');
    await waitFor(async () => (await agentConfig(base, 'rounds/marker'))['rounds/marker'] === 'done', { timeoutMs: 60_000, message: `marker\n${hub.output()}` });
    const expected = await etcdConfig(client, 'rounds');
    t.is(Object.keys(expected).length, ROUNDS * 20 + 2);
    t.deepEqual(await agentConfig(base, 'rounds'), expected, 'every key written during the rounds reached the agent');
  } finally {
    client.close();
    await agent.kill();
    await hub.kill();
    await proxy.close();
    await etcd.stop();
  }
});

/** A bare WebSocket agent: says hello at `rev` and collects frames. */
function rawAgent(url: string, rev: number, epoch?: string) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const frames: HubFrame[] = [];
  const waiters: Array<() => void> = [];
  ws.binaryType = 'nodebuffer';
  ws.on('open', () => ws.send(encodeFrame(epoch ? { t: 'hello', v: 1, node: 'raw', rev, epoch } : { t: 'hello', v: 1, node: 'raw', rev })));
  ws.on('message', (data: Buffer) => { frames.push(decodeFrame(data) as HubFrame); for (const w of waiters.splice(0)) w(); });
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => { for (const w of waiters.splice(0)) w(); resolve(code); }));
  ws.on('error', () => {});
  return {
    frames, closed, ws,
    async waitFor(pred: (f: HubFrame) => boolean, timeoutMs = 20_000): Promise<HubFrame> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const f = frames.find(pred);
        if (f) return f;
        if (ws.readyState === WebSocket.CLOSED || Date.now() > deadline) throw new Error(`no such frame; got ${frames.map((x) => x.t).join(',')}`);
        await new Promise<void>((r) => { waiters.push(r); setTimeout(r, 500); });
      }
    },
  };
}

test.serial('a starting hub whose list of the present is slow never hands out its prefill (the past) as the present', async (t) => {
  t.timeout(90_000);
  const etcd = await startEtcd();
  const client = etcdClient(etcd);
  const proxy = await startProxy(Number(etcd.endpoint.split(':')[1]));
  const [hubPort] = await freePorts(1);
  let hub: ReturnType<typeof startHub> | undefined;
  try {
    for (let i = 1; i <= 100; i++) await client.put('/lain/config/tick').value(String(i));
    // Every answer from etcd arrives late: the hub's historical list lands well before its
    // list of the present, and an agent is already waiting when the first one does.
    proxy.delay(400);
    hub = startHub(['--etcd', `127.0.0.1:${proxy.port}`, '--listen', `127.0.0.1:${hubPort}`, '--progress-interval', '300', '--history-prefill', '50']);
    await hub.waitForLine(/hub listening/);
    const raw = rawAgent(`ws://127.0.0.1:${hubPort}`, 0);
    const snap = await raw.waitFor((f) => f.t === 'snap' && f.last, 60_000);
    const puts = new Map((snap as { puts: Array<[string, string]> }).puts);
    t.is(puts.get('/lain/config/tick'), '100', 'the first state an agent gets is the present');
    raw.ws.terminate();
    t.notRegex(hub.output(), /ahead/, 'no line about an agent ahead: none was');
  } finally {
    client.close();
    await hub?.kill();
    await proxy.close();
    await etcd.stop();
  }
});

test.serial('catch-up larger than the per-agent backpressure limit is paced: the agent is current after one connection', async (t) => {
  t.timeout(90_000);
  const etcd = await startEtcd();
  const client = etcdClient(etcd);
  const [hubPort, agentPort] = await freePorts(2);
  const stateDir = mkdtempSync(join(tmpdir(), 'lainlet-paced-'));
  const hub = startHub(['--etcd', etcd.endpoint, '--listen', `127.0.0.1:${hubPort}`, '--progress-interval', '300', '--max-backpressure', String(256 * 1024)]);
  const base = `http://127.0.0.1:${agentPort}`;
  const agentArgs = ['-web', `127.0.0.1:${agentPort}`, '-hub', `ws://127.0.0.1:${hubPort}`, '-ip', '127.0.0.1', '-state-dir', stateDir, '-silence-timeout', '1500', '-reconnect-max', '1000'];
  let agent = startAgent(agentArgs);
  try {
    await client.put('/lain/config/big/start').value('0');
    await waitFor(() => agentSynced(base), { timeoutMs: 20_000, message: `agent sync\n${agent.output()}` });
    await agent.stop('SIGTERM');
    // 8 MB of deltas while the agent is away: 32 × the limit, and more than loopback's socket
    // buffers absorb at once (they would hide an unpaced catch-up).
    for (let i = 0; i < 128; i++) await client.put(`/lain/config/big/k${i % 16}`).value(`${i} ${'v'.repeat(64 * 1024)}`);
    const rev = await currentRevision(client);
    await waitFor(async () => (JSON.parse((await httpGet(`http://127.0.0.1:${hubPort}/healthz`)).body) as { revision: number }).revision >= rev, { message: 'hub at the revision' });
    agent = startAgent(agentArgs);
    await waitFor(async () => (await debugOf(base)).revision >= rev && (await debugOf(base)).hub.live, { timeoutMs: 30_000, message: `agent current\n${agent.output()}` });
    const d = await debugOf(base);
    t.is(d.hub.reconnects, 0, 'caught up on its first connection');
    t.is(d.hub.snapshots, 0, 'from history deltas, not a snapshot');
    t.deepEqual(await agentConfig(base, 'big'), await etcdConfig(client, 'big'));
  } finally {
    client.close();
    await agent.kill();
    await hub.kill();
    await etcd.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test.serial('etcd restored from an older backup: the hub says so, and every agent converges to the restored state by ordinary updates — connected ones at once, and ahead ones on a restarted hub', async (t) => {
  t.timeout(150_000);
  const etcd = await startEtcd();
  let client = etcdClient(etcd);
  const [hubPort, agentPort, agent2Port] = await freePorts(3);
  const backup = mkdtempSync(join(tmpdir(), 'lainlet-backup-'));
  const hubArgs = ['--etcd', etcd.endpoint, '--listen', `127.0.0.1:${hubPort}`, '--progress-interval', '300'];
  let hub = startHub(hubArgs);
  const base = `http://127.0.0.1:${agentPort}`;
  const base2 = `http://127.0.0.1:${agent2Port}`;
  const agent = startAgent(['-web', `127.0.0.1:${agentPort}`, '-hub', `ws://127.0.0.1:${hubPort}`, '-ip', '127.0.0.1', '-silence-timeout', '1500', '-reconnect-max', '1000']);
  let agent2: ReturnType<typeof startAgent> | undefined;
  /** Puts the backup in place of etcd's data dir: etcd comes back at the backup's revision. */
  const restoreBackup = async () => {
    client.close();
    await etcd.kill();
    rmSync(etcd.dataDir, { recursive: true, force: true });
    cpSync(backup, etcd.dataDir, { recursive: true });
    await etcd.restart();
    return etcdClient(etcd);
  };
  try {
    await client.put('/lain/config/restore/a').value('1');
    await waitFor(() => agentSynced(base), { timeoutMs: 20_000, message: `agent sync\n${agent.output()}` });
    // The backup: etcd's data dir as it is now.
    client.close();
    await etcd.kill();
    cpSync(etcd.dataDir, backup, { recursive: true });
    await etcd.restart();
    client = etcdClient(etcd);
    // Life goes on after the backup: more revisions, other values.
    await client.put('/lain/config/restore/a').value('2');
    await client.put('/lain/config/restore/b').value('after the backup');
    for (let i = 0; i < 30; i++) await client.put('/lain/config/restore/churn').value(String(i));
    const before = await currentRevision(client);
    await waitFor(async () => (await debugOf(base)).revision >= before, { timeoutMs: 20_000, message: 'agent at the pre-restore revision' });
    const stream = await openStream(`${base}/v2/configwatcher?target=restore&watch=1`);
    // Restore the backup: etcd comes back at a lower revision with the old contents.
    client = await restoreBackup();
    const restoredRev = await currentRevision(client);
    t.true(restoredRev < before, `the restore lowered etcd's revision (${restoredRev} < ${before})`);
    const restored = await etcdConfig(client, 'restore');
    await waitFor(async () => JSON.stringify(await agentConfig(base, 'restore')) === JSON.stringify(restored), { timeoutMs: 40_000, message: `connected agent converges\n${hub.output()}` });
    await hub.waitForLine(/STORE HISTORY RESET/, 5_000);
    t.true(await hubMetric(hubPort, 'lainlet_hub_store_resets_total') >= 1, 'counted in the hub metrics');
    t.true((await debugOf(base)).hub.resets >= 1, 'the agent says it took a reset');
    const last = stream.events[stream.events.length - 1];
    if (!last) t.log(stream.raw(), stream.ended);
    t.is(last?.event, 'update', 'the stream saw an ordinary update, not a new init');
    t.deepEqual(JSON.parse(last?.data ?? 'null'), restored);
    stream.close();
    // The restored etcd carries on; the hub's watch follows it.
    await client.put('/lain/config/restore/a').value('3');
    await waitFor(async () => (await agentConfig(base, 'restore'))['restore/a'] === '3', { timeoutMs: 20_000, message: 'watch after the reset' });

    // Second case: a hub restarted on the restored etcd meets an agent whose revision is from
    // the lost history, far ahead of etcd: the agent gets a reset snapshot, not a wait loop.
    const aheadRev = (await debugOf(base)).revision;
    await hub.kill();
    await client.put('/lain/config/restore/a').value('4'); // the agent misses this one
    // Rewind etcd again, below the agent: the agent's revision is beyond the store's.
    client = await restoreBackup();
    t.true(await currentRevision(client) < aheadRev, 'the agent is ahead of etcd');
    hub = startHub(hubArgs);
    await waitFor(() => hubHealthy(hubPort), { timeoutMs: 20_000, message: `restarted hub\n${hub.output()}` });
    const expected = await etcdConfig(client, 'restore');
    await waitFor(async () => JSON.stringify(await agentConfig(base, 'restore')) === JSON.stringify(expected), { timeoutMs: 40_000, message: `ahead agent converges\n${agent.output()}` });
    t.true((await debugOf(base)).hub.live, 'and is live on the restarted hub');
    // A fresh agent on the same hub sees the same state.
    agent2 = startAgent(['-web', `127.0.0.1:${agent2Port}`, '-hub', `ws://127.0.0.1:${hubPort}`, '-ip', '127.0.0.1']);
    await waitFor(() => agentSynced(base2), { timeoutMs: 20_000, message: 'agent2' });
    t.deepEqual(await agentConfig(base2, 'restore'), expected);
  } finally {
    client.close();
    await agent.kill();
    await agent2?.kill();
    await hub.kill();
    await etcd.stop();
    rmSync(backup, { recursive: true, force: true });
  }
});
