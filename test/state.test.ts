// HubState: the hub's revisioned state, its deltas and what an agent at a revision is sent.
import test from 'ava';
import { HubState } from '../hub/state.js';
import { decodeFrame, keyRangeFilter, type DeltaFrame, type SnapshotFrame } from '../shared/protocol.js';

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

/** A state with a listener that writes down everything it is told, in order. */
function recorded(opts: { historyMaxCount?: number; snapshotChunkBytes?: number } = {}) {
  const state = new HubState({ keep: keyRangeFilter('/lain/'), historyMaxCount: opts.historyMaxCount ?? 100, historyMaxBytes: 1 << 20, snapshotChunkBytes: opts.snapshotChunkBytes });
  const events: string[] = [];
  const deltas: DeltaFrame[] = [];
  state.setListener({
    onDelta: (frame, prev, rev) => { const d = decodeFrame(frame) as DeltaFrame; deltas.push(d); events.push(`delta ${prev}→${rev} (frame ${d.prev}→${d.rev})`); },
    onProgress: (rev, stale) => events.push(`progress ${rev}${stale ? ' stale' : ''}`),
    onReset: (rev) => events.push(`reset ${rev}`),
    onCorrected: (rev) => events.push(`corrected ${rev}`),
  });
  return { state, events, deltas };
}

const snapshotOf = (frames: readonly Buffer[]) => frames.map((f) => decodeFrame(f) as SnapshotFrame);

test('the first list loads the kept keys and tells the listener the revision, without a delta', (t) => {
  const { state, events } = recorded();
  t.false(state.loaded);
  state.replaceAll(10, [['/lain/config/a', '1'], ['/lain/deployd/specs/x', 'not kept']]);
  t.true(state.loaded);
  t.deepEqual(events, ['progress 10 stale']);
  t.deepEqual([...state.entries], [['/lain/config/a', '1']]);
  t.is(state.revision, 10);
  t.is(state.lastChangeRev, 10);
  t.is(state.deltasPublished, 0);
  t.deepEqual(state.framesAfter(10), []);
  t.is(state.framesAfter(9), null, 'nothing before the first list is known');
});

test('a revision the state already has is ignored, even when it is the current one', (t) => {
  const { state, events } = recorded();
  state.replaceAll(10, [['/lain/config/a', '1']]);
  events.length = 0;
  state.apply({ revision: 10, puts: [['/lain/config/a', 'again']], dels: [] });
  state.apply({ revision: 9, puts: [['/lain/config/a', 'older']], dels: [] });
  t.deepEqual(events, []);
  t.is(state.entries.get('/lain/config/a'), '1');
});

test('deltas carry only kept keys that change; a revision that changes none moves the revision as progress', (t) => {
  const { state, events, deltas } = recorded();
  state.replaceAll(10, [['/lain/config/a', '1']]);
  events.length = 0;
  state.apply({ revision: 11, puts: [['/lain/config/a', '1'], ['/lain/deployd/specs/x', 'y']], dels: ['/lain/config/missing', '/lain/deployd/specs/x'] });
  t.deepEqual(events, ['progress 11 stale'], 'same value, unkept key, deleting what is not there: no delta');
  t.is(state.revision, 11);
  t.is(state.lastChangeRev, 10);
  state.apply({ revision: 12, puts: [['/lain/config/a', '2'], ['/lain/deployd/specs/x', 'y']], dels: ['/lain/config/missing'] });
  t.deepEqual(events.slice(1), ['delta 10→12 (frame 10→12)']);
  t.deepEqual(deltas, [{ t: 'delta', prev: 10, rev: 12, puts: [['/lain/config/a', '2']], dels: [] }]);
  t.is(state.deltasPublished, 1);
  t.is(state.revision, 12);
  t.is(state.lastChangeRev, 12);
  t.deepEqual(state.framesAfter(10)!.map((e) => decodeFrame(e.frame)), deltas, 'the history holds the bytes the listener was given');
});

test('a key deleted and put back with its old value in one revision is published as a put, and kept', (t) => {
  const { state, deltas } = recorded();
  state.replaceAll(10, [['/lain/config/a', '1']]);
  state.apply({ revision: 11, puts: [['/lain/config/a', '1']], dels: ['/lain/config/a'] });
  t.deepEqual(deltas, [{ t: 'delta', prev: 10, rev: 11, puts: [['/lain/config/a', '1']], dels: [] }]);
  t.is(state.entries.get('/lain/config/a'), '1');
});

test('a directory delete covers the directory key itself, whether or not it ends in a slash, and lists a key once', (t) => {
  const { state, deltas } = recorded();
  state.replaceAll(10, [[`${PG}hello`, 'dir value'], [`${PG}hello/a`, '1'], [`${PG}hello/b`, '2'], [`${PG}other/c`, '3']]);
  state.apply({ revision: 11, puts: [], dels: [`${PG}hello/a`], delTrees: [`${PG}hello`, `${PG}hello/`] });
  t.deepEqual(deltas[0].dels.sort(), [`${PG}hello`, `${PG}hello/a`, `${PG}hello/b`]);
  t.deepEqual([...state.entries.keys()], [`${PG}other/c`]);
  state.apply({ revision: 12, puts: [], dels: [], delTrees: [`${PG}other/`] });
  t.deepEqual(deltas[1].dels, [`${PG}other/c`], 'a root given with its slash');
  t.is(state.entries.size, 0);
});

test('progress moves the revision forward only, and the listener hears the stale flag with it', (t) => {
  const { state, events } = recorded();
  state.replaceAll(10, []);
  state.setStale(false);
  events.length = 0;
  state.advance(15);
  state.advance(15);
  state.advance(12);
  t.deepEqual(events, ['progress 15']);
  t.is(state.revision, 15);
  state.setStale(true);
  state.advance(16);
  t.deepEqual(events, ['progress 15', 'progress 15 stale', 'progress 16 stale']);
});

test('the stale flag is told only when it flips, and the snapshot carries it', (t) => {
  const { state, events } = recorded();
  state.replaceAll(10, [['/lain/config/a', '1']]);
  events.length = 0;
  t.true(snapshotOf(state.snapshotFrames().frames)[0].stale);
  t.true(snapshotOf(state.resetSnapshotFrames().frames)[0].stale);
  state.setStale(true);
  t.deepEqual(events, [], 'already stale');
  state.setStale(false);
  t.deepEqual(events, ['progress 10']);
  t.false(snapshotOf(state.snapshotFrames().frames)[0].stale, 'same revision, new flag: encoded again');
  t.false(snapshotOf(state.resetSnapshotFrames().frames)[0].stale);
});

test('snapshots are cut into parts of about the chunk size, numbered, the last one marked', (t) => {
  const { state } = recorded({ snapshotChunkBytes: 30 });
  // 14-byte keys with 1-byte values: 15 bytes each, so two fill a part of 30 exactly.
  state.replaceAll(10, [['/lain/config/a', '1'], ['/lain/config/b', '2'], ['/lain/config/c', '3'], ['/lain/config/d', '4'], ['/lain/config/e', '5']]);
  const parts = snapshotOf(state.snapshotFrames().frames);
  t.deepEqual(parts.map((p) => [p.part, p.last, p.puts.length, p.rev]), [[0, false, 2, 10], [1, false, 2, 10], [2, true, 1, 10]]);
  t.deepEqual(parts.flatMap((p) => p.puts), [...state.entries]);
  t.true(parts.every((p) => p.reset === undefined && p.epoch === ''));
  t.is(state.snapshotFrames().rev, 10);
});

test('an empty state is one empty, last snapshot part; by default parts are cut at about 512 KB', (t) => {
  const { state } = recorded();
  state.replaceAll(10, []);
  t.deepEqual(snapshotOf(state.snapshotFrames().frames), [{ t: 'snap', rev: 10, part: 0, last: true, puts: [], stale: true, epoch: '' }]);
  // 100 entries of about 10 KB: the part is cut after the entry that reaches 512 KB, the 53rd.
  state.replaceAll(11, Array.from({ length: 100 }, (_, i): [string, string] => [`/lain/config/k${String(i).padStart(3, '0')}`, 'v'.repeat(10_000)]));
  t.deepEqual(snapshotOf(state.snapshotFrames().frames).map((p) => p.puts.length), [53, 47]);
});

test('a state nobody listens to yet still applies, advances, re-lists and resets', (t) => {
  const state = new HubState({ keep: keyRangeFilter('/lain/'), historyMaxCount: 100, historyMaxBytes: 1 << 20 });
  state.replaceAll(10, [['/lain/config/a', '1']]);
  state.setStale(false);
  state.advance(11);
  state.apply({ revision: 12, puts: [['/lain/config/a', '2']], dels: [] });
  state.replaceAll(14, [['/lain/config/a', '3']]);
  state.reset(3, [['/lain/config/a', '4']], 'e');
  t.deepEqual([state.revision, state.stale, state.deltasPublished, state.resets], [3, false, 2, 1]);
  t.deepEqual([...state.entries], [['/lain/config/a', '4']]);
});

test('reset snapshots are marked reset, encoded once per revision, and separate from plain ones', (t) => {
  const { state } = recorded();
  state.replaceAll(10, [['/lain/config/a', '1']]);
  const reset = state.resetSnapshotFrames();
  t.is(state.resetSnapshotFrames(), reset);
  t.deepEqual(snapshotOf(reset.frames), [{ t: 'snap', rev: 10, part: 0, last: true, puts: [['/lain/config/a', '1']], stale: true, epoch: '', reset: true }]);
  t.is(snapshotOf(state.snapshotFrames().frames)[0].reset, undefined);
  state.apply({ revision: 11, puts: [['/lain/config/a', '2']], dels: [] });
  t.deepEqual(snapshotOf(state.resetSnapshotFrames().frames)[0].puts, [['/lain/config/a', '2']]);
});

test('a store reset replaces the state even at the same revision, drops history and gaps, and tells the listener', (t) => {
  const { state, events } = recorded();
  state.replaceAll(10, [['/lain/config/a', '1']]);
  state.apply({ revision: 12, puts: [['/lain/config/a', '2']], dels: [] });
  state.replaceAll(20, [['/lain/config/a', '3']]); // a gap (12, 20)
  const before = state.snapshotFrames();
  const beforeReset = state.resetSnapshotFrames();
  events.length = 0;
  state.reset(20, [['/lain/config/b', 'new history'], ['/lain/deployd/specs/x', 'not kept']], 'cluster-2');
  t.deepEqual(events, ['progress 20 stale', 'reset 20']);
  t.deepEqual([...state.entries], [['/lain/config/b', 'new history']]);
  t.is(state.epoch, 'cluster-2');
  t.is(state.resets, 1);
  t.is(state.revision, 20);
  t.is(state.lastChangeRev, 20);
  t.is(state.history.length, 0);
  t.is(state.framesAfter(12), null, 'old revisions mean something else now');
  t.deepEqual(state.framesAfter(20), []);
  const snap = snapshotOf(state.snapshotFrames().frames)[0];
  t.not(state.snapshotFrames(), before);
  t.deepEqual([snap.puts, snap.epoch], [[['/lain/config/b', 'new history']], 'cluster-2']);
  t.not(state.resetSnapshotFrames(), beforeReset);
  t.deepEqual(snapshotOf(state.resetSnapshotFrames().frames)[0].puts, [['/lain/config/b', 'new history']]);
});

test('a store reset to an older revision forgets the old history\'s gaps: the new history\'s revisions are served', (t) => {
  const { state } = recorded();
  state.replaceAll(10, [['/lain/config/a', '1']]);
  state.apply({ revision: 12, puts: [['/lain/config/a', '2']], dels: [] });
  state.replaceAll(20, [['/lain/config/a', '3']]); // a gap (12, 20) in the old history
  state.reset(5, [['/lain/config/a', 'restored']], 'cluster-2');
  t.is(state.revision, 5);
  for (const r of [13, 16, 25]) state.apply({ revision: r, puts: [['/lain/config/a', String(r)]], dels: [] });
  t.deepEqual(state.framesAfter(15)!.map((e) => e.rev), [16, 25]);
  t.deepEqual(state.framesAfter(5)!.map((e) => e.rev), [13, 16, 25]);
});

test('a reset before the first list loads the state', (t) => {
  const { state, events } = recorded();
  state.reset(7, [['/lain/config/a', '1']], 'e');
  t.true(state.loaded);
  t.deepEqual(events, ['progress 7 stale', 'reset 7']);
  state.replaceAll(9, [['/lain/config/a', '2']]);
  t.deepEqual(events.slice(2), ['delta 7→9 (frame 7→9)'], 'a later list is a difference, not a first load');
});

test('a re-list at the same revision that finds the same state changes nothing', (t) => {
  const { state, events } = recorded();
  state.replaceAll(10, [['/lain/config/a', '1']]);
  events.length = 0;
  state.replaceAll(10, [['/lain/config/a', '1'], ['/lain/deployd/specs/x', 'not kept']]);
  t.deepEqual(events, []);
  t.is(state.corrections, 0);
  t.deepEqual(state.framesAfter(10), []);
});

test('a re-list at the same revision that finds another state corrects it: no delta (agents ignore one that does not move the revision), every revision up to it unknown, the fan-out told', (t) => {
  const { state, events } = recorded();
  state.replaceAll(10, [['/lain/config/a', '1'], ['/lain/config/b', '2']]);
  state.apply({ revision: 12, puts: [['/lain/config/c', '3']], dels: [] });
  state.snapshotFrames(); // cached at 12: the correction must not serve it
  events.length = 0;
  // The watch missed the delete of b (etcd-io/etcd#19179) and a changed a.
  state.replaceAll(12, [['/lain/config/a', 'other'], ['/lain/config/c', '3']]);
  t.deepEqual(events, ['corrected 12']);
  t.is(state.corrections, 1);
  t.deepEqual([...state.entries], [['/lain/config/a', 'other'], ['/lain/config/c', '3']]);
  t.is(state.revision, 12);
  for (const rev of [1, 10, 11, 12]) t.is(state.framesAfter(rev), null, `an agent at ${rev} holds the uncorrected state: snapshot`);
  const snap = snapshotOf(state.snapshotFrames().frames);
  t.deepEqual(snap.flatMap((f) => f.puts), [['/lain/config/a', 'other'], ['/lain/config/c', '3']], 'the snapshot is of the corrected state');
  state.apply({ revision: 13, puts: [['/lain/config/d', '4']], dels: [] });
  t.deepEqual(state.framesAfter(13), [], 'agents after the correction resume as usual');
});

test('a correction is made for a missed delete alone and for a missed put alone', (t) => {
  const onlyDelete = recorded();
  onlyDelete.state.replaceAll(10, [['/lain/config/a', '1'], ['/lain/config/b', '2']]);
  onlyDelete.events.length = 0;
  onlyDelete.state.replaceAll(10, [['/lain/config/a', '1']]);
  t.deepEqual(onlyDelete.events, ['corrected 10']);
  t.deepEqual([...onlyDelete.state.entries.keys()], ['/lain/config/a']);

  const onlyPut = recorded();
  onlyPut.state.replaceAll(10, [['/lain/config/a', '1']]);
  onlyPut.events.length = 0;
  onlyPut.state.replaceAll(10, [['/lain/config/a', '1'], ['/lain/config/b', '2']]);
  t.deepEqual(onlyPut.events, ['corrected 10']);
  t.deepEqual([...onlyPut.state.entries.keys()], ['/lain/config/a', '/lain/config/b']);
});

test('a correction needs no listener, nor one that handles corrections', (t) => {
  const alone = new HubState({ keep: keyRangeFilter('/lain/'), historyMaxCount: 10, historyMaxBytes: 1 << 20 });
  alone.replaceAll(10, [['/lain/config/a', '1']]);
  alone.replaceAll(10, [['/lain/config/a', '2']]);
  t.is(alone.entries.get('/lain/config/a'), '2');

  const older = new HubState({ keep: keyRangeFilter('/lain/'), historyMaxCount: 10, historyMaxBytes: 1 << 20 });
  older.setListener({ onDelta: () => {}, onProgress: () => {}, onReset: () => {} });
  older.replaceAll(10, [['/lain/config/a', '1']]);
  older.replaceAll(10, [['/lain/config/a', '2']]);
  t.is(older.entries.get('/lain/config/a'), '2');
  t.is(older.corrections, 1);
});

test('a re-list that finds nothing changed moves the revision as progress, yet still marks the revisions it jumped', (t) => {
  const { state, events } = recorded();
  state.replaceAll(10, [['/lain/config/a', '1']]);
  state.apply({ revision: 12, puts: [['/lain/config/a', '2']], dels: [] });
  events.length = 0;
  state.replaceAll(20, [['/lain/config/a', '2'], ['/lain/deployd/specs/x', 'not kept']]);
  t.deepEqual(events, ['progress 20 stale']);
  t.is(state.framesAfter(15), null, 'a key may have come and gone in between');
  t.deepEqual(state.framesAfter(12), []);
  t.deepEqual(state.framesAfter(20), []);
});

test('a re-list one revision on skips nothing, so it never counts as a gap', (t) => {
  const { state } = recorded();
  state.replaceAll(10, [['/lain/config/a', '0']]);
  // More re-lists than gaps are kept: if each counted, the history would be dropped.
  for (let r = 11; r <= 80; r++) state.replaceAll(r, [['/lain/config/a', String(r)]]);
  t.is(state.framesAfter(10)!.length, 70);
});

test('too many gaps inside the history drop the history: agents before the last re-list need a snapshot', (t) => {
  const { state } = recorded();
  state.replaceAll(10, [['/lain/config/a', '0']]);
  for (let i = 1; i <= 64; i++) state.replaceAll(10 + 2 * i, [['/lain/config/a', String(i)]]);
  t.is(state.framesAfter(10)!.length, 64, '64 gaps are kept along with the history');
  t.is(state.framesAfter(13), null);
  state.replaceAll(200, [['/lain/config/a', 'last']]);
  t.is(state.framesAfter(10), null, 'the 65th gap: history dropped');
  t.is(state.framesAfter(128), null);
  t.deepEqual(state.framesAfter(200), []);
});

test('gaps older than the history are forgotten, so a long-lived hub never drops its history for them', (t) => {
  const { state } = recorded({ historyMaxCount: 2 });
  state.replaceAll(10, [['/lain/config/a', '0']]);
  for (let i = 1; i <= 100; i++) state.replaceAll(10 + 2 * i, [['/lain/config/a', String(i)]]);
  t.is(state.history.length, 2);
  t.is(state.framesAfter(206)!.length, 2, 'the history still serves its span');
  t.is(state.framesAfter(209), null, 'the newest gap (208, 210) still counts');
});

test('a gap that ends where the history now begins no longer counts toward the bound', (t) => {
  const { state } = recorded({ historyMaxCount: 64 });
  state.replaceAll(10, [['/lain/config/a', '0']]);
  state.replaceAll(12, [['/lain/config/a', 'g0']]); // gap (10, 12), delta 10→12
  state.apply({ revision: 13, puts: [['/lain/config/a', '13']], dels: [] });
  // 63 more re-lists, each a gap: the 10→12 delta slides out, the history begins at 12.
  for (let k = 1; k <= 63; k++) state.replaceAll(13 + 2 * k, [['/lain/config/a', `g${k}`]]);
  t.is(state.history.oldestPrev, 12);
  // The 64th: gaps (13, 15) … (139, 141) are kept, 64 of them, and (10, 12) is forgotten.
  state.replaceAll(141, [['/lain/config/a', 'g64']]);
  t.is(state.history.length, 64, 'the history was not dropped');
  t.is(state.framesAfter(13)!.length, 64);
  t.is(state.framesAfter(14), null);
});
