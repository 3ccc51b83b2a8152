// CatchUp: what one agent connection is sent before it goes live — history deltas when the
// hub's history reaches back to the agent's revision, a snapshot otherwise — in batches the
// server paces on the socket's drain events.
import test from 'ava';
import { CatchUp, type SnapshotWhy } from '../hub/catchup.js';
import { HubState } from '../hub/state.js';
import { decodeFrame, keyRangeFilter, type DeltaFrame, type Frame, type SnapshotFrame } from '../shared/protocol.js';

const KEY = '/lain/config/a';

function stateAt(rev: number, opts: { historyMaxCount?: number; snapshotChunkBytes?: number } = {}): HubState {
  const state = new HubState({ keep: keyRangeFilter('/lain/'), historyMaxCount: opts.historyMaxCount ?? 100, historyMaxBytes: 1 << 20, snapshotChunkBytes: opts.snapshotChunkBytes });
  state.replaceAll(rev, [[KEY, String(rev)]]);
  return state;
}

function change(state: HubState, rev: number, key = KEY): void {
  state.apply({ revision: rev, puts: [[key, String(rev)]], dels: [] });
}

/** Far more batches than any test here needs: a catch-up that never ends fails, not hangs. */
const MAX_BATCHES = 1000;

/** Every frame the catch-up hands out until it says the agent is current, batch by batch. */
function drain(catchUp: CatchUp, budgetBytes = Infinity): Frame[][] {
  const batches: Frame[][] = [];
  for (let i = 0; i < MAX_BATCHES; i++) {
    const b = catchUp.next(budgetBytes);
    if (b === null) return batches;
    batches.push(b.map((f) => decodeFrame(f)));
  }
  throw new Error(`still not current after ${MAX_BATCHES} batches`);
}

const revs = (batches: Frame[][]) => batches.flat().map((f) => (f.t === 'delta' ? `${f.prev}→${f.rev}` : `${f.t}@${(f as SnapshotFrame).rev}`));

test('an agent the history reaches back to is sent the deltas after its revision, then goes live', (t) => {
  const state = stateAt(10);
  change(state, 11);
  change(state, 12);
  let snapshots = 0;
  const catchUp = new CatchUp(state, 11, () => snapshots++);
  t.false(catchUp.needsSnapshot);
  t.deepEqual(revs(drain(catchUp)), ['11→12']);
  t.is(snapshots, 0);
});

test('an agent at the last change goes live at once; so does one that learnt a later revision from progress', (t) => {
  const state = stateAt(10);
  change(state, 11);
  state.advance(15);
  for (const rev of [11, 13, 15]) {
    const catchUp = new CatchUp(state, rev, () => t.fail('no snapshot'));
    t.false(catchUp.needsSnapshot);
    t.is(catchUp.next(Infinity), null, `agent at ${rev}`);
  }
});

test('an agent older than the history is sent a snapshot of the current state, and told once', (t) => {
  const state = stateAt(10, { historyMaxCount: 2 });
  for (let r = 11; r <= 14; r++) change(state, r);
  const whys: SnapshotWhy[] = [];
  const catchUp = new CatchUp(state, 11, (why) => whys.push(why));
  t.true(catchUp.needsSnapshot);
  t.deepEqual(whys, ['history'], 'told once, and why (the hub logs it)');
  const frames = drain(catchUp).flat();
  t.deepEqual(frames, [{ t: 'snap', rev: 14, part: 0, last: true, puts: [[KEY, '14']], stale: true, epoch: '' }]);
  t.is(whys.length, 1);
});

test('an agent with nothing (revision 0) is sent a snapshot even when the history reaches back to 0', (t) => {
  const state = stateAt(0);
  change(state, 5);
  t.is(state.framesAfter(0)!.length, 1, 'the history would serve revision 0');
  const whys: SnapshotWhy[] = [];
  const catchUp = new CatchUp(state, 0, (why) => whys.push(why));
  t.true(catchUp.needsSnapshot);
  t.deepEqual(whys, ['no state']);
  t.deepEqual(revs(drain(catchUp)), ['snap@5']);
});

test('an agent from another store history begins with a reset snapshot, even when its revision looks current', (t) => {
  const state = stateAt(10);
  change(state, 11);
  const whys: SnapshotWhy[] = [];
  const catchUp = new CatchUp(state, 11, (why) => whys.push(why), true);
  t.true(catchUp.needsSnapshot);
  t.deepEqual(whys, ['reset']);
  const frames = drain(catchUp).flat() as SnapshotFrame[];
  t.is(frames.length, 1);
  t.is(frames[0].t, 'snap');
  t.is(frames[0].reset, true);
  t.is(frames[0].rev, 11);
});

test('a snapshot in parts is handed out one part per batch, in order, whatever the budget', (t) => {
  const state = new HubState({ keep: keyRangeFilter('/lain/'), historyMaxCount: 100, historyMaxBytes: 1 << 20, snapshotChunkBytes: 1 });
  state.replaceAll(10, [['/lain/config/a', '1'], ['/lain/config/b', '2'], ['/lain/config/c', '3']]);
  const catchUp = new CatchUp(state, 0, () => {});
  const batches = drain(catchUp, Infinity) as SnapshotFrame[][];
  t.deepEqual(batches.map((b) => b.length), [1, 1, 1, 1]);
  t.deepEqual(batches.map(([f]) => [f.part, f.last]), [[0, false], [1, false], [2, false], [3, true]]);
  t.deepEqual(batches.flatMap(([f]) => f.puts.map(([k]) => k)), ['/lain/config/a', '/lain/config/b', '/lain/config/c']);
});

test('changes committed while a snapshot is being sent follow it as deltas', (t) => {
  const state = stateAt(10, { snapshotChunkBytes: 1 });
  state.apply({ revision: 11, puts: [['/lain/config/b', 'b']], dels: [] });
  const catchUp = new CatchUp(state, 0, () => {});
  const first = decodeFrame(catchUp.next(Infinity)![0]) as SnapshotFrame;
  t.is(first.rev, 11);
  change(state, 12);
  change(state, 13);
  const rest = drain(catchUp);
  t.deepEqual(revs(rest), ['snap@11', 'snap@11', '11→12', '12→13'], 'the snapshot is the one of revision 11, then the deltas after it');
});

test('deltas committed while an agent catches up are sent before it goes live', (t) => {
  const state = stateAt(10);
  change(state, 11);
  change(state, 12);
  const catchUp = new CatchUp(state, 10, () => t.fail('no snapshot'));
  const oneFrame = 1;
  t.deepEqual(revs([catchUp.next(oneFrame)!.map((f) => decodeFrame(f))]), ['10→11']);
  change(state, 13);
  t.deepEqual(revs(drain(catchUp, oneFrame)), ['11→12', '12→13'], '13 is fetched once the batch fetched at first ran dry');
});

test('an agent the history moves past while it catches up is sent a snapshot after all', (t) => {
  const state = stateAt(10, { historyMaxCount: 2 });
  change(state, 11);
  const whys: SnapshotWhy[] = [];
  const slow = new CatchUp(state, 10, (why) => whys.push(why));
  t.false(slow.needsSnapshot);
  for (let r = 12; r <= 15; r++) change(state, r);
  const batches = drain(slow);
  t.deepEqual(revs(batches), ['snap@15'], 'the history no longer reaches revision 10');
  t.is((batches[0][0] as SnapshotFrame).reset, undefined, 'a plain snapshot: the agent is on this store history, only behind');
  t.deepEqual(whys, ['moved past']);
});

test('history is handed out in batches under the byte budget, at least one frame each', (t) => {
  const state = stateAt(10);
  for (let r = 11; r <= 20; r++) state.apply({ revision: r, puts: [[KEY, 'x'.repeat(1000) + r]], dels: [] });
  const frameBytes = state.framesAfter(19)![0].frame.length;
  const exact = new CatchUp(state, 10, () => t.fail('no snapshot'));
  t.deepEqual(drain(exact, frameBytes * 3).map((b) => b.length), [3, 3, 3, 1], 'a budget of exactly three frames takes three');
  const under = new CatchUp(state, 10, () => t.fail('no snapshot'));
  t.deepEqual(drain(under, frameBytes * 3 - 1).map((b) => b.length), [2, 2, 2, 2, 2]);
  const tiny = new CatchUp(state, 10, () => t.fail('no snapshot'));
  const batches = drain(tiny, 1);
  t.is(batches.length, 10, 'a budget smaller than one frame still sends one per batch');
  t.deepEqual(revs(batches).slice(0, 2), ['10→11', '11→12']);
  t.deepEqual((batches.flat() as DeltaFrame[]).map((f) => f.rev), [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
});

/** A FanoutState whose answers the test sets: the worker threads' cases (a gap, a ring overwrite). */
function fakeState(over: Partial<Record<'framesAfter' | 'pending' | 'frameOf' | 'snapshotFrames', unknown>>) {
  const snap = { rev: 20, frames: [Buffer.from('snap')] };
  return {
    revision: 20, lastChangeRev: 20, stale: false, loaded: true, epoch: '',
    setListener() {},
    framesAfter: () => null,
    pending: () => false,
    frameOf: () => null,
    snapshotFrames: () => snap,
    resetSnapshotFrames: () => snap,
    ...over,
  } as unknown as ConstructorParameters<typeof CatchUp>[0];
}

test('why a snapshot is sent is told for a gap that held changes and for a delta overwritten in the ring', (t) => {
  let gapOpen = true;
  const whys: SnapshotWhy[] = [];
  const inGap = new CatchUp(fakeState({ pending: () => gapOpen }), 15, (why) => whys.push(why));
  t.false(inGap.needsSnapshot, 'inside a gap being proved: it waits');
  t.deepEqual(inGap.next(Infinity), []);
  gapOpen = false;
  t.deepEqual(inGap.next(Infinity), [Buffer.from('snap')]);
  t.deepEqual(whys, ['gap']);

  whys.length = 0;
  const overwritten = new CatchUp(fakeState({ framesAfter: () => [{ rev: 16 }], frameOf: () => null }), 15, (why) => whys.push(why));
  t.false(overwritten.needsSnapshot);
  t.deepEqual(overwritten.next(Infinity), [Buffer.from('snap')]);
  t.deepEqual(whys, ['overwritten']);
});

test('a snapshot not at hand yet (worker threads) is told, with the reason it was needed, when it is sent', (t) => {
  let ready = false;
  const snap = { rev: 20, frames: [Buffer.from('snap')] };
  const whys: SnapshotWhy[] = [];
  const catchUp = new CatchUp(fakeState({ snapshotFrames: () => (ready ? snap : undefined) }), 15, (why) => whys.push(why));
  t.true(catchUp.needsSnapshot);
  t.deepEqual(catchUp.next(Infinity), [], 'fetched from the main thread: nothing to send yet');
  t.deepEqual(whys, []);
  ready = true;
  t.deepEqual(catchUp.next(Infinity), [Buffer.from('snap')]);
  t.deepEqual(whys, ['history'], 'the history did not reach its revision');
});
