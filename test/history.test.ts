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

test('an empty window serves nobody: every agent needs a snapshot', (t) => {
  const h = new DeltaHistory(4, 1000);
  t.is(h.framesAfter(0), null);
  t.is(h.oldestPrev, undefined);
  t.is(h.newestRev, undefined);
  h.push(entry(1, 2));
  h.clear();
  t.is(h.framesAfter(1), null, 'cleared: empty again');
  t.is(h.length, 0);
  t.is(h.totalBytes, 0);
});

test('the window reports its span (oldestPrev, newestRev] as it slides', (t) => {
  const h = new DeltaHistory(3, 1000);
  h.push(entry(4, 5));
  t.is(h.oldestPrev, 4);
  t.is(h.newestRev, 5);
  h.push(entry(5, 9));
  t.is(h.newestRev, 9);
  for (let r = 10; r <= 14; r++) h.push(entry(r - 1, r)); // wraps the ring more than once
  t.is(h.oldestPrev, 11);
  t.is(h.newestRev, 14);
  t.deepEqual(h.framesAfter(11)!.map((e) => e.rev), [12, 13, 14]);
});

test('a window exactly at its byte bound keeps every entry', (t) => {
  const h = new DeltaHistory(100, 30);
  h.push(entry(0, 1, 10));
  h.push(entry(1, 2, 10));
  h.push(entry(2, 3, 10));
  t.is(h.length, 3);
  t.is(h.totalBytes, 30);
  h.push(entry(3, 4, 1));
  t.is(h.length, 3, 'one byte over: the oldest goes');
  t.is(h.totalBytes, 21);
  t.is(h.oldestPrev, 1);
});

test('a window needs room for at least one delta', (t) => {
  t.throws(() => new DeltaHistory(0, 1000), { message: 'history needs room for at least one delta' });
  const one = new DeltaHistory(1, 1000);
  one.push(entry(1, 2));
  one.push(entry(2, 3));
  t.is(one.length, 1);
  t.deepEqual(one.framesAfter(2)!.map((e) => e.rev), [3]);
  t.is(one.framesAfter(1), null);
});
