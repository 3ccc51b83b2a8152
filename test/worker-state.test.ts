// A worker's view of the hub state (hub/worker-state.ts), kept from the frame ring the main
// thread writes (RingPublisher in hub/pool.ts): after any sequence of what the store does —
// deltas, progress, stale flips, relists that jump, corrections, resets, dropped history — the
// view is the HubState: the same revision and flags, and for every revision the same deltas
// to send (or none, where a snapshot is needed). Without threads: both ends in this one.
import test from 'ava';
import { RingPublisher } from '../hub/pool.js';
import { RingReader, type RingSize } from '../hub/ring.js';
import { HubState } from '../hub/state.js';
import type { FrameRef, SnapshotParts } from '../hub/fanout.js';
import { RingState } from '../hub/worker-state.js';
import { silentLogger } from '../shared/log.js';
import { keyRangeFilter } from '../shared/protocol.js';

function mirror(ring: RingSize, history = { count: 20, bytes: 4096 }) {
  const state = new HubState({ keep: keyRangeFilter('/lain/'), historyMaxCount: history.count, historyMaxBytes: history.bytes });
  let current = true;
  const pub = new RingPublisher(state, ring, () => current, silentLogger);
  const events = { overruns: [] as string[], currents: 0, fetches: [] as boolean[] };
  const view = new RingState(new RingReader(pub.sab, ring), {
    onOverrun: (why) => events.overruns.push(why),
    onCurrent: () => { events.currents++; },
    fetchSnapshot: (reset) => events.fetches.push(reset),
  });
  const told: string[] = [];
  view.setListener({
    onDelta: (_f, prev, rev) => told.push(`delta ${prev}→${rev}`),
    onProgress: (rev, stale) => told.push(`progress ${rev}${stale ? ' stale' : ''}`),
    onReset: (rev) => told.push(`reset ${rev}`),
    onCorrected: (rev) => told.push(`corrected ${rev}`),
    onSnapshotReady: () => told.push('snapshot ready'),
  });
  view.restart(pub.written, pub.summary('summary'));
  return { state, pub, view, events, told, setCurrent: (c: boolean) => { current = c; } };
}

const revs = (refs: readonly FrameRef[] | null) => (refs === null ? null : refs.map((r) => r.rev));

/** A small deterministic PRNG (mulberry32): the same operations on every run. */
function prng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random store events on the state: puts, deletes, progress, stale flips, jumps, corrections, resets. */
function randomOps(m: ReturnType<typeof mirror>, seed: number, steps: number, check: (step: number, what: string) => void) {
  const rnd = prng(seed);
  const key = () => `/lain/config/k${Math.floor(rnd() * 6)}`;
  let rev = 10;
  m.state.setStale(false);
  m.state.replaceAll(rev, [['/lain/config/k0', 'v']]);
  for (let step = 0; step < steps; step++) {
    const r = rnd();
    let what: string;
    if (r < 0.5) {
      rev += 1 + Math.floor(rnd() * 2);
      m.state.apply({ revision: rev, puts: [[key(), `v${step}`]], dels: rnd() < 0.3 ? [key()] : [] });
      what = `apply ${rev}`;
    } else if (r < 0.6) {
      rev += 1;
      m.state.advance(rev);
      what = `advance ${rev}`;
    } else if (r < 0.68) {
      m.state.setStale(!m.state.stale);
      what = `stale ${m.state.stale}`;
    } else if (r < 0.8) {
      rev += 2 + Math.floor(rnd() * 5); // a relist that jumps: a gap
      m.state.replaceAll(rev, [[key(), `j${step}`], [key(), `j${step}`]]);
      what = `relist jump ${rev}`;
    } else if (r < 0.9) {
      m.state.replaceAll(rev, [[key(), `c${step}`]]); // at our own revision: a correction when it differs
      what = `relist at ${rev}`;
    } else if (r < 0.95) {
      rev = Math.max(1, rev - Math.floor(rnd() * 8));
      m.state.reset(rev, [[key(), `r${step}`]], `epoch${step}`);
      what = `reset ${rev}`;
    } else {
      m.state.apply({ revision: ++rev, puts: [[key(), 'x'.repeat(200 + Math.floor(rnd() * 600))]], dels: [] });
      what = `big apply ${rev}`;
    }
    m.view.drain();
    check(step, what);
  }
}

test('a view kept from a large ring is the hub state: scalars and, for every revision, the same deltas', (t) => {
  const m = mirror({ slots: 4096, bytes: 1 << 20 });
  let compared = 0, served = 0;
  randomOps(m, 7, 600, (step, what) => {
    const at = `step ${step} (${what})`;
    t.is(m.view.revision, m.state.revision, `revision after ${at}`);
    t.is(m.view.lastChangeRev, m.state.lastChangeRev, `lastChangeRev after ${at}`);
    t.is(m.view.stale, m.state.stale, `stale after ${at}`);
    t.is(m.view.epoch, m.state.epoch, `epoch after ${at}`);
    for (let r = 0; r <= m.state.revision + 1; r++) {
      const want = m.state.framesAfter(r);
      const got = m.view.framesAfter(r);
      if (JSON.stringify(revs(got)) !== JSON.stringify(revs(want))) { t.deepEqual(revs(got), revs(want), `framesAfter(${r}) after ${at}`); return; }
      compared++;
      if (got && got.length > 0) {
        served++;
        const bytes = got.map((ref) => m.view.frameOf(ref));
        t.deepEqual(bytes, want!.map((e) => m.state.frameOf(e)), `the frames' bytes for ${r} after ${at}`);
      }
    }
  });
  t.true(served > 100, `deltas were served from the ring (${served} of ${compared} revisions)`);
  t.deepEqual(m.events.overruns, []);
});

test('a view kept from a small ring never serves deltas the hub would not: where they differ, the ring sends a snapshot', (t) => {
  // 24 slots for a history of 20 deltas and the state records between them; 3 KB of bytes.
  const m = mirror({ slots: 24, bytes: 3000 });
  let shorter = 0;
  randomOps(m, 11, 600, (step, what) => {
    if (m.events.overruns.length > 0) {
      // Read after every step, it never falls a whole ring behind here; see the overrun test.
      t.fail(`overrun at step ${step}: ${m.events.overruns[0]}`);
      return;
    }
    for (let r = 0; r <= m.state.revision + 1; r++) {
      const want = revs(m.state.framesAfter(r));
      const got = revs(m.view.framesAfter(r));
      if (got === null && want !== null) { shorter++; continue; }
      if (JSON.stringify(got) !== JSON.stringify(want)) { t.deepEqual(got, want, `framesAfter(${r}) after step ${step} (${what})`); return; }
    }
  });
  t.true(shorter > 0, 'the small ring reached less far back than the history at times');
});

test('the view tells its server what the hub state told the ring, in order', (t) => {
  const m = mirror({ slots: 64, bytes: 1 << 16 });
  m.state.setStale(false);
  m.state.replaceAll(10, [['/lain/config/a', '1']]);
  m.state.apply({ revision: 11, puts: [['/lain/config/a', '2']], dels: [] });
  m.state.advance(12);
  m.state.replaceAll(12, [['/lain/config/a', 'fixed']]);
  m.state.reset(5, [['/lain/config/a', 'restored']], 'other');
  m.view.drain();
  t.deepEqual(m.told, ['progress 0', 'progress 10', 'delta 10→11', 'progress 12', 'corrected 12', 'progress 5', 'reset 5']);
  t.is(m.view.epoch, 'other');
  t.deepEqual(m.view.framesAfter(3), null, 'before the reset: a snapshot');
  t.deepEqual(m.view.framesAfter(5), []);
});

test('the view tells the server when the hub became current (and after a summary that says so)', (t) => {
  const m = mirror({ slots: 64, bytes: 1 << 16 });
  t.is(m.events.currents, 1, 'the summary it started from said current');
  m.setCurrent(false);
  m.pub.writeState('current');
  m.view.drain();
  t.is(m.events.currents, 1, 'not current: nothing to tell');
  t.false(m.view.current);
  m.setCurrent(true);
  m.pub.writeState('current');
  m.view.drain();
  t.is(m.events.currents, 2);
});

test('a view a whole ring behind reports an overrun, serves nothing, and starts again from a summary', (t) => {
  const m = mirror({ slots: 4, bytes: 1 << 16 });
  m.state.setStale(false);
  m.state.replaceAll(10, [['/lain/config/a', '0']]);
  m.view.drain();
  for (let i = 1; i <= 6; i++) m.state.apply({ revision: 10 + i, puts: [['/lain/config/a', String(i)]], dels: [] });
  m.view.drain();
  t.is(m.events.overruns.length, 1);
  t.regex(m.events.overruns[0], /behind a ring of 4/);
  t.false(m.view.loaded, 'serves nobody until it starts again');
  t.is(m.view.framesAfter(12), null);
  m.view.restart(m.pub.written, m.pub.summary('summary'));
  t.true(m.view.loaded);
  t.is(m.view.revision, 16);
  t.deepEqual(revs(m.view.framesAfter(14)), [15, 16], 'the ring still holds the last deltas');
  m.state.apply({ revision: 17, puts: [['/lain/config/a', '7']], dels: [] });
  m.view.drain();
  t.is(m.view.revision, 17, 'reads on from where the summary was taken');
});

test('a delta larger than the whole ring reaches the agents as a snapshot, and history before it is not served', (t) => {
  const m = mirror({ slots: 64, bytes: 512 }, { count: 20, bytes: 1 << 20 });
  m.state.setStale(false);
  m.state.replaceAll(10, [['/lain/config/a', '0']]);
  m.state.apply({ revision: 11, puts: [['/lain/config/a', '1']], dels: [] });
  m.state.apply({ revision: 12, puts: [['/lain/config/a', 'x'.repeat(1000)]], dels: [] });
  m.view.drain();
  t.is(m.pub.oversize, 1);
  t.is(m.view.revision, 12);
  t.is(m.told[m.told.length - 1], 'corrected 12', 'every agent is sent a snapshot');
  t.is(m.view.framesAfter(11), null, 'the agent at 11 is sent a snapshot, not a delta that never reached the ring');
  t.deepEqual(revs(m.state.framesAfter(11)), [12], 'where the main thread would have sent the delta');
});

test('a snapshot fetched before a correction is not served after it; one fetched after is', (t) => {
  const m = mirror({ slots: 64, bytes: 1 << 16 });
  m.state.setStale(false);
  m.state.replaceAll(10, [['/lain/config/a', '1']]);
  m.view.drain();
  t.is(m.view.snapshotFrames(), undefined, 'not at hand: fetched');
  t.deepEqual(m.events.fetches, [false]);
  t.is(m.view.snapshotFrames(), undefined);
  t.deepEqual(m.events.fetches, [false], 'one fetch at a time');
  // The main thread answers at ring sequence `seq`; then the state is corrected at the same revision.
  const before: SnapshotParts = { ...m.state.snapshotFrames() };
  const seqBefore = m.pub.written;
  m.state.replaceAll(10, [['/lain/config/a', 'fixed']]);
  m.view.drain();
  m.view.acceptSnapshot(false, seqBefore, before);
  t.is(m.view.snapshotFrames(), undefined, 'the old snapshot is refused and fetched again');
  t.deepEqual(m.events.fetches, [false, false]);
  const after = m.state.snapshotFrames();
  m.view.acceptSnapshot(false, m.pub.written, after);
  t.is(m.view.snapshotFrames(), after);
  t.true(m.told.includes('snapshot ready'));
  m.state.apply({ revision: 11, puts: [['/lain/config/a', '2']], dels: [] });
  m.view.drain();
  t.is(m.view.snapshotFrames(), undefined, 'older than the view: fetched again');
});
