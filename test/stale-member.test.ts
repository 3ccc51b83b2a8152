// An etcd member behind its cluster answers a read from its old state (a paused etcd 3.4
// member does so even for linearizable reads for a moment after it resumes: etcd-io/etcd#20418).
// Such an answer looks exactly like a store restored from an older backup — a revision below
// ours — and, believed at once, it reset the hub and sent every agent a state minutes old (a
// SIGSTOP test on a three-member cluster saw an agent's stream go from 105 back to 15). The hub
// believes it only when fresh reads agree (HUB_DEFAULTS.resetConfirmReads); these tests give it
// stale answers where each kind of read is made and check that nothing goes back.
import test, { type ExecutionContext } from 'ava';
import { HUB_DEFAULTS } from '../hub/defaults.js';
import type { Hub } from '../hub/hub.js';
import { MemoryStore } from '../hub/store/memory.js';
import { waitFor } from '../testkit/procs.js';
import { FakeAgent, hubOn } from './helpers/fake-agent.js';
import { capturingLogger, type LogLine } from './helpers/persist.js';
import { StaleMemberStore } from './helpers/stale-store.js';

const seed = { '/lain/config/domain': 'lain.local', '/lain/config/vip': '10.0.0.1' };

interface Setup { inner: MemoryStore; store: StaleMemberStore; hub: Hub; agent: FakeAgent; lines: LogLine[] }

/** A hub with a live agent; the member froze at the seed, and five writes went on without it. */
async function behindMember(): Promise<Setup> {
  const inner = new MemoryStore(seed);
  const store = new StaleMemberStore(inner, '/lain/');
  const { log, lines } = capturingLogger();
  const hub = await hubOn(store, {}, log);
  const agent = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: 0 });
  await agent.until(() => agent.of('prog').length > 0);
  // The list that checks a new watch (StoreSync.checkWatch) is done: no read the test does not make is left.
  await waitFor(() => hub.sync.presentLists >= 1, { message: 'the new watch checked' });
  await store.freeze();
  let last = 0;
  for (let i = 1; i <= 5; i++) last = inner.put(`/lain/config/k${i}`, String(i));
  await agent.until(() => agent.of('delta').some((d) => d.rev === last));
  return { inner, store, hub, agent, lines };
}

/** Nothing went back: one snapshot (the first), deltas in order, the agent's and the hub's state as the store's. */
async function nothingWentBack(t: ExecutionContext, s: Setup): Promise<void> {
  const marker = s.inner.put('/lain/config/marker', 'after');
  await s.agent.until(() => s.agent.of('delta').some((d) => d.rev === marker), 5000);
  t.is(s.agent.of('snap').length, 1, 'no snapshot after the first (a reset snapshot would be the stale state)');
  const revs = s.agent.of('delta').map((d) => d.rev);
  t.deepEqual(revs, [...revs].sort((a, b) => a - b));
  t.is(s.hub.state.revision, s.inner.lastRevision);
  t.deepEqual(Object.fromEntries(s.hub.state.entries), Object.fromEntries((await s.inner.list('/lain/')).kvs));
  t.false(s.lines.some((l) => /STORE HISTORY RESET/.test(l.msg)), 'no reset was logged');
}

/** A test on a fresh behindMember() setup, stopped however the test ends. */
function scenario(title: string, fn: (t: ExecutionContext, s: Setup) => Promise<void>): void {
  test(title, async (t) => {
    const s = await behindMember();
    try { await fn(t, s); } finally { s.agent.ws.close(); await s.hub.stop(); }
  });
}

scenario('a revision read answered by a member behind its cluster resets nothing: a fresh read shows our history, and callers get that', async (t, s) => {
  s.store.stale(1);
  const probe = await s.hub.sync.probe();
  t.is(probe.revision, s.inner.lastRevision, 'the caller gets the fresh revision, not the stale one');
  t.is(s.hub.sync.staleAnswers, 1);
  t.truthy(s.lines.find((l) => /that answer was stale/.test(l.msg)), 'the stale answer is logged');
  await nothingWentBack(t, s);
});

scenario('a list of the present answered by a member behind: not applied; the present is listed again and the watch goes on', async (t, s) => {
  const lists = s.hub.sync.presentLists;
  s.store.stale(1);
  s.hub.sync.listPresent('test: a list of the present');
  await waitFor(() => s.hub.sync.presentLists > lists, { timeoutMs: 10_000, message: 'the list of the present done again, on fresh answers' });
  t.is(s.hub.sync.staleAnswers, 1);
  t.is(s.hub.state.corrections, 0, 'the stale list corrected nothing');
  await nothingWentBack(t, s);
});

scenario('after a lost watch, a list answered by a member behind is not believed: the hub lists again and resumes from its own revision', async (t, s) => {
  const relists = s.hub.sync.relists;
  s.store.stale(1);
  await s.store.loseWatch();
  await waitFor(() => s.hub.sync.relists > relists && !s.hub.state.stale && s.hub.sync.staleAnswers > 0, { timeoutMs: 10_000, message: 'listed again on fresh answers, watching, and the stale answer found out' });
  t.is(s.hub.sync.staleAnswers, 1);
  await nothingWentBack(t, s);
});

scenario(`answers below us are believed only when ${HUB_DEFAULTS.resetConfirmReads} fresh reads agree: one fewer resets nothing`, async (t, s) => {
  // The answer and all but the last of the confirming reads are stale.
  s.store.stale(HUB_DEFAULTS.resetConfirmReads);
  const probe = await s.hub.sync.probe();
  t.is(s.store.staleGiven, HUB_DEFAULTS.resetConfirmReads);
  t.is(probe.revision, s.inner.lastRevision);
  t.is(s.hub.sync.staleAnswers, 1);
  await nothingWentBack(t, s);
});

scenario('a store that stays below us (restored from an older backup) is believed once the fresh reads agree: the hub resets, and agents get the restored state', async (t, s) => {
  const restored = new MemoryStore({ ...seed, '/lain/config/restored': 'yes' });
  await s.store.restore(restored);
  const probes = s.hub.sync.probes;
  const probe = await s.hub.sync.probe();
  t.is(probe.revision, restored.lastRevision);
  t.is(s.hub.sync.probes - probes, 1 + HUB_DEFAULTS.resetConfirmReads, 'the answer, and the reads that confirmed it');
  await waitFor(() => s.lines.some((l) => /STORE HISTORY RESET/.test(l.msg)), { timeoutMs: 10_000, message: 'the reset' });
  await s.agent.until(() => s.agent.of('snap').some((f) => f.reset === true && f.last), 5000);
  const resetSnap = s.agent.of('snap').filter((f) => f.reset === true);
  t.deepEqual(Object.fromEntries(resetSnap.flatMap((f) => f.puts)), Object.fromEntries((await restored.list('/lain/')).kvs), 'the restored state');
  t.is(s.hub.sync.staleAnswers, 0);
  // The restored store carries on; the hub's watch follows it.
  const next = restored.put('/lain/config/after', 'restore');
  await s.agent.until(() => s.agent.of('delta').some((d) => d.rev === next), 5000);
});

scenario('a reset confirmed while a relist is in flight waits for it: the hub never holds two watches', async (t, s) => {
  const restored = new MemoryStore({ ...seed, '/lain/config/restored': 'yes' });
  const relists = s.hub.sync.relists;
  s.store.holdLists();
  await s.store.loseWatch(); // a relist starts; its list hangs
  await s.store.restore(restored);
  await s.hub.sync.probe(); // the restore is confirmed meanwhile: it asks for a relist too
  s.store.releaseLists();
  await waitFor(() => s.hub.sync.relists >= relists + 2 && s.store.activeWatches >= 1 && !s.hub.state.stale, { timeoutMs: 10_000, message: 'the relists done, watching' });
  const next = restored.put('/lain/config/after', 'restore');
  await s.agent.until(() => s.agent.of('delta').some((d) => d.rev === next), 5000);
  t.is(s.store.activeWatches, 1, 'one watch');
});
