// The hub tier surviving faults (issue #4), with real etcd, real hub and agent processes.
import test from 'ava';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { compact, etcdClient, startEtcd } from '../testkit/etcd.js';
import { httpGet, openStream, type EventStream } from '../testkit/http.js';
import { freePort, freePorts } from '../testkit/ports.js';
import { startAgent, startHub, waitFor } from '../testkit/procs.js';
import { agentSynced, fixtureKvs, hubHealthy, startCluster } from './helpers/cluster.js';
import { startProxy } from './helpers/proxy.js';
import { encodeFrame } from '../shared/protocol.js';

interface AgentDebug { revision: number; stale: boolean; source: string; hub: { address: string; live: boolean; snapshots: number } }

async function debugOf(base: string): Promise<AgentDebug> {
  return JSON.parse((await httpGet(`${base}/debug`)).body) as AgentDebug;
}

async function hubMetric(port: number, name: string): Promise<number> {
  const text = (await httpGet(`http://127.0.0.1:${port}/metrics`)).body;
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`metric ${name} not found`);
  return Number(m[1]);
}

/** etcd's /lain/config/<sub> as the agent's configwatcher would answer it. */
async function etcdConfig(client: ReturnType<typeof etcdClient>, sub: string): Promise<Record<string, string>> {
  const kvs = await client.getAll().prefix(`/lain/config/${sub}`).strings();
  return Object.fromEntries(Object.entries(kvs).map(([k, v]) => [k.slice('/lain/config/'.length), v]));
}

async function agentConfig(base: string, sub: string): Promise<Record<string, string>> {
  const res = await httpGet(`${base}/v2/configwatcher?target=${encodeURIComponent(sub)}`);
  if (res.status !== 200) throw new Error(`${res.status} ${res.body}`);
  return JSON.parse(res.body) as Record<string, string>;
}

/** The counter values a stream saw, in order. */
function counterValues(s: EventStream): number[] {
  return s.events.filter((e) => e.event !== 'heartbeat' && e.data !== '{}').map((e) => Number((JSON.parse(e.data) as Record<string, string>)['chaos/counter']));
}

test.serial('chaos: hub SIGKILL and restart, compaction behind a partitioned hub, etcd restart — every agent ends with etcd\'s exact state and no stream went backwards', async (t) => {
  t.timeout(120_000);
  const etcd = await startEtcd();
  const [etcdPort] = [Number(etcd.endpoint.split(':')[1])];
  const proxy = await startProxy(etcdPort);
  const [hub0Port, hub1Port] = await freePorts(2);
  const hub0Args = ['--etcd', etcd.endpoint, '--listen', `127.0.0.1:${hub0Port}`, '--progress-interval', '300'];
  let hub0 = startHub(hub0Args);
  const hub1 = startHub(['--etcd', `127.0.0.1:${proxy.port}`, '--listen', `127.0.0.1:${hub1Port}`, '--progress-interval', '300']);
  const agentPorts = await freePorts(3);
  const hubs = `ws://127.0.0.1:${hub0Port},ws://127.0.0.1:${hub1Port}`;
  const agents = agentPorts.map((p) => ({ base: `http://127.0.0.1:${p}`, proc: startAgent(['-web', `127.0.0.1:${p}`, '-hub', hubs, '-ip', '127.0.0.1', '-silence-timeout', '1000', '-reconnect-max', '1000']) }));
  const client = etcdClient(etcd);
  let writing = true;
  try {
    await client.put('/lain/config/chaos/counter').value('0');
    for (const a of agents) await waitFor(() => agentSynced(a.base), { timeoutMs: 15_000, message: `agent sync\n${a.proc.output()}` });
    const streams = await Promise.all(agents.map((a) => openStream(`${a.base}/v2/configwatcher?target=chaos/counter&watch=1`)));

    let n = 0;
    let writeErrors = 0;
    let committed = 0;
    // After etcd's restart the writer moves to a fresh client: this one's circuit breaker stays
    // open for 5 s after the failures of the outage.
    let writeClient = client;
    const writer = (async () => {
      while (writing) {
        n++;
        try {
          await writeClient.stm().transact(async (tx) => {
            await tx.put('/lain/config/chaos/counter').value(String(n));
            await tx.put(`/lain/config/chaos/k${n % 17}`).value(String(n));
            if (n % 5 === 0) await tx.delete().key(`/lain/config/chaos/k${(n + 3) % 17}`);
          });
          committed++;
        } catch { writeErrors++; }
        await new Promise((r) => setTimeout(r, 15)); // pacing (a bounded write rate), not a wait for anything
      }
    })();

    // Each step of the schedule waits for what it needs to have happened, not for a time: writes
    // committed in every phase (so each fault meets traffic), and the fault's own effect.
    const written = async (phase: string, k = 5) => {
      const from = committed;
      await waitFor(() => committed >= from + k, { timeoutMs: 20_000, intervalMs: 10, message: `${k} writes committed ${phase}` });
    };
    const hub1Url = `ws://127.0.0.1:${hub1Port}`;
    await written('before the faults');
    for (const s of streams) await s.waitFor((e) => e.event === 'update');
    await hub0.kill();                                   // SIGKILL
    for (const a of agents) {
      await waitFor(async () => { const d = await debugOf(a.base); return d.hub.live && d.hub.address === hub1Url; }, { message: `agent ${a.base} on hub1 after hub0's SIGKILL` });
    }
    await written('with hub0 dead');
    hub0 = startHub(hub0Args);                           // restart on the same port
    await waitFor(() => hubHealthy(hub0Port), { timeoutMs: 15_000, message: `restarted hub0\n${hub0.output()}` });
    await written('with hub0 back');
    await proxy.cut();                                   // hub1 loses etcd…
    await written('while hub1 is partitioned');
    await compact(etcd);                                 // …while history it has not seen is compacted
    await written('after the compaction');
    await proxy.restore();                               // hub1's watch resumes at a compacted revision
    await waitFor(async () => (await hubMetric(hub1Port, 'lainlet_hub_store_relists_total')) >= 2, { timeoutMs: 20_000, message: 'hub1 listing again after the compacted watch' });
    await written('with hub1 back');
    const failedBefore = writeErrors;
    await etcd.kill();                                   // etcd itself dies…
    await waitFor(() => writeErrors > failedBefore, { timeoutMs: 20_000, intervalMs: 10, message: 'a write failing while etcd is down' });
    await etcd.restart();                                // …and comes back
    writeClient = etcdClient(etcd);
    await written('after etcd\'s restart');
    writing = false;
    await writer;
    if (writeClient !== client) writeClient.close();
    t.log(`${n} write transactions, ${writeErrors} failed while etcd was down`);

    // The test's own client has given up on the restarted etcd (circuit breaker): a fresh one.
    const reader = etcdClient(etcd);
    const want = await etcdConfig(reader, 'chaos/');
    reader.close();
    for (const a of agents) {
      try {
        await waitFor(async () => JSON.stringify(await agentConfig(a.base, 'chaos/')) === JSON.stringify(want), { timeoutMs: 20_000, message: `agent ${a.base} did not converge` });
      } catch (err) {
        t.log('want', want, 'have', await agentConfig(a.base, 'chaos/'), 'debug', await debugOf(a.base));
        for (const port of [hub0Port, hub1Port]) t.log(port, (await httpGet(`http://127.0.0.1:${port}/healthz`).catch((e: Error) => ({ body: e.message }))).body);
        t.log(hub1.output().split('\n').slice(-15).join('\n'));
        t.log(hub0.output().split('\n').slice(-15).join('\n'));
        throw err;
      }
    }
    for (const a of agents) t.deepEqual(await agentConfig(a.base, 'chaos/'), want);
    for (const [i, s] of streams.entries()) {
      await s.waitFor((e) => e.data === JSON.stringify({ 'chaos/counter': want['chaos/counter'] }), 10_000);
      const values = counterValues(s);
      for (let j = 1; j < values.length; j++) t.true(values[j] > values[j - 1], `stream ${i} went from ${values[j - 1]} to ${values[j]}`);
      t.true(values.length > 5, `stream ${i} saw progress`);
      s.close();
    }
    t.true(await hubMetric(hub1Port, 'lainlet_hub_store_relists_total') >= 2, 'the partitioned hub listed again after losing its watch');
    t.is(hub1.proc.exitCode, null);
  } finally {
    writing = false;
    client.close();
    await Promise.all([hub0.kill(), hub1.kill(), ...agents.map((a) => a.proc.kill())]);
    await proxy.close();
    await etcd.stop();
  }
});

test.serial('a hub restarted after a short outage resumes its agents with deltas, not snapshots', async (t) => {
  t.timeout(60_000);
  const cluster = await startCluster({ hubs: 1, agents: 2, kvs: fixtureKvs('cluster-small') });
  const client = etcdClient(cluster.etcd);
  try {
    const hub = cluster.hubs[0];
    await hub.proc.kill();
    for (let i = 0; i < 5; i++) await client.put(`/lain/config/outage/k${i}`).value(String(i));
    const restarted = await cluster.startHubAt(hub.port);
    for (const a of cluster.agents) {
      await waitFor(async () => Object.keys(await agentConfig(a.base, 'outage/')).length === 5, { timeoutMs: 15_000, message: 'agent caught up' });
    }
    t.is(await hubMetric(restarted.port, 'lainlet_hub_snapshots_sent_total'), 0);
    t.is(await hubMetric(restarted.port, 'lainlet_hub_resumes_total'), 2);
  } finally {
    client.close();
    await cluster.stop();
  }
});

test.serial('SIGTERM on a hub moves its agents to the other hub; their clients\' streams never notice', async (t) => {
  t.timeout(60_000);
  const cluster = await startCluster({ hubs: 2, agents: 3, kvs: fixtureKvs('cluster-small') });
  const client = etcdClient(cluster.etcd);
  try {
    const streams = await Promise.all(cluster.agents.map((a) => openStream(`${a.base}/v2/configwatcher?target=move/&watch=1`)));
    for (const s of streams) await s.waitForEvents(1, 5000);
    const [hubA, hubB] = cluster.hubs;
    const code = await hubA.proc.stop('SIGTERM', 10_000);
    t.is(code, 0);
    t.regex(hubA.proc.output(), /moving agents/);
    for (const a of cluster.agents) {
      await waitFor(async () => { const d = await debugOf(a.base); return d.hub.live && d.hub.address === hubB.url; }, { timeoutMs: 10_000, message: 'agent moved to the other hub' });
    }
    await client.put('/lain/config/move/x').value('1');
    for (const s of streams) {
      const ev = await s.waitFor((e) => e.event === 'update', 3000);
      t.is(ev.data, '{"move/x":"1"}');
      t.false(s.ended);
      s.close();
    }
  } finally {
    client.close();
    await cluster.stop();
  }
});

test.serial('with every hub down, a restarted agent serves its state file (stale) instead of 503', async (t) => {
  t.timeout(60_000);
  const stateDir = mkdtempSync(join(tmpdir(), 'lainlet-state-'));
  const cluster = await startCluster({ hubs: 1, agents: 1, kvs: fixtureKvs('cluster-small'), agentArgs: () => ['-ip', '127.0.0.1', '-hostname', 'node1', '-state-dir', stateDir] });
  try {
    const agent = cluster.agents[0];
    const before = (await httpGet(`${agent.base}/v2/coreinfowatcher`)).body;
    await waitFor(() => { try { return readFileSync(join(stateDir, 'state.bin')).length > 0; } catch { return false; } }, { timeoutMs: 5000, message: 'state file written' });
    t.is(await agent.proc.stop('SIGTERM'), 0, 'the agent exits cleanly on SIGTERM');
    await cluster.hubs[0].proc.kill();
    const port = await freePort();
    const again = startAgent(['-web', `127.0.0.1:${port}`, '-hub', cluster.hubs[0].url, '-ip', '127.0.0.1', '-hostname', 'node1', '-state-dir', stateDir]);
    try {
      const base = `http://127.0.0.1:${port}`;
      await waitFor(() => agentSynced(base), { timeoutMs: 10_000, message: `agent serving from state file\n${again.output()}` });
      t.is((await httpGet(`${base}/v2/coreinfowatcher`)).body, before);
      const d = await debugOf(base);
      t.true(d.stale);
      t.is(d.source, 'state-file');
      t.false(d.hub.live);
    } finally {
      await again.kill();
    }
  } finally {
    await cluster.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test.serial('a corrupt or truncated state file is reported and ignored', async (t) => {
  t.timeout(30_000);
  for (const [name, bytes] of [['garbage', Buffer.from('this is not a state file')], ['truncated', null]] as const) {
    const stateDir = mkdtempSync(join(tmpdir(), 'lainlet-state-'));
    try {
      if (bytes) writeFileSync(join(stateDir, 'state.bin'), bytes);
      else {
        const { encodeState } = await import('../agent/persist.js');
        const whole = encodeState({ rev: 5, savedAt: Date.now(), entries: [['/lain/config/domain', 'lain.local']] });
        writeFileSync(join(stateDir, 'state.bin'), whole.subarray(0, whole.length - 7));
      }
      const [port, deadHub] = await freePorts(2);
      const agent = startAgent(['-web', `127.0.0.1:${port}`, '-hub', `ws://127.0.0.1:${deadHub}`, '-state-dir', stateDir]);
      try {
        await agent.waitForLine(/state file is corrupt/, 10_000);
        await agent.waitForLine(/agent listening/, 10_000);
        const res = await httpGet(`http://127.0.0.1:${port}/v2/configwatcher?target=domain`);
        t.is(res.status, 503, name);
      } finally {
        await agent.kill();
      }
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  }
});

test.serial('a rogue WebSocket client is closed with an error frame; the real agents are not disturbed', async (t) => {
  t.timeout(60_000);
  const cluster = await startCluster({ hubs: 1, agents: 1, kvs: fixtureKvs('cluster-small') });
  const client = etcdClient(cluster.etcd);
  try {
    const hub = cluster.hubs[0];
    const rogue = new WebSocket(hub.url);
    const closed = new Promise<number>((resolve) => rogue.on('close', (code) => resolve(code)));
    rogue.on('error', () => {});
    rogue.on('open', () => rogue.send(Buffer.from([0xde, 0xad, 0xbe, 0xef])));
    t.is(await closed, 1008);
    const wrongVersion = new WebSocket(hub.url);
    const closed2 = new Promise<number>((resolve) => wrongVersion.on('close', (code) => resolve(code)));
    wrongVersion.on('error', () => {});
    wrongVersion.on('open', () => wrongVersion.send(encodeFrame({ t: 'hello', v: 42, node: 'x', rev: 0 })));
    t.is(await closed2, 1008);
    await client.put('/lain/config/rogue/x').value('1');
    const a = cluster.agents[0];
    await waitFor(async () => (await agentConfig(a.base, 'rogue/'))['rogue/x'] === '1', { timeoutMs: 3000, message: 'agent still served' });
    t.true(await hubMetric(hub.port, 'lainlet_hub_rejected_clients_total') >= 2);
    t.true((await debugOf(a.base)).hub.live);
  } finally {
    client.close();
    await cluster.stop();
  }
});

test.serial('a hub disconnects a slow agent instead of dropping deltas; the agent resumes and catches up', async (t) => {
  t.timeout(60_000);
  const cluster = await startCluster({ hubs: 1, agents: 1, kvs: fixtureKvs('cluster-small'), hubArgs: ['--max-backpressure', String(256 * 1024)] });
  const client = etcdClient(cluster.etcd);
  try {
    const hub = cluster.hubs[0];
    // A raw agent that says hello and then never reads.
    const slow = new WebSocket(hub.url);
    slow.on('error', () => {});
    await new Promise((r) => slow.on('open', r));
    const answered = new Promise((r) => slow.once('message', r));
    slow.send(encodeFrame({ t: 'hello', v: 1, node: 'slow', rev: 0 }));
    await answered; // the hub has taken the hello: it serves this agent from here on
    (slow as unknown as { _socket: { pause(): void } })._socket.pause();
    // More than loopback's socket buffers (several MB) plus the hub's 256 KB allowance.
    const big = 'z'.repeat(128 * 1024);
    for (let i = 0; i < 160; i++) await client.put(`/lain/config/slowtest/k${i % 4}`).value(big + i);
    await waitFor(async () => (await hubMetric(hub.port, 'lainlet_hub_slow_agent_disconnects_total')) >= 1, { timeoutMs: 10_000, message: 'slow agent disconnected' });
    const a = cluster.agents[0];
    const want = await etcdConfig(client, 'slowtest/');
    await waitFor(async () => JSON.stringify(await agentConfig(a.base, 'slowtest/')) === JSON.stringify(want), { timeoutMs: 10_000, message: 'real agent current' });
    t.pass();
    slow.terminate();
  } finally {
    client.close();
    await cluster.stop();
  }
});

test.serial('while etcd is unreachable the hub keeps serving its last state, marked stale, and agents say so', async (t) => {
  t.timeout(60_000);
  const cluster = await startCluster({ hubs: 1, agents: 1, kvs: fixtureKvs('cluster-small') });
  try {
    const hub = cluster.hubs[0];
    const a = cluster.agents[0];
    const health = async () => JSON.parse((await httpGet(`http://127.0.0.1:${hub.port}/healthz`)).body) as { stale: boolean };
    t.false((await health()).stale);
    await cluster.etcd.kill();
    await waitFor(async () => (await health()).stale, { timeoutMs: 15_000, message: 'hub marks itself stale' });
    await waitFor(async () => (await debugOf(a.base)).stale, { timeoutMs: 5000, message: 'agent reports stale' });
    t.is((await httpGet(`${a.base}/v2/configwatcher?target=domain`)).body, '{"domain":"lain.local"}', 'still serving');
    await cluster.etcd.restart();
    await waitFor(async () => !(await health()).stale, { timeoutMs: 20_000, message: 'hub fresh again' });
    await waitFor(async () => !(await debugOf(a.base)).stale, { timeoutMs: 5000, message: 'agent fresh again' });
    t.pass();
  } finally {
    await cluster.stop();
  }
});

test.serial('an agent that hears nothing from its hub for three progress periods moves to another hub', async (t) => {
  t.timeout(60_000);
  const cluster = await startCluster({ hubs: 2, agents: 1, kvs: fixtureKvs('cluster-small') });
  const client = etcdClient(cluster.etcd);
  try {
    const a = cluster.agents[0];
    const inUse = (await debugOf(a.base)).hub.address;
    const frozen = cluster.hubs.find((h) => h.url === inUse)!;
    const other = cluster.hubs.find((h) => h.url !== inUse)!;
    frozen.proc.proc.kill('SIGSTOP'); // alive but silent: the TCP connection stays open
    try {
      await waitFor(async () => { const d = await debugOf(a.base); return d.hub.live && d.hub.address === other.url; }, { timeoutMs: 10_000, message: 'agent moved away from the silent hub' });
      await client.put('/lain/config/silence').value('1');
      await waitFor(async () => (await agentConfig(a.base, 'silence'))['silence'] === '1', { timeoutMs: 3000, message: 'served by the other hub' });
      t.pass();
    } finally {
      frozen.proc.proc.kill('SIGCONT');
    }
  } finally {
    client.close();
    await cluster.stop();
  }
});
