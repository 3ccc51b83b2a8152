// PodGroupIndex (agent/indexes/podgroup-index.ts): pod groups by cache key, plus the orders the
// outputs need — by Spec.Name, stream procs by (namespace, name), and the set of namespaces.
import test from 'ava';
import type { PodGroupEntry } from '../agent/indexes/entries.js';
import { PodGroupIndex, compareByName, compareByNamespace, isStreamProc } from '../agent/indexes/podgroup-index.js';

/** A pod group entry under `key` with the given Spec.Namespace and Spec.Name; `stream` gives it a stream port. */
function entry(key: string, namespace: string, name: string, stream = false): PodGroupEntry {
  return {
    key, raw: `${namespace} ${name}`,
    pg: {
      name, namespace, annotation: '', dependencies: [], containerSpecs: [], pods: [], appVersion: '',
      streamPorts: stream ? [{ listen: 9000, upstream: 9000 }] : [],
    },
  };
}

const keysOf = (entries: readonly PodGroupEntry[]) => entries.map((e) => e.key);

function indexWith(entries: PodGroupEntry[]): PodGroupIndex {
  const index = new PodGroupIndex();
  for (const e of entries) index.set(e);
  return index;
}

test('byName orders by Spec.Name, then by key, whatever the key order', (t) => {
  const index = indexWith([
    entry('a/z', 'a', 'a.web.z'),
    entry('b/web', 'b', 'a.web.b'), // a key whose Spec.Name sorts before its key's neighbours
    entry('a/same2', 'a', 'a.same'),
    entry('a/same1', 'a', 'a.same'),
    entry('c/\u{1F680}', 'c', '\u{1F680}'),
    entry('c/\uE000', 'c', '\uE000'),
  ]);
  const expected = ['a/same1', 'a/same2', 'b/web', 'a/z', 'c/\uE000', 'c/\u{1F680}'];
  t.deepEqual(keysOf(index.byName('')), expected);
  t.deepEqual(keysOf(index.byName('a')), ['a/same1', 'a/same2', 'a/z']);
  t.deepEqual(keysOf(index.byName('b/web')), ['b/web']);
  t.deepEqual(keysOf(index.byName('nosuch')), []);
});

test('byName of a scope whose key order is not name order sorts it', (t) => {
  const index = indexWith([entry('a/1', 'a', 'a.z'), entry('a/2', 'a', 'a.m'), entry('a/3', 'a', 'a.a')]);
  t.deepEqual(keysOf(index.byName('a/')), ['a/3', 'a/2', 'a/1']);
  t.deepEqual(keysOf(index.lookup('a/')), ['a/1', 'a/2', 'a/3'], 'lookup keeps key order');
});

test('streamProcs: only the stream procs, by namespace, then name, then key', (t) => {
  const index = indexWith([
    entry('z/z.worker.a', 'z', 'z.worker.a', true),
    entry('a/a.worker.b', 'a', 'a.worker.b', true),
    entry('a/a.web.web', 'a', 'a.web.web'),
    entry('m/x', 'a', 'a.worker.a', true), // namespace a, although the key says m
    entry('b/b.worker.s', 'b', 'b.worker.s', true),
  ]);
  t.deepEqual(keysOf(index.streamProcs('')), ['m/x', 'a/a.worker.b', 'b/b.worker.s', 'z/z.worker.a']);
  t.deepEqual(keysOf(index.streamProcs('a')), ['a/a.worker.b']);
  t.deepEqual(keysOf(index.streamProcs('a/a.web.web')), []);
  t.true(isStreamProc(entry('k', 'a', 'a.s', true)));
  t.false(isStreamProc(entry('k', 'a', 'a.s')));
});

test('streamProcs of a scope whose key order is not namespace order sorts it', (t) => {
  const index = indexWith([entry('x/1', 'b', 'b.s', true), entry('x/2', 'a', 'a.s', true), entry('x/3', 'a', 'a.r')]);
  t.deepEqual(keysOf(index.streamProcs('x/')), ['x/2', 'x/1']);
});

test('namespaces: each once, in order, gone with the last pod group of the namespace', (t) => {
  const index = indexWith([entry('b/1', 'b', 'b.1'), entry('a/1', 'a', 'a.1'), entry('a/2', 'a', 'a.2'), entry('\u{1F680}/1', '\u{1F680}', 'x'), entry('\uE000/1', '\uE000', 'y')]);
  t.deepEqual(index.namespaces(), ['a', 'b', '\uE000', '\u{1F680}']);
  index.delete('a/1');
  t.deepEqual(index.namespaces(), ['a', 'b', '\uE000', '\u{1F680}']);
  index.delete('a/2');
  t.deepEqual(index.namespaces(), ['b', '\uE000', '\u{1F680}']);
  index.set(entry('a/3', 'a', 'a.3'));
  t.deepEqual(index.namespaces(), ['a', 'b', '\uE000', '\u{1F680}']);
});

test('replacing an entry moves it in every order and between namespaces', (t) => {
  const index = indexWith([entry('k/1', 'a', 'a.x', true), entry('k/2', 'b', 'b.y')]);
  const old = index.get('k/1')!;
  const replacement = entry('k/1', 'c', 'c.z');
  t.is(index.set(replacement), old);
  t.is(index.size, 2);
  t.is(index.get('k/1'), replacement);
  t.deepEqual(index.namespaces(), ['b', 'c']);
  t.deepEqual(keysOf(index.byName('')), ['k/2', 'k/1']);
  t.deepEqual(index.byName('').map((e) => e.pg.name), ['b.y', 'c.z']);
  t.deepEqual(keysOf(index.streamProcs('')), []);
  t.is(index.set(entry('k/3', 'b', 'b.w')), undefined);
  // The same namespace written again keeps it once, and it survives one of its two pod groups.
  index.set(entry('k/2', 'b', 'b.y2'));
  index.delete('k/3');
  t.deepEqual(index.namespaces(), ['b', 'c']);
});

test('delete returns the entry it removed; get, lookup and keys follow', (t) => {
  const index = indexWith([entry('a/1', 'a', 'a.1', true), entry('a/2', 'a', 'a.2')]);
  const removed = index.get('a/1');
  t.is(index.delete('a/1'), removed);
  t.is(index.delete('a/1'), undefined);
  t.is(index.delete('nosuch'), undefined);
  t.is(index.get('a/1'), undefined);
  t.is(index.size, 1);
  t.deepEqual(index.keys(), ['a/2']);
  t.deepEqual(keysOf(index.lookup('')), ['a/2']);
  t.deepEqual(keysOf(index.byName('')), ['a/2']);
  t.deepEqual(keysOf(index.streamProcs('')), []);
});

test('the comparators: name then key; namespace, then name, then key', (t) => {
  t.true(compareByName(entry('b', 'z', 'a.x'), entry('a', 'a', 'a.y')) < 0);
  t.true(compareByName(entry('a', 'z', 'n'), entry('b', 'a', 'n')) < 0);
  t.true(compareByName(entry('b', 'z', 'n'), entry('a', 'a', 'n')) > 0);
  t.is(compareByName(entry('a', 'z', 'n'), entry('a', 'z', 'n')), 0);
  t.true(compareByNamespace(entry('a', 'b', 'a'), entry('b', 'a', 'z')) > 0);
  t.true(compareByNamespace(entry('b', 'a', 'a'), entry('a', 'a', 'b')) < 0);
  t.true(compareByNamespace(entry('b', 'a', 'n'), entry('a', 'a', 'n')) > 0);
  t.true(compareByNamespace(entry('x', '\uE000', 'n'), entry('x', '\u{1F680}', 'n')) < 0);
});

test('the whole-cluster orders are kept, not sorted per request', (t) => {
  const index = indexWith([entry('b/1', 'b', 'a.s', true), entry('a/1', 'a', 'b.s', true)]);
  // The same array until the next change: byName("") and streamProcs("") sort nothing.
  t.is(index.byName(''), index.byName(''));
  t.is(index.streamProcs(''), index.streamProcs(''));
  t.deepEqual(keysOf(index.byName('')), ['b/1', 'a/1']);
  t.deepEqual(keysOf(index.streamProcs('')), ['a/1', 'b/1']);
});
