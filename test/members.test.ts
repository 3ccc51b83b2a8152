// The hub tier's membership and balance (hub/members.ts) with in-process hubs on one memory
// store and real agents: agents seeded with one hub learn the others and spread evenly; a hub
// that joins fills to its share; moves cost a resume, never a snapshot; a rolling upgrade works
// in both orders (agents and hubs from before protocol 2).
import test from 'ava';
import { startAgent, type Agent } from '../agent/agent.js';
import type { Hub } from '../hub/hub.js';
import { MemoryMembers } from '../hub/members.js';
import { MemoryStore } from '../hub/store/memory.js';
import { silentLogger } from '../shared/log.js';
import { FakeAgent, hubOn } from './helpers/fake-agent.js';
import { freePort } from '../testkit/ports.js';
import { waitFor } from '../testkit/procs.js';

const seed = { '/lain/config/domain': 'lain.local' };

async function memberHub(store: MemoryStore, over: Parameters<typeof hubOn>[1] = {}): Promise<Hub & { url: string }> {
  const port = await freePort();
  const url = `ws://127.0.0.1:${port}`;
  const hub = await hubOn(store, { port, members: { backend: new MemoryMembers(store), advertise: url, refreshMs: 150 }, ...over });
  return Object.assign(hub, { url });
}

async function agentsOn(urls: string[], n: number, extra: Partial<Parameters<typeof startAgent>[0]> = {}): Promise<Agent[]> {
  const agents = await Promise.all(Array.from({ length: n }, (_, i) => startAgent({
    host: '127.0.0.1', port: 0, nodeIp: '127.0.0.1', hostname: `node${i}`, noauth: true, hubs: urls, backoffBaseMs: 20, backoffCapMs: 200, ...extra,
  }, silentLogger)));
  await waitFor(() => agents.every((a) => a.client.status.live), { message: 'every agent live' });
  return agents;
}

const counts = (hubs: Hub[]) => hubs.map((h) => h.server.agentCount);
const even = (hubs: Hub[], total: number, slack: number) => {
  const c = counts(hubs);
  return c.reduce((a, b) => a + b, 0) === total && c.every((n) => Math.abs(n - total / hubs.length) <= slack);
};

test('agents seeded with one hub learn the tier and spread over it; a hub that joins fills to its share; no move costs a snapshot', async (t) => {
  t.timeout(90_000);
  const store = new MemoryStore(seed);
  const hubs = [await memberHub(store), await memberHub(store), await memberHub(store)];
  const agents = await agentsOn([hubs[0].url], 30);
  try {
    await waitFor(() => even(hubs, 30, 2), { timeoutMs: 30_000, message: `30 agents even over 3 hubs: ${counts(hubs).join('/')}` });
    t.true(agents.every((a) => a.client.hubs.length === 3), 'every agent knows the three members');
    const snapshots = agents.reduce((n, a) => n + a.client.status.snapshots, 0);
    t.is(snapshots, 30, 'one snapshot each, at the first connection: the moves resumed');
    const store2 = store.put('/lain/config/after-balance', '1');
    await waitFor(() => agents.every((a) => a.cache.revision >= store2), { message: 'deltas reach every agent after the moves' });
    hubs.push(await memberHub(store));
    await waitFor(() => even(hubs, 30, 2), { timeoutMs: 30_000, message: `30 agents even over 4 hubs: ${counts(hubs).join('/')}` }).catch((e) => {
      console.log(hubs.map((h) => JSON.stringify({ c: h.sync.current, g: h.sync.checkingGap, st: h.state.stale, rev: h.state.revision, m: h.membership!.members.map((m) => m.url.slice(-5) + ':' + m.agents + (m.draining ? 'D' : '')) })));
      throw e;
    });
    t.is(agents.reduce((n, a) => n + a.client.status.snapshots, 0), 30, 'still no snapshot for a move');
    t.true(hubs[0].membership!.balanceMoves > 0);
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    for (const h of hubs) await h.stop();
  }
});

test('a hub that stops marks itself draining and sends its agents to the others in turn, least loaded first', async (t) => {
  t.timeout(60_000);
  const store = new MemoryStore(seed);
  const port = await freePort();
  // The draining hub does not balance (it would move its agents before the test stops it).
  const a = await hubOn(store, { port, members: { backend: new MemoryMembers(store), advertise: `ws://127.0.0.1:${port}`, refreshMs: 150, balance: false } });
  const others = [await memberHub(store), await memberHub(store)];
  const fakes = Array.from({ length: 12 }, (_, i) => new FakeAgent(port, { t: 'hello', v: 1, vmax: 2, ver: 'x', node: `n${i}`, rev: 0 }));
  try {
    await waitFor(() => a.membership!.members.length === 3 && fakes.every((f) => f.of('prog').length > 0), { message: 'the tier known, every agent live' });
    // The grace outlasts the checks: the hub stays draining until the agents leave (they are
    // closed below), so the others' rounds see its draining record however late they run.
    const stopped = a.stop({ spreadMs: 200, graceMs: 30_000 });
    await Promise.all(fakes.map((f) => f.until(() => f.of('move').length > 0)));
    await waitFor(() => others.every((h) => h.membership!.members.some((m) => m.draining === true)), { message: 'the others see it draining' });
    const to = fakes.map((f) => f.of('move')[0].to);
    t.deepEqual(others.map((h) => to.filter((u) => u === h.url).length), [6, 6], 'six to each, in turn');
    t.pass();
    for (const f of fakes) f.ws.close();
    await stopped;
    await waitFor(() => others.every((h) => h.membership!.members.length === 2), { message: 'it left the registry' });
  } finally {
    for (const f of fakes) f.ws.close();
    for (const h of others) await h.stop();
  }
});

/** The registry of one store, counting its reads: each hub's round reads it once, after writing its record. */
class CountedMembers extends MemoryMembers {
  lists = 0;
  override list(prefix: string): ReturnType<MemoryMembers['list']> { this.lists++; return super.list(prefix); }
}

test('balance off: a hub registers and tells its agents the members, but never asks one to move; the same tier with balance on does', async (t) => {
  t.timeout(60_000);
  // Twelve agents on one hub, none on the other: a fair share of six, and six to move in the
  // first round with balance on. Whether anyone moved is read after five rounds of the full hub
  // that knew both members (its registry reads counted), not after a sleep.
  const run = async (balance: boolean) => {
    const store = new MemoryStore(seed);
    const port = await freePort();
    const url = `ws://127.0.0.1:${port}`;
    const backend = new CountedMembers(store);
    const full = await hubOn(store, { port, members: { backend, advertise: url, refreshMs: 150, balance } });
    const empty = await memberHub(store);
    const fakes = Array.from({ length: 12 }, (_, i) => new FakeAgent(port, { t: 'hello', v: 1, vmax: 2, ver: 'x', node: `n${i}`, rev: 0 }));
    try {
      const both = [url, empty.url].sort().join(' ');
      await waitFor(() => fakes.every((f) => f.of('members').some((m) => m.hubs.map((h) => h.url).sort().join(' ') === both)), { message: 'every agent told both members' });
      await waitFor(() => empty.membership!.members.find((m) => m.url === url)?.agents === 12, { message: 'the other hub reads the full one\'s record with its twelve agents' });
      const from = backend.lists;
      await waitFor(() => backend.lists >= from + 6, { message: 'five more rounds of the full hub' });
      if (balance) await waitFor(() => fakes.filter((f) => f.of('move').length > 0).length >= 6, { message: 'the moves reach the agents' });
      return { asked: full.membership!.balanceMoves, moved: fakes.filter((f) => f.of('move').length > 0).length, to: fakes.flatMap((f) => f.of('move').map((m) => m.to)), empty: empty.url };
    } finally {
      for (const f of fakes) f.ws.close();
      await full.stop();
      await empty.stop();
    }
  };
  const off = await run(false);
  t.is(off.asked, 0, 'balance off: no agent asked to move');
  t.is(off.moved, 0, 'balance off: no move frame');
  const on = await run(true);
  // (At least six: these agents never leave, so the next rounds, not counting the ones asked, ask more.)
  t.true(on.asked >= 6, `balance on: six asked in the first round (${on.asked})`);
  t.true(on.moved >= 6);
  t.true(on.to.every((u) => u === on.empty), 'to the empty hub');
});

test('an agent from before protocol 2 is served as before: no members frame, no targeted move', async (t) => {
  const store = new MemoryStore(seed);
  const hub = await memberHub(store);
  const old = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'old', rev: 0 });
  const now = new FakeAgent(hub.port, { t: 'hello', v: 1, vmax: 2, ver: 'x', node: 'new', rev: 0 });
  try {
    await now.until(() => now.of('members').length > 0);
    await old.until(() => old.of('prog').length > 0);
    t.deepEqual(now.of('members')[0].hubs.map((h) => h.url), [hub.url]);
    t.is(old.of('members').length, 0);
    t.is(hub.server.moveAgents(2, ['ws://elsewhere:1'], 'test', 0) as number, 1, 'only the protocol-2 agent can be asked to move');
    await now.until(() => now.of('move').length > 0);
    t.is(now.of('move')[0].to, 'ws://elsewhere:1');
  } finally {
    old.ws.close();
    now.ws.close();
    await hub.stop();
  }
});

test('an agent of protocol 2 works with a hub from before it (the hub ignores vmax)', async (t) => {
  const store = new MemoryStore(seed);
  // A hub that speaks protocol 1 only: what a hub from before version 2 does with a new hello.
  const hub = await hubOn(store, { protocolMax: 1 });
  const [agent] = await agentsOn([`ws://127.0.0.1:${hub.port}`], 1);
  try {
    t.deepEqual(agent.client.status.members, []);
    const rev = store.put('/lain/config/x', '1');
    await waitFor(() => agent.cache.revision >= rev, { message: 'the delta' });
    t.deepEqual(agent.client.hubs, [`ws://127.0.0.1:${hub.port}`]);
  } finally {
    await agent.stop();
    await hub.stop();
  }
});
