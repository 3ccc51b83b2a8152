// SortedSet (agent/indexes/sorted-set.ts): members in comparator order through single changes
// (binary-search inserts) and bulk loads (one sort past the queue threshold), and lowerBound.
import test from 'ava';
import { SortedSet, lowerBound } from '../agent/indexes/sorted-set.js';
import { compareUtf8 } from '../shared/gojson.js';

/** Enough adds in one go to take the rebuild path (the threshold is 32 + size/16 queued changes). */
const BULK = 100;

function words(n: number, prefix = 'w'): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, '0')}`);
}

test('the sorted views stay ordered through incremental and bulk changes', (t) => {
  const set = new SortedSet<string>(compareUtf8);
  const reference = new Set<string>();
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const alphabet = ['a', 'b', '\uE000', '\u{1F680}', 'ab', 'a/b', 'a.b', ''];
  for (let round = 0; round < 200; round++) {
    const batch = random() < 0.1 ? 300 : 3; // mostly small changes, sometimes a bulk load
    for (let i = 0; i < batch; i++) {
      const word = alphabet[Math.floor(random() * alphabet.length)] + Math.floor(random() * 50);
      if (random() < 0.6) { set.add(word); reference.add(word); } else { set.delete(word); reference.delete(word); }
    }
    t.deepEqual(set.view(), [...reference].sort(compareUtf8));
  }
});

test('a few changes are placed by the comparator, not by insertion order', (t) => {
  const set = new SortedSet<string>(compareUtf8);
  for (const w of ['m', '\u{1F680}', 'a', '\uE000', 'z']) set.add(w);
  t.deepEqual(set.view(), ['a', 'm', 'z', '\uE000', '\u{1F680}']);
  set.delete('m');
  set.add('b');
  t.deepEqual(set.view(), ['a', 'b', 'z', '\uE000', '\u{1F680}']);
});

test('adding a member twice keeps it once; deleting a non-member changes nothing', (t) => {
  const set = new SortedSet<string>(compareUtf8);
  set.add('b');
  set.add('a');
  set.add('b');
  t.deepEqual(set.view(), ['a', 'b']);
  set.add('a');
  set.delete('c');
  t.deepEqual(set.view(), ['a', 'b']);
  set.delete('a');
  set.delete('a');
  t.deepEqual(set.view(), ['b']);
});

test('a member deleted and added again in one batch is there once', (t) => {
  const set = new SortedSet<string>(compareUtf8);
  set.add('a');
  set.add('b');
  t.deepEqual(set.view(), ['a', 'b']);
  set.delete('a');
  set.add('a');
  set.add('c');
  set.delete('c');
  t.deepEqual(set.view(), ['a', 'b']);
});

test('after a bulk load, later single changes apply once each', (t) => {
  const set = new SortedSet<string>(compareUtf8);
  const loaded = words(BULK);
  for (const w of [...loaded].reverse()) set.add(w);
  t.deepEqual(set.view(), loaded);
  t.deepEqual(set.view(), loaded, 'reading twice changes nothing');
  set.add('a');
  set.delete('w050');
  const expected = ['a', ...loaded.filter((w) => w !== 'w050')];
  t.deepEqual(set.view(), expected);
  t.deepEqual(set.view(), expected);
});

test('a bulk load on top of held members, deletes included, ends with exactly the members', (t) => {
  const set = new SortedSet<string>(compareUtf8);
  for (const w of ['x1', 'x2', 'x3']) set.add(w);
  t.deepEqual(set.view(), ['x1', 'x2', 'x3']);
  set.delete('x2');
  for (const w of words(BULK)) set.add(w);
  set.delete('w007');
  set.add('x2');
  set.delete('x3');
  t.deepEqual(set.view(), [...words(BULK).filter((w) => w !== 'w007'), 'x1', 'x2']);
});

test('lowerBound is the index of the first member not ordered before the probe, changes included', (t) => {
  const set = new SortedSet<string>(compareUtf8);
  for (const w of ['b', 'd', 'f']) set.add(w);
  // No view() first: lowerBound itself must take the queued changes into account.
  t.is(set.lowerBound('d', compareUtf8), 1);
  set.add('a');
  t.is(set.lowerBound('d', compareUtf8), 2);
  t.is(set.lowerBound('c', compareUtf8), 2);
  t.is(set.lowerBound('', compareUtf8), 0);
  t.is(set.lowerBound('g', compareUtf8), 4);
});

test('lowerBound over an array: first element not before the probe, at every position', (t) => {
  const sorted = [10, 20, 20, 30, 40, 50, 60];
  const cmp = (a: number, b: number) => a - b;
  t.is(lowerBound([], 5, cmp), 0);
  for (const [probe, expected] of [[5, 0], [10, 0], [15, 1], [20, 1], [25, 3], [30, 3], [45, 5], [60, 6], [61, 7]] as const) {
    t.is(lowerBound(sorted, probe, cmp), expected, `probe ${probe}`);
  }
  for (let n = 1; n <= 9; n++) {
    const items = Array.from({ length: n }, (_, i) => 2 * i);
    for (let probe = -1; probe <= 2 * n; probe++) {
      t.is(lowerBound(items, probe, cmp), Math.max(0, Math.ceil(probe / 2)), `n ${n} probe ${probe}`);
    }
  }
});

/** A comparator that counts its calls. */
function counted() {
  const calls = { n: 0 };
  return { calls, compare: (a: string, b: string) => { calls.n++; return compareUtf8(a, b); } };
}

// The costs the set exists for, counted in comparisons (deterministic, unlike time): a snapshot
// arrives in key order (etcd lists keys sorted), so loading it is one sort over a sorted array;
// after that, a delta's few changes are binary-search inserts, never a sort of every member.
const LOAD = 1024;

test('loading many members in order costs one pass of comparisons, not a binary search each', (t) => {
  const { calls, compare } = counted();
  const set = new SortedSet<string>(compare);
  for (const w of words(LOAD)) set.add(w);
  t.is(set.view().length, LOAD);
  t.true(calls.n < 2 * LOAD, `${calls.n} comparisons`);
});

test('a single change after a load costs a binary search, not a sort of every member', (t) => {
  const { calls, compare } = counted();
  const set = new SortedSet<string>(compare);
  for (const w of words(LOAD)) set.add(w);
  set.view();
  for (const change of [() => set.add('w0005'), () => set.delete('w100'), () => set.add('x')]) {
    calls.n = 0;
    change();
    set.view();
    t.true(calls.n <= 2 * Math.log2(LOAD), `${calls.n} comparisons`);
  }
  t.is(set.view().length, LOAD + 1);
});
