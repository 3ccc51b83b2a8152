import test from 'ava';
import { DeltaHistory } from '../hub/history.js';

const entry = (prev: number, rev: number, size = 10) => ({ prev, rev, frame: Buffer.alloc(size, rev) });

test('frames after a revision inside the window', (t) => {
  const h = new DeltaHistory(10, 1000);
  h.push(entry(5, 7));
  h.push(entry(7, 8));
  h.push(entry(8, 12));
  t.deepEqual(h.framesAfter(7)!.map((e) => e.frame[0]), [8, 12]);
  t.deepEqual(h.framesAfter(5)!.map((e) => e.frame[0]), [7, 8, 12]);
  // 10 sits between 8 and 12: state at 10 equals state at 8, so the 8→12 delta applies.
  t.deepEqual(h.framesAfter(10)!.map((e) => e.frame[0]), [12]);
  t.deepEqual(h.framesAfter(12), []);
  t.deepEqual(h.framesAfter(99), []);
  t.is(h.framesAfter(4), null, 'older than the window: snapshot');
});

test('bounded by count', (t) => {
  const h = new DeltaHistory(3, 1_000_000);
  for (let r = 1; r <= 10; r++) h.push(entry(r - 1, r));
  t.is(h.length, 3);
  t.is(h.oldestPrev, 7);
  t.is(h.framesAfter(6), null);
  t.is(h.framesAfter(7)!.length, 3);
});

test('bounded by bytes, but always keeps the newest delta', (t) => {
  const h = new DeltaHistory(100, 25);
  h.push(entry(0, 1, 10));
  h.push(entry(1, 2, 10));
  h.push(entry(2, 3, 10));
  t.is(h.length, 2);
  t.true(h.totalBytes <= 25);
  h.push(entry(3, 4, 100));
  t.is(h.length, 1);
  t.deepEqual(h.framesAfter(3)!.length, 1);
});

test('a break in the chain restarts the window', (t) => {
  const h = new DeltaHistory(10, 1000);
  h.push(entry(1, 2));
  h.push(entry(5, 6));
  t.is(h.length, 1);
  t.is(h.framesAfter(2), null);
});
