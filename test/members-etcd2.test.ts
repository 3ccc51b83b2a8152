// The hub registry on etcd's v2 keys API (Etcd2Members, hub/members.ts) against a real etcd
// with --enable-v2 (issue 12): a hub's record is a key with a TTL under the members prefix,
// holding what the other hubs balance on; it is written again every round (which renews the
// TTL), another hub reads it, a hub that stops removes it at once, and a hub killed without a
// word leaves the registry when the TTL runs out — etcd removes the key, no hub has to. And
// lainlet-hub's --balance=false as a program: on that registry, it registers and tells its
// agents the members but asks none to move, where the same hub with balance on does.
import test, { type ExecutionContext } from 'ava';
import { HUB_DEFAULTS } from '../hub/defaults.js';
import { Etcd2Members, Membership, type BalancedFanout, type MemberRecord } from '../hub/members.js';
import { HubState } from '../hub/state.js';
import { silentLogger } from '../shared/log.js';
import { decodeFrame } from '../shared/protocol.js';
import { VERSION } from '../shared/version.js';
import { startEtcd, type EtcdServer } from '../testkit/etcd.js';
import { httpGet } from '../testkit/http.js';
import { metricValue } from '../testkit/metrics.js';
import { freePort } from '../testkit/ports.js';
import { startHub, waitFor } from '../testkit/procs.js';
import { FakeAgent } from './helpers/fake-agent.js';

/** Small, so that a round, a TTL and a silent member each take a second or two, not the defaults' 2 s and 10 s. */
const REFRESH_MS = 150;
const TTL_SEC = 2;

let etcd: EtcdServer;
test.before(async () => { etcd = await startEtcd({ v2: true }); });
test.after.always(async () => { await etcd?.stop(); });

/** What BalancedFanout membership drives, recorded: the members frames, the moves asked. */
class RecordingFanout implements BalancedFanout {
  agentCount = 0;
  movingCount = 0;
  told: string[][] = [];
  moved = 0;
  setMembers(frame: Buffer): void {
    const f = decodeFrame(frame);
    if (f.t === 'members') this.told.push(f.hubs.map((h) => h.url));
  }
  moveAgents(count: number): number { this.moved += count; return count; }
}

/** Etcd2Members counting its calls: a round is one write (when registered) and then one read. */
class CountedMembers extends Etcd2Members {
  puts = 0;
  lists = 0;
  override put(key: string, value: string, ttlSec: number): Promise<void> { this.puts++; return super.put(key, value, ttlSec); }
  override list(prefix: string): ReturnType<Etcd2Members['list']> { this.lists++; return super.list(prefix); }
}

/** A hub of the tier without the rest of the hub: a Membership on Etcd2Members, its state current. */
function member(t: ExecutionContext, prefix: string, advertise: string, opts: { agents?: number; revision?: number; backend?: CountedMembers } = {}) {
  const state = new HubState({ keep: () => true, historyMaxCount: 10, historyMaxBytes: 1 << 20 });
  state.stale = false;
  state.revision = opts.revision ?? 0;
  const fanout = new RecordingFanout();
  fanout.agentCount = opts.agents ?? 0;
  const backend = opts.backend ?? new CountedMembers([etcd.endpoint]);
  const membership = new Membership({
    backend, prefix, advertise, refreshMs: REFRESH_MS, ttlSec: TTL_SEC, balance: false,
  }, state, fanout, silentLogger);
  membership.start();
  t.teardown(() => membership.stop());
  return { membership, fanout, state, backend };
}

interface RegistryNode { key: string; value: string; ttl?: number; expiration?: string; modifiedIndex: number }

/** The keys under `prefix` as etcd's v2 keyspace holds them (not through Etcd2Members); none when the directory does not exist. */
async function registry(prefix: string): Promise<RegistryNode[]> {
  const res = await fetch(`${etcd.url}/v2/keys${prefix.replace(/\/$/, '')}?recursive=true`);
  if (res.status === 404) return [];
  if (!res.ok) throw new Error(`GET ${prefix}: HTTP ${res.status}`);
  const body = await res.json() as { node: { nodes?: Array<RegistryNode & { dir?: boolean }> } };
  return (body.node.nodes ?? []).filter((n) => !n.dir);
}

const urls = (m: Membership) => m.members.map((x) => x.url);

test('a hub registers under the members prefix as a key with a TTL holding its record, rewrites it every round, and another hub sees it; stopping removes the key at once', async (t) => {
  t.timeout(30_000);
  const prefix = '/registers/lainlet/hubs/';
  const a = member(t, prefix, 'ws://127.0.0.1:1001', { agents: 3, revision: 42 });
  await waitFor(async () => (await registry(prefix)).length === 1, { message: 'the first record in the v2 keyspace' });
  const [first] = await registry(prefix);
  t.is(first.key, prefix + a.membership.id, 'one key per hub: the prefix and the hub id');
  // The TTL is what removes a hub killed without a word: the key must carry it.
  t.true(typeof first.ttl === 'number' && first.ttl >= 1 && first.ttl <= TTL_SEC, `the key's TTL is --members-ttl: ${JSON.stringify(first)}`);
  t.truthy(first.expiration);
  const rec = JSON.parse(first.value) as MemberRecord;
  t.like(rec, { id: a.membership.id, url: 'ws://127.0.0.1:1001', agents: 3, revision: 42, stale: false, version: VERSION });
  t.true(typeof rec.startedAt === 'number' && rec.startedAt <= rec.at && rec.at <= Date.now(), JSON.stringify(rec));
  t.is(rec.draining, undefined);

  // Every round writes the record again, with the hub's numbers as they are now, renewing the
  // TTL: over more rounds than the TTL lasts the key never lapses, and no round goes without
  // its write (the rounds counted by the registry reads, each of which follows the round's write).
  a.fanout.agentCount = 5;
  a.state.revision = 43;
  await waitFor(async () => { const [n] = await registry(prefix); return (JSON.parse(n.value) as MemberRecord).agents === 5; }, { message: 'the record rewritten with the new count' });
  const roundsPerTtl = Math.ceil(TTL_SEC * 1000 / REFRESH_MS);
  const from = a.backend.lists;
  const writes = new Set<number>();
  let lapses = 0;
  await waitFor(async () => {
    const [n] = await registry(prefix);
    if (!n) lapses++;
    else if ((JSON.parse(n.value) as MemberRecord).revision === 43) writes.add(n.modifiedIndex);
    return a.backend.lists >= from + roundsPerTtl + 3;
  }, { intervalMs: 20, message: `${roundsPerTtl + 3} rounds, more than one TTL` });
  t.is(lapses, 0, 'the key was there at every look: each write renewed the TTL');
  t.true(writes.size >= 3, `new writes seen in etcd: ${writes.size}`);
  t.true(a.backend.puts >= a.backend.lists, `a write every round: ${a.backend.puts} writes, ${a.backend.lists} reads`);
  const [now] = await registry(prefix);
  t.true((JSON.parse(now.value) as MemberRecord).at > rec.at, 'each write says when it was made');
  t.true(typeof now.ttl === 'number' && now.ttl >= 1, `the rewrite carries the TTL: ${JSON.stringify(now)}`);

  // A second hub reads it (and is read): each sees both, and tells its agents both.
  const b = member(t, prefix, 'ws://127.0.0.1:1002', { agents: 1 });
  await waitFor(() => urls(a.membership).length === 2 && urls(b.membership).length === 2, { message: 'each hub sees both' });
  t.like(b.membership.members.find((m) => m.url === 'ws://127.0.0.1:1001'), { id: a.membership.id, agents: 5, revision: 43, self: false, stale: false });
  t.like(b.membership.members.find((m) => m.url === 'ws://127.0.0.1:1002'), { agents: 1, self: true });
  t.true(b.membership.storeRevision > 0, 'the store revision is read from X-Etcd-Index');
  t.deepEqual(b.fanout.told.at(-1), ['ws://127.0.0.1:1001', 'ws://127.0.0.1:1002'], 'its agents are told both members');

  // Stopping deregisters: the key is gone when stop() returns, not a TTL later.
  await a.membership.stop();
  t.deepEqual((await registry(prefix)).map((n) => n.key), [prefix + b.membership.id], 'the stopped hub removed its key');
  await waitFor(() => urls(b.membership).length === 1, { message: 'the other hub drops it' });
  t.deepEqual(urls(b.membership), ['ws://127.0.0.1:1002']);
  t.deepEqual(b.fanout.told.at(-1), ['ws://127.0.0.1:1002'], 'and tells its agents');
});

/** A hub killed without a word: it stops writing, and nothing removes its key. */
class KilledMembers extends CountedMembers {
  override remove(): Promise<void> { return Promise.resolve(); }
}

test('a hub that stops writing without deregistering (killed) leaves the v2 registry when its TTL runs out, and the other hubs drop it', async (t) => {
  t.timeout(30_000);
  const prefix = '/killed/lainlet/hubs/';
  const observer = member(t, prefix, 'ws://127.0.0.1:2001');
  const killed = member(t, prefix, 'ws://127.0.0.1:2002', { agents: 7, backend: new KilledMembers([etcd.endpoint]) });
  await waitFor(() => urls(observer.membership).length === 2, { message: 'the observer sees the hub about to be killed' });
  await killed.membership.stop();
  t.true((await registry(prefix)).some((n) => n.key === prefix + killed.membership.id), 'its key outlives it (it said no goodbye)');
  // etcd expires the key by its TTL: a record written without one would stay for ever.
  await waitFor(async () => !(await registry(prefix)).some((n) => n.key === prefix + killed.membership.id), {
    timeoutMs: TTL_SEC * 1000 + 5000, message: 'the killed hub\'s key expired in etcd',
  });
  await waitFor(() => urls(observer.membership).length === 1, { message: 'the observer drops it' });
  t.deepEqual(urls(observer.membership), ['ws://127.0.0.1:2001']);
  t.deepEqual(observer.fanout.told.at(-1), ['ws://127.0.0.1:2001'], 'and tells its agents');
});

test('a registry nobody has written to yet (no directory in the v2 keyspace) lists no members, not an error', async (t) => {
  const listed = await new Etcd2Members([etcd.url]).list('/nobody/lainlet/hubs/');
  t.deepEqual(listed.kvs, []);
  t.true(listed.revision > 0, 'the store revision still comes with the answer');
});

/** The peer's advertised URL: nothing listens there (the agents are only told to move, they do not). */
const PEER = 'ws://127.0.0.1:3999';

/**
 * lainlet-hub on --store etcd2 holding twelve agents, beside a peer with none (a Membership in
 * this process on the same registry). Returns once the hub has registered, told its agents
 * both members, and run `rounds` more rounds after that (each one a new write of its record,
 * as the peer reads it).
 */
async function hubWithAllAgents(t: ExecutionContext, prefix: string, flags: string[], rounds: number) {
  const port = await freePort();
  const url = `ws://127.0.0.1:${port}`;
  const hub = startHub([
    '--store', 'etcd2', '--etcd', etcd.endpoint, '--prefix', prefix, '--listen', `127.0.0.1:${port}`, '--workers', '0', '--history-prefill', '0',
    '--members-refresh', String(REFRESH_MS), '--members-ttl', String(TTL_SEC), ...flags,
  ]);
  t.teardown(() => hub.kill());
  await hub.waitForLine(/"msg":"hub ready"/, 20_000);
  const peer = member(t, prefix + HUB_DEFAULTS.membersPrefixUnderPrefix, PEER);
  const fakes = Array.from({ length: 12 }, (_, i) => new FakeAgent(port, { t: 'hello', v: 1, vmax: 2, ver: 'x', node: `n${i}`, rev: 0 }));
  t.teardown(() => { for (const f of fakes) f.ws.close(); });
  const both = JSON.stringify([PEER, url].sort());
  await waitFor(() => fakes.every((f) => f.of('members').some((m) => JSON.stringify(m.hubs.map((h) => h.url).sort()) === both)), {
    message: 'every agent told both members (the hub registered itself and read the peer)',
  });
  const hubSeen = () => peer.membership.members.find((m) => m.url === url);
  await waitFor(() => hubSeen()?.agents === 12, { message: 'the peer reads the hub\'s record with its twelve agents' });
  const writes = new Set<number>();
  await waitFor(() => { writes.add(hubSeen()!.at); return writes.size > rounds; }, { message: `${rounds} more rounds of the hub` });
  const balanceMoves = async () => metricValue((await httpGet(`http://127.0.0.1:${port}/metrics`)).body, 'lainlet_hub_balance_moves_total');
  return { fakes, balanceMoves };
}

test('lainlet-hub --balance=false registers and tells its agents the members, but asks none to move', async (t) => {
  t.timeout(60_000);
  const { fakes, balanceMoves } = await hubWithAllAgents(t, '/balance-off/', ['--balance=false'], 6);
  // Twelve agents against a fair share of six, for five rounds and more: with balance on, six
  // would have been asked to move in the first (the control below).
  t.is(await balanceMoves(), 0, 'lainlet_hub_balance_moves_total');
  t.deepEqual(fakes.map((f) => f.of('move').length), Array(12).fill(0), 'no agent was asked to move');
});

test('lainlet-hub with balance on (the default), the same tier: agents are asked to move to the peer (the control for --balance=false)', async (t) => {
  t.timeout(60_000);
  const { fakes, balanceMoves } = await hubWithAllAgents(t, '/balance-on/', [], 0);
  await waitFor(() => fakes.filter((f) => f.of('move').length > 0).length >= 6, { message: 'half the agents asked to move' });
  t.true(await balanceMoves() >= 6, 'lainlet_hub_balance_moves_total');
  t.true(fakes.every((f) => f.of('move').every((m) => m.to === PEER)), 'each to the peer');
});
