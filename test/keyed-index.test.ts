// KeyedIndex (agent/indexes/keyed-index.ts): key → entry in Go's map order, and lainlet's
// lookup rule (API.md §4).
import test from 'ava';
import { KeyedIndex } from '../agent/indexes/keyed-index.js';

function indexOf(keys: string[]): KeyedIndex<string> {
  const index = new KeyedIndex<string>();
  for (const k of keys) index.set(k, `value of ${k}`);
  return index;
}

test('lookups: "" is everything, an exact key wins over the prefix, otherwise the prefix', (t) => {
  const index = new KeyedIndex<string>();
  for (const k of ['vip', 'vips/1', 'vips/2', 'vipx', 'domain']) index.set(k, k);
  t.deepEqual(index.lookup(''), ['domain', 'vip', 'vips/1', 'vips/2', 'vipx']);
  t.deepEqual(index.lookup('vip'), ['vip']);
  t.deepEqual(index.lookup('vi'), ['vip', 'vips/1', 'vips/2', 'vipx']);
  t.deepEqual(index.lookup('vips/'), ['vips/1', 'vips/2']);
  t.deepEqual(index.lookup('nosuch'), []);
});

test('lookups return the entries, not the keys', (t) => {
  const index = indexOf(['b', 'a/1', 'a/2']);
  t.deepEqual(index.lookup(''), ['value of a/1', 'value of a/2', 'value of b']);
  t.deepEqual(index.lookup('a/'), ['value of a/1', 'value of a/2']);
  t.deepEqual(index.lookup('b'), ['value of b']);
});

test('keys are kept in byte-wise (UTF-8) order, astral characters last', (t) => {
  const index = indexOf(['\u{1F680}', 'z', '\uE000', 'a']);
  t.deepEqual(index.keys(), ['a', 'z', '\uE000', '\u{1F680}']);
  t.deepEqual(index.lookup('').length, 4);
});

test('keysWithPrefix: the run of keys starting with the prefix, the prefix itself included', (t) => {
  const index = indexOf(['a', 'ab', 'abc', 'abd', 'b', 'ba']);
  t.deepEqual(index.keysWithPrefix('ab'), ['ab', 'abc', 'abd']);
  t.deepEqual(index.keysWithPrefix('b'), ['b', 'ba']);
  t.deepEqual(index.keysWithPrefix('ba'), ['ba']);
  t.deepEqual(index.keysWithPrefix('c'), []);
  t.deepEqual(index.keysWithPrefix(''), ['a', 'ab', 'abc', 'abd', 'b', 'ba']);
  t.deepEqual(indexOf([]).keysWithPrefix('a'), []);
});

test('set replaces the entry of a key; delete says whether the key was there', (t) => {
  const index = indexOf(['a', 'b']);
  t.is(index.size, 2);
  index.set('a', 'new a');
  t.is(index.size, 2);
  t.is(index.get('a'), 'new a');
  t.deepEqual(index.keys(), ['a', 'b']);
  t.true(index.delete('a'));
  t.false(index.delete('a'));
  t.false(index.delete('nosuch'));
  t.is(index.get('a'), undefined);
  t.is(index.size, 1);
  t.deepEqual(index.keys(), ['b']);
  t.deepEqual(index.lookup(''), ['value of b']);
});

test('"" means every entry even when "" is itself a key', (t) => {
  const index = indexOf(['', 'a']);
  t.deepEqual(index.lookup(''), ['value of ', 'value of a']);
  t.deepEqual(index.lookup('a'), ['value of a']);
});
