// Cache (agent/cache.ts): snapshots and deltas applied to the agent's copy of the hub state,
// each handed on as the ChangeSet the indexes consume; the revision never goes backwards.
import test from 'ava';
import { Cache, type ChangeSet } from '../agent/cache.js';

function recording() {
  const cache = new Cache();
  const seen: Array<{ changes: ChangeSet; revision: number }> = [];
  cache.onChange((changes, revision) => seen.push({ changes, revision }));
  return { cache, seen };
}

const entriesOf = (cache: Cache) => [...cache.entries].sort(([a], [b]) => (a < b ? -1 : 1));

test('a new cache holds nothing, from nowhere', (t) => {
  const cache = new Cache();
  t.deepEqual(
    { revision: cache.revision, hasState: cache.hasState, source: cache.source, hubStale: cache.hubStale, epoch: cache.epoch, size: cache.entries.size },
    { revision: 0, hasState: false, source: 'none', hubStale: false, epoch: '', size: 0 },
  );
});

test('the first snapshot is the state, and every entry is a put', (t) => {
  const { cache, seen } = recording();
  t.true(cache.replace(5, [['/a', '1'], ['/b', '2']], 'state-file'));
  t.deepEqual(entriesOf(cache), [['/a', '1'], ['/b', '2']]);
  t.is(cache.revision, 5);
  t.true(cache.hasState);
  t.is(cache.source, 'state-file');
  t.deepEqual(seen, [{ changes: { puts: [['/a', '1'], ['/b', '2']], dels: [] }, revision: 5 }]);
});

test('a later snapshot is handed on as its difference: changed and new keys put, missing keys deleted', (t) => {
  const { cache, seen } = recording();
  cache.replace(5, [['/a', '1'], ['/b', '2'], ['/c', '3']], 'state-file');
  seen.length = 0;
  t.true(cache.replace(9, [['/a', '1'], ['/b', '20'], ['/d', '4']], 'hub'));
  t.deepEqual(entriesOf(cache), [['/a', '1'], ['/b', '20'], ['/d', '4']]);
  t.is(cache.source, 'hub');
  t.deepEqual(seen, [{ changes: { puts: [['/b', '20'], ['/d', '4']], dels: ['/c'] }, revision: 9 }]);
});

test('a snapshot equal to the state changes the revision and the source, and tells no one', (t) => {
  const { cache, seen } = recording();
  cache.replace(5, [['/a', '1']], 'state-file');
  seen.length = 0;
  t.true(cache.replace(7, [['/a', '1']], 'hub'));
  t.is(cache.revision, 7);
  t.is(cache.source, 'hub');
  t.deepEqual(seen, []);
});

test('a snapshot at the revision held is taken (another hub, same state)', (t) => {
  const { cache, seen } = recording();
  cache.replace(5, [['/a', '1']], 'state-file');
  t.true(cache.replace(5, [['/a', '2']], 'hub'));
  t.is(cache.entries.get('/a'), '2');
  t.is(seen.length, 2);
});

test('an older snapshot is refused and changes nothing', (t) => {
  const { cache, seen } = recording();
  cache.replace(9, [['/a', '1']], 'hub');
  seen.length = 0;
  t.false(cache.replace(8, [['/a', '2']], 'state-file'));
  t.deepEqual(entriesOf(cache), [['/a', '1']]);
  t.is(cache.revision, 9);
  t.is(cache.source, 'hub');
  t.deepEqual(seen, []);
});

test('an older snapshot is taken when the hub says the held revision belongs to another history', (t) => {
  const { cache, seen } = recording();
  cache.replace(9, [['/a', '1'], ['/b', '2']], 'hub');
  seen.length = 0;
  t.true(cache.replace(3, [['/a', '1']], 'hub', true));
  t.is(cache.revision, 3);
  t.deepEqual(entriesOf(cache), [['/a', '1']]);
  t.deepEqual(seen, [{ changes: { puts: [], dels: ['/b'] }, revision: 3 }]);
});

test('without a state, any snapshot is taken, even one older than an advanced revision', (t) => {
  const { cache } = recording();
  cache.advance(10);
  t.true(cache.replace(4, [['/a', '1']], 'hub'));
  t.is(cache.revision, 4);
  t.true(cache.hasState);
});

test('a delta applies its deletes, then its puts, and is handed on as it came', (t) => {
  const { cache, seen } = recording();
  cache.replace(5, [['/a', '1'], ['/b', '2']], 'state-file');
  seen.length = 0;
  cache.applyDelta(6, [['/b', '3'], ['/c', '4']], ['/a', '/b']);
  t.deepEqual(entriesOf(cache), [['/b', '3'], ['/c', '4']]);
  t.is(cache.revision, 6);
  t.is(cache.source, 'hub');
  t.deepEqual(seen, [{ changes: { puts: [['/b', '3'], ['/c', '4']], dels: ['/a', '/b'] }, revision: 6 }]);
});

test('a delete-only delta is handed on too', (t) => {
  const { cache, seen } = recording();
  cache.replace(5, [['/a', '1']], 'hub');
  seen.length = 0;
  cache.applyDelta(6, [], ['/a']);
  t.is(cache.entries.size, 0);
  t.deepEqual(seen, [{ changes: { puts: [], dels: ['/a'] }, revision: 6 }]);
});

test('a delta at or before the held revision is ignored', (t) => {
  const { cache, seen } = recording();
  cache.replace(5, [['/a', '1']], 'state-file');
  seen.length = 0;
  cache.applyDelta(5, [['/a', '2']], []);
  cache.applyDelta(4, [], ['/a']);
  t.deepEqual(entriesOf(cache), [['/a', '1']]);
  t.is(cache.revision, 5);
  t.is(cache.source, 'state-file');
  t.deepEqual(seen, []);
});

test('an empty delta moves the revision and tells no one', (t) => {
  const { cache, seen } = recording();
  cache.replace(5, [['/a', '1']], 'hub');
  seen.length = 0;
  cache.applyDelta(6, [], []);
  t.is(cache.revision, 6);
  t.deepEqual(seen, []);
});

test('advance moves the revision forward only, touching nothing else', (t) => {
  const { cache, seen } = recording();
  cache.replace(5, [['/a', '1']], 'hub');
  seen.length = 0;
  cache.advance(8);
  t.is(cache.revision, 8);
  cache.advance(7);
  t.is(cache.revision, 8);
  t.deepEqual(entriesOf(cache), [['/a', '1']]);
  t.deepEqual(seen, []);
});

test('every listener hears every change, with the revision after it', (t) => {
  const cache = new Cache();
  const heard: string[] = [];
  cache.onChange((_, revision) => heard.push(`first ${revision}`));
  cache.onChange((changes, revision) => heard.push(`second ${revision} ${changes.puts.length}`));
  cache.replace(1, [['/a', '1']], 'hub');
  cache.applyDelta(2, [['/a', '2']], []);
  t.deepEqual(heard, ['first 1', 'second 1 1', 'first 2', 'second 2 1']);
});
