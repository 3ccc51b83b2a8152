// HubState: the hub's revisioned state, its deltas and what an agent at a revision is sent.
import test from 'ava';
import { CatchUp as CatchUpClass } from '../hub/catchup.js';
import { HubState } from '../hub/state.js';
import { decodeFrame, keyRangeFilter, type DeltaFrame } from '../shared/protocol.js';

const PG = '/lain/deployd/pod_groups/';

function loadedState(kvs: Record<string, string>, rev = 10) {
  const state = new HubState({ keep: keyRangeFilter('/lain/'), historyMaxCount: 100, historyMaxBytes: 1 << 20 });
  const deltas: DeltaFrame[] = [];
  state.setListener({ onDelta: (frame) => deltas.push(decodeFrame(frame) as DeltaFrame), onProgress: () => {}, onReset: () => {} });
  state.replaceAll(rev, Object.entries(kvs));
  return { state, deltas };
}

test('a directory delete (etcd v2) removes the directory\'s keys only, never keys that merely share a string prefix', (t) => {
  const { state, deltas } = loadedState({
    [`${PG}hello/hello.web.web`]: 'a', [`${PG}hello/hello.worker.cron`]: 'b',
    [`${PG}hello-world/hello-world.web.web`]: 'c', [`${PG}hello2/hello2.web.web`]: 'd',
  });
  state.apply({ revision: 11, puts: [], dels: [], delTrees: [`${PG}hello`] });
  t.deepEqual(deltas.map((d) => d.dels.sort()), [[`${PG}hello/hello.web.web`, `${PG}hello/hello.worker.cron`]]);
  t.deepEqual([...state.entries.keys()].sort(), [`${PG}hello-world/hello-world.web.web`, `${PG}hello2/hello2.web.web`]);
});

test('one store revision is one delta, applied atomically; a key deleted and put in it ends up put', (t) => {
  const { state, deltas } = loadedState({ '/lain/config/a': '1', '/lain/config/b': '2' });
  state.apply({ revision: 12, puts: [['/lain/config/a', '9'], ['/lain/config/c', '3']], dels: ['/lain/config/b'] });
  state.apply({ revision: 13, puts: [['/lain/config/b', 'x']], dels: ['/lain/config/b'] });
  t.is(deltas.length, 2);
  t.deepEqual(deltas[0], { t: 'delta', prev: 10, rev: 12, puts: [['/lain/config/a', '9'], ['/lain/config/c', '3']], dels: ['/lain/config/b'] });
  t.deepEqual(deltas[1].dels, []);
  t.is(state.entries.get('/lain/config/b'), 'x');
});

test('a re-list publishes only the difference, as one delta', (t) => {
  const { state, deltas } = loadedState({ '/lain/config/a': '1', '/lain/config/b': '2', '/lain/config/c': '3' });
  state.replaceAll(20, [['/lain/config/a', '1'], ['/lain/config/b', 'changed'], ['/lain/config/d', '4'], ['/lain/other', 'not kept']]);
  t.deepEqual(deltas, [{ t: 'delta', prev: 10, rev: 20, puts: [['/lain/config/b', 'changed'], ['/lain/config/d', '4']], dels: ['/lain/config/c'] }]);
});

test('deltas chain on the last change, so agents that learnt a later revision from progress still apply them', (t) => {
  const { state, deltas } = loadedState({ '/lain/config/a': '1' });
  state.advance(15); // revisions that touched nothing the API reads
  state.apply({ revision: 18, puts: [['/lain/config/a', '2']], dels: [] });
  t.is(deltas[0].prev, 10);
  t.deepEqual(state.framesAfter(15)!.length, 1, 'an agent at 15 gets the 10→18 delta');
  t.deepEqual(state.framesAfter(18), []);
  t.deepEqual(state.framesAfter(9), null, 'before the history: snapshot');
});

test('snapshot frames are encoded once per revision and shared', (t) => {
  const { state } = loadedState({ '/lain/config/a': '1' });
  const first = state.snapshotFrames();
  t.is(state.snapshotFrames(), first);
  state.apply({ revision: 11, puts: [['/lain/config/a', '2']], dels: [] });
  t.not(state.snapshotFrames(), first);
});

test('catch-up: deltas when the history reaches back, a snapshot otherwise, and a snapshot after all if the history moves past a slow agent', async (t) => {
  const { CatchUp } = await import('../hub/catchup.js');
  const state = new HubState({ keep: keyRangeFilter('/lain/'), historyMaxCount: 2, historyMaxBytes: 1 << 20 });
  state.setListener({ onDelta: () => {}, onProgress: () => {}, onReset: () => {} });
  state.replaceAll(10, [['/lain/config/a', '0']]);
  state.apply({ revision: 11, puts: [['/lain/config/a', '1']], dels: [] });
  let snapshots = 0;
  const resuming = new CatchUp(state, 10, () => snapshots++);
  t.false(resuming.needsSnapshot);
  t.is(resuming.next(Infinity)!.length, 1);
  t.is(resuming.next(Infinity), null, 'current: go live');
  t.is(snapshots, 0);

  const fresh = new CatchUp(state, 0, () => snapshots++);
  t.true(fresh.needsSnapshot);
  t.is(snapshots, 1);
  t.is(decodeFrame(fresh.next(Infinity)![0]).t, 'snap');
  t.is(fresh.next(Infinity), null);

  const slow = new CatchUp(state, 10, () => snapshots++);
  for (let r = 12; r <= 15; r++) state.apply({ revision: r, puts: [['/lain/config/a', String(r)]], dels: [] });
  const frames = slow.next(Infinity)!;
  t.is(decodeFrame(frames[0]).t, 'snap', 'the history no longer reaches revision 10');
  t.is(snapshots, 2);
  t.is(slow.next(Infinity), null);
});

test('a re-list that jumped over revisions it never saw: agents inside the jump get a snapshot, agents before it the difference', (t) => {
  const state = new HubState({ keep: keyRangeFilter('/lain/'), historyMaxCount: 100, historyMaxBytes: 1 << 20 });
  state.replaceAll(10, [['/lain/config/a', '1']]);
  state.apply({ revision: 12, puts: [['/lain/config/b', '2']], dels: [] });
  // Revisions 13..19 happened while the watch was lost (e.g. /lain/config/c created at 14 and
  // deleted at 18): an agent at 15 that saw them on another hub holds c.
  state.replaceAll(20, [['/lain/config/a', '1'], ['/lain/config/b', '3']]);
  t.is(state.framesAfter(15), null, 'inside the jump: state unknown here, snapshot');
  t.is(state.framesAfter(19), null);
  t.is(state.framesAfter(12)!.length, 1, 'at the hub\'s revision before the list: the difference applies');
  t.is(state.framesAfter(10)!.length, 2);
  t.deepEqual(state.framesAfter(20), []);
  state.apply({ revision: 21, puts: [['/lain/config/d', '4']], dels: [] });
  t.is(state.framesAfter(20)!.length, 1, 'after the jump: deltas again');
  t.is(state.framesAfter(16), null);
});

test('the gap of a re-list is known before its difference is published (listeners start catch-ups from it)', (t) => {
  const state = new HubState({ keep: keyRangeFilter('/lain/'), historyMaxCount: 100, historyMaxBytes: 1 << 20 });
  state.replaceAll(10, [['/lain/config/a', '1']]);
  let seenByListener: unknown = 'not called';
  state.setListener({ onDelta: () => { seenByListener = state.framesAfter(15); }, onProgress: () => {}, onReset: () => {} });
  state.replaceAll(20, [['/lain/config/a', '2']]);
  t.is(seenByListener, null, 'an agent at 15 asking while the difference is published gets a snapshot');
});

test('a list older than the state (the watch moved on while it was in flight) changes nothing: no delta, no reset', (t) => {
  const state = new HubState({ keep: keyRangeFilter('/lain/'), historyMaxCount: 100, historyMaxBytes: 1 << 20 });
  const seen: string[] = [];
  state.setListener({ onDelta: () => seen.push('delta'), onProgress: () => {}, onReset: () => seen.push('reset') });
  state.replaceAll(10, [['/lain/config/a', '1']]);
  state.apply({ revision: 20, puts: [['/lain/config/a', '2']], dels: [] });
  seen.length = 0;
  state.replaceAll(15, [['/lain/config/a', '1.5']]);
  t.deepEqual(seen, []);
  t.is(state.revision, 20);
  t.is(state.entries.get('/lain/config/a'), '2');
  t.is(state.framesAfter(10)!.length, 1, 'history kept');
});

test('catch-up hands out history in batches under the byte budget, at least one frame each', (t) => {
  const CatchUp = CatchUpClass;
  const state = new HubState({ keep: keyRangeFilter('/lain/'), historyMaxCount: 100, historyMaxBytes: 1 << 20 });
  state.replaceAll(10, [['/lain/config/a', '0']]);
  for (let r = 11; r <= 20; r++) state.apply({ revision: r, puts: [['/lain/config/a', 'x'.repeat(1000) + r]], dels: [] });
  const frameBytes = state.framesAfter(19)![0].frame.length;
  const catchUp = new CatchUp(state, 10, () => t.fail('no snapshot'));
  const batches: number[] = [];
  for (let b = catchUp.next(frameBytes * 3); b !== null; b = catchUp.next(frameBytes * 3)) batches.push(b.length);
  t.deepEqual(batches, [3, 3, 3, 1]);
  const tiny = new CatchUp(state, 10, () => t.fail('no snapshot'));
  t.is(tiny.next(1)!.length, 1, 'a budget smaller than one frame still sends one');
});
