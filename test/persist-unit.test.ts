// The agent's state file (agent/persist.ts), unit by unit: the file follows the state save
// after save without disturbing any other msgpack encoder in the process; its bytes are
// msgpackr's; a failed or short write keeps the previous good file; a damaged or malformed file
// is refused; saves are debounced but never put off for long. No agent, no etcd: a persister
// over a Cache in a temp dir (the running agent's side is test/persist.test.ts).
import test from 'ava';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { mock } from 'node:test';
import { Packr } from 'msgpackr';
import { Cache } from '../agent/cache.js';
import { CHUNK_BYTES, decodeState, encodeChunks, encodeState, FS_IO, StatePersister, type SavedState } from '../agent/persist.js';
import { collectGarbage } from '../shared/gc.js';
import { decodeFrame, encodeFrame } from '../shared/protocol.js';
import { capturingLogger, configEntries, fileAround, fileState, fileWith, persisterIn, tempDir } from './helpers/persist.js';

const A: [string, string] = ['/lain/config/a', '1'];
const B: [string, string] = ['/lain/config/b', '2'];

// ---------------------------------------------------------------------------
// 1. The file follows the state; no other encoder is disturbed
// ---------------------------------------------------------------------------

test('many saves in a row: each file holds the live state, long and non-ASCII values included', async (t) => {
  const { cache, persister } = persisterIn(tempDir(t));
  cache.replace(1, configEntries(50, 10), 'hub');
  // Around msgpackr's 64-character switch to its native UTF-8 writer, str8/16/32 boundaries, multi-byte text.
  const values = ['a'.repeat(63), 'b'.repeat(64), 'c'.repeat(100), 'd'.repeat(255), 'e'.repeat(256), 'f'.repeat(70_000), 'ü→漢字🙂'.repeat(40), '', 'short'];
  let saves = 0;
  persister.onSaved = () => saves++;
  for (let i = 0; i < values.length * 2; i++) {
    cache.applyDelta(cache.revision + 1, [[`/lain/config/long${i % values.length}`, values[i % values.length]]], i % 3 === 0 ? ['/lain/config/k00000'] : []);
    await persister.saveNow();
    t.is(persister.lastSaveError, '', `save ${i + 1}`);
    const saved = fileState(persister.path);
    t.is(saved.rev, cache.revision, `save ${i + 1}`);
    t.deepEqual(new Map(saved.entries), cache.entries, `save ${i + 1}`);
  }
  t.is(saves, values.length * 2);
});

test('after a save, the protocol encoder still encodes long strings', async (t) => {
  const { cache, persister } = persisterIn(tempDir(t));
  cache.replace(7, [['/lain/config/domain', 'lain.local'], ['/lain/config/big', 'x'.repeat(200_000)]], 'hub');
  await persister.saveNow();
  t.is(persister.lastSaveError, '');
  const hello = { t: 'hello', v: 1, node: 'node-with-a-long-hostname.'.repeat(4), rev: 7 } as const;
  const delta = { t: 'delta', prev: 7, rev: 8, puts: [['/lain/config/long', 'y'.repeat(100)]], dels: [] } as { t: 'delta'; prev: number; rev: number; puts: Array<[string, string]>; dels: string[] };
  t.deepEqual(decodeFrame(encodeFrame(hello)), hello);
  t.deepEqual(decodeFrame(encodeFrame(delta)), delta);
  // And the other way round: frames packed in between do not change what the next save writes.
  cache.applyDelta(9, [['/lain/config/after', 'z'.repeat(100)]], []);
  await persister.saveNow();
  t.is(persister.lastSaveError, '');
  t.deepEqual(new Map(fileState(persister.path).entries), cache.entries);
  t.deepEqual(decodeFrame(encodeFrame(hello)), hello);
});

/** Garbage collected and Buffers' memory given back: a dead Buffer's memory goes in the second collection. */
function fullCollection(): void {
  collectGarbage();
  collectGarbage();
}

test.serial('saving a 10 MB state leaves no encoder buffer of that size behind', async (t) => {
  const { cache, persister } = persisterIn(tempDir(t));
  cache.replace(1, configEntries(10_000, 1000), 'hub');
  fullCollection();
  const before = process.memoryUsage().arrayBuffers;
  await persister.saveNow();
  t.is(persister.lastSaveError, '');
  t.true(statSync(persister.path).size > 10_000_000);
  fullCollection();
  const grown = process.memoryUsage().arrayBuffers - before;
  t.true(grown < 2 * 1024 * 1024, `${(grown / 1048576).toFixed(1)} MB of ArrayBuffers still held after the save`);
});

test('the state encoder writes the bytes msgpackr writes, so files of either encoder load, and round-trips', (t) => {
  // A Packr of its own here only packs; it never swaps the shared buffer.
  const msgpackr = new Packr({ useRecords: false });
  const cases: SavedState[] = [
    { rev: 5, savedAt: Date.now(), entries: [['/lain/config/a', 'x'.repeat(40)], ['k', 'ü'.repeat(300)], ['big', 'y'.repeat(70_000)]] },
    { rev: 2 ** 40, savedAt: 0, entries: Array.from({ length: 70_000 }, (_, i) => [`k${i}`, 'v']) },
    { rev: 300, savedAt: 65_536, entries: Array.from({ length: 20 }, (_, i) => [`k${i}`, '\ud800']) }, // a lone surrogate
    { rev: 127, savedAt: 128, entries: Array.from({ length: 15 }, (_, i) => ['k'.repeat(i * 20), 'a'.repeat(31 + i)]) },
    { rev: 255, savedAt: 256, entries: [] },
    { rev: 65_535, savedAt: 2 ** 32 - 1, entries: Array.from({ length: 65_536 }, () => ['', '']) },
    { rev: 2 ** 32, savedAt: 2 ** 53 - 1, entries: [['🙂'.repeat(16_384), 'x'.repeat(65_535)], ['é'.repeat(127), 'é'.repeat(128)]] },
    // The store identity the state came from (a reset is detected by it after a rebuild).
    { rev: 9, savedAt: 1, entries: [['a', 'b']], epoch: '14841639068965178418' },
  ];
  for (const [i, state] of cases.entries()) {
    const file = encodeState(state);
    t.true(file.subarray(12).equals(Buffer.from(msgpackr.pack(state))), `case ${i}`);
    const back = decodeState(file);
    t.is(back.rev, state.rev, `case ${i}`);
    t.is(back.savedAt, state.savedAt, `case ${i}`);
    t.is(back.epoch, state.epoch, `case ${i}`);
    // (JSON, not deepEqual: ava's diffing of 70 000 pairs takes seconds.)
    t.is(JSON.stringify(back.entries), JSON.stringify(state.entries.map(([k, v]) => [k, Buffer.from(v).toString()])), `case ${i}`);
  }
});

// ---------------------------------------------------------------------------
// 2. A short or failed write keeps the old file
// ---------------------------------------------------------------------------

test('a write that stops short is continued until the whole file is written', async (t) => {
  let calls = 0;
  // At most 1000 bytes per call, as write(2) may do on a nearly full disk.
  const write = (fd: number, buf: Uint8Array, offset: number, length: number, position: number) => { calls++; return writeSync(fd, buf, offset, Math.min(length, 1000), position); };
  const { cache, persister } = persisterIn(tempDir(t), { write });
  cache.replace(3, configEntries(200, 100), 'hub');
  await persister.saveNow();
  t.is(persister.lastSaveError, '');
  t.true(calls > 20, `the persister wrote through the given write function (${calls} calls)`);
  t.deepEqual(fileState(persister.path), { rev: 3, savedAt: fileState(persister.path).savedAt, entries: [...cache.entries] });
});

test('a failed write keeps the old file, removes the temp file, logs and counts the error', async (t) => {
  const dir = tempDir(t);
  let failing = false;
  const write = (fd: number, buf: Uint8Array, offset: number, length: number, position: number) => {
    if (!failing) return writeSync(fd, buf, offset, length, position);
    if (offset === 0) return writeSync(fd, buf, offset, Math.min(length, 512), position); // some of it fits…
    throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }); // …then nothing does
  };
  const { cache, persister, lines } = persisterIn(dir, { write });
  cache.replace(3, configEntries(100, 30), 'hub');
  await persister.saveNow();
  const good = readFileSync(persister.path);
  failing = true;
  cache.applyDelta(4, configEntries(300, 50, 'w'), []);
  await persister.saveNow();
  t.regex(persister.lastSaveError, /ENOSPC/);
  t.is(persister.saveErrors, 1);
  t.true(readFileSync(persister.path).equals(good), 'the old file is untouched');
  t.deepEqual(readdirSync(dir), ['state.bin'], 'no temp file left behind');
  t.true(lines.some((l) => l.msg === 'cannot write state file' && /ENOSPC/.test(l.err ?? '')));
  t.is(persisterIn(dir).persister.load()?.rev, 3, 'the old file still loads');
});

test('a write that writes nothing is an error, not an endless loop', async (t) => {
  const dir = tempDir(t);
  let failing = false;
  const write = (fd: number, buf: Uint8Array, offset: number, length: number, position: number) => (failing ? 0 : writeSync(fd, buf, offset, length, position));
  const { cache, persister } = persisterIn(dir, { write });
  cache.replace(3, configEntries(10, 10), 'hub');
  await persister.saveNow();
  failing = true;
  cache.applyDelta(4, [['/lain/config/x', 'y']], []);
  await persister.saveNow();
  t.regex(persister.lastSaveError, /short write/);
  t.is(persister.saveErrors, 1);
  t.is(fileState(persister.path).rev, 3);
  t.deepEqual(readdirSync(dir), ['state.bin']);
});

// ---------------------------------------------------------------------------
// 3. A damaged file is refused
// ---------------------------------------------------------------------------

test('a state file with one flipped byte is refused by its checksum', (t) => {
  const dir = tempDir(t);
  const whole = encodeState({ rev: 5, savedAt: Date.now(), entries: configEntries(20, 30) });
  const payloadStart = 12; // "LAINLET1" + CRC-32
  for (const at of [payloadStart, payloadStart + 1, payloadStart + 40, Math.floor(whole.length / 2), whole.length - 1, 8]) {
    for (const mask of [0x01, 0x80, 0xff]) {
      const damaged = Buffer.from(whole);
      damaged[at] ^= mask;
      writeFileSync(join(dir, 'state.bin'), damaged);
      const { persister, lines } = persisterIn(dir);
      t.is(persister.load(), null, `byte ${at} ^ ${mask}`);
      t.true(lines.some((l) => l.msg === 'state file is corrupt; ignoring it' && /checksum/.test(l.err ?? '')), `byte ${at} ^ ${mask}: ${JSON.stringify(lines)}`);
    }
  }
  writeFileSync(join(dir, 'state.bin'), whole);
  t.is(persisterIn(dir).persister.load()?.rev, 5, 'the undamaged file loads');
});


// ---------------------------------------------------------------------------
// 4. A file that is not a state file, or not one of ours, is refused
// ---------------------------------------------------------------------------

test('a file without the magic, or too short to hold it and the checksum, is not a state file', (t) => {
  const good = encodeState({ rev: 5, savedAt: 1, entries: [['a', 'b']] });
  const notOurs = Buffer.from(good);
  notOurs.write('LAINLET2');
  for (const bytes of [Buffer.alloc(0), Buffer.from('LAINLET1'), good.subarray(0, 11), notOurs, Buffer.from('{"rev":5}')]) {
    t.throws(() => decodeState(bytes), { message: 'not a lainlet state file (bad magic)' }, bytes.toString('hex'));
  }
  t.is(decodeState(good).rev, 5);
});

test('a payload with a good checksum but not the state\'s shape is refused, field by field', (t) => {
  const cases: Array<[unknown, string]> = [
    [null, 'state payload malformed'],
    [{ savedAt: 1, entries: [] }, 'state payload malformed'],
    [{ rev: '5', savedAt: 1, entries: [] }, 'state payload malformed'],
    [{ rev: 5, savedAt: 1 }, 'state payload malformed'],
    [{ rev: 5, savedAt: 1, entries: { a: 'b' } }, 'state payload malformed'],
    [{ rev: 5, savedAt: 1, entries: ['ab'] }, 'state entry malformed'],
    [{ rev: 5, savedAt: 1, entries: [['a', 'b'], [1, 'b']] }, 'state entry malformed'],
    [{ rev: 5, savedAt: 1, entries: [['a', 2]] }, 'state entry malformed'],
    [{ rev: 5, savedAt: 1, entries: [['a', 'b']], epoch: 7 }, 'state epoch malformed'],
    // The hub list (agents learn it from the hubs and keep it for their next start).
    [{ rev: 5, savedAt: 1, entries: [], hubs: 'ws://h1' }, 'state hubs malformed'],
    [{ rev: 5, savedAt: 1, entries: [], hubs: { 0: 'ws://h1' } }, 'state hubs malformed'],
    [{ rev: 5, savedAt: 1, entries: [], hubs: [1] }, 'state hubs malformed'],
    [{ rev: 5, savedAt: 1, entries: [], hubs: ['ws://h1', null] }, 'state hubs malformed'],
  ];
  for (const [payload, message] of cases) t.throws(() => decodeState(fileWith(payload)), { message }, JSON.stringify(payload));
  // The same shapes, well formed: with and without an epoch (files from before epochs have none).
  t.deepEqual(decodeState(fileWith({ rev: 5, savedAt: 1, entries: [['a', 'b']] })), { rev: 5, savedAt: 1, entries: [['a', 'b']] });
  t.is(decodeState(fileWith({ rev: 5, savedAt: 1, entries: [], epoch: 'e1' })).epoch, 'e1');
  t.deepEqual(decodeState(fileWith({ rev: 5, savedAt: 1, entries: [], hubs: ['ws://h1', 'ws://h2'] })).hubs, ['ws://h1', 'ws://h2']);
  t.deepEqual(decodeState(fileWith({ rev: 5, savedAt: 1, entries: [], hubs: [] })).hubs, []);
});

test('the chunked encoder writes msgpackr\'s bytes whatever falls on a chunk\'s edge: entries, the epoch and the hub list, longer than a chunk or not', (t) => {
  // Small chunks, so that every place of the file lands on an edge somewhere in the sweep: the
  // room each piece needs is reckoned before it is written (too little would overrun the chunk
  // or cut a string short; the bytes would differ from msgpackr's).
  const msgpackr = new Packr({ useRecords: false });
  const hubLists = [[], ['ws://h1:9000'], Array.from({ length: 3 }, (_, i) => `wss://hub-${i}.example:443`), Array.from({ length: 12 }, (_, i) => `ws://10.0.0.${i}:9000`)];
  let cases = 0;
  for (const chunkBytes of [64, 65, 80, 97, 128]) {
    for (const epoch of [undefined, 'e', '14841639068965178418', 'x'.repeat(70)]) {
      for (const hubs of hubLists) {
        for (const n of [0, 1, 3, 7]) {
          const entries: Array<[string, string]> = Array.from({ length: n }, (_, i) => [`/lain/k${i}`, 'v'.repeat(i * 9)]);
          const state = { rev: 7, savedAt: 9, entries, ...(epoch ? { epoch } : {}), ...(hubs.length ? { hubs } : {}) };
          const chunks: Buffer[] = [];
          const steps = encodeChunks(state, chunkBytes);
          let r = steps.next();
          for (; !r.done; r = steps.next()) chunks.push(Buffer.from(r.value));
          const file = Buffer.concat(chunks);
          file.writeUInt32BE(r.value, 8);
          const want = Buffer.from(msgpackr.pack(state));
          const what = `chunk ${chunkBytes}, epoch ${epoch?.length ?? '-'}, ${hubs.length} hubs, ${n} entries`;
          if (!file.subarray(12).equals(want)) { t.fail(`${what}: not msgpackr's bytes`); return; }
          t.deepEqual(decodeState(file).hubs, hubs.length ? hubs : undefined, what);
          cases++;
        }
      }
    }
  }
  t.is(cases, 5 * 4 * 4 * 4);
});

test('load: no file is no state and no complaint; an unreadable one is logged and ignored; a good one sets the saved revision', (t) => {
  const dir = tempDir(t);
  const missing = persisterIn(dir);
  t.is(missing.persister.savedRevision, -1);
  t.is(missing.persister.load(), null);
  t.deepEqual(missing.lines, [], 'a first start has no file: nothing to say');

  mkdirSync(join(dir, 'state.bin')); // EISDIR: there, but not readable as a file
  const unreadable = persisterIn(dir);
  t.is(unreadable.persister.load(), null);
  t.is(unreadable.lines.length, 1);
  t.like(unreadable.lines[0], { msg: 'cannot read state file; ignoring it', path: join(dir, 'state.bin') });
  t.regex(unreadable.lines[0].err ?? '', /EISDIR/);
  rmSync(join(dir, 'state.bin'), { recursive: true });

  writeFileSync(join(dir, 'state.bin'), fileWith({ rev: 5, savedAt: 1, entries: [['a', 'b']], epoch: 7 }));
  const corrupt = persisterIn(dir);
  t.is(corrupt.persister.load(), null);
  t.like(corrupt.lines[0], { msg: 'state file is corrupt; ignoring it', err: 'state epoch malformed', path: join(dir, 'state.bin') });
  t.is(corrupt.persister.savedRevision, -1);

  writeFileSync(join(dir, 'state.bin'), encodeState({ rev: 42, savedAt: 7, entries: [['a', 'b']], epoch: 'e1' }));
  const good = persisterIn(dir);
  t.deepEqual(good.persister.load(), { rev: 42, savedAt: 7, entries: [['a', 'b']], epoch: 'e1' });
  t.is(good.persister.savedRevision, 42);
  t.deepEqual(good.lines, []);
});

test('revisions and times that are not non-negative safe integers cannot be encoded', (t) => {
  for (const rev of [-1, 1.5, NaN, 2 ** 53]) {
    t.throws(() => encodeState({ rev, savedAt: 0, entries: [] }), { message: `state file: ${rev} is not a revision or a time` });
  }
  t.throws(() => encodeState({ rev: 1, savedAt: -5, entries: [] }), { message: 'state file: -5 is not a revision or a time' });
});

test('entries that change between the counting walk and the writing walk are refused, not written short', (t) => {
  let walks = 0;
  const shrinking: Iterable<readonly [string, string]> = {
    *[Symbol.iterator]() { if (walks++ === 0) yield ['a', 'b']; },
  };
  t.throws(() => encodeState({ rev: 1, savedAt: 0, entries: shrinking }), { message: /^state file: \d+ entries written, \d+ counted$/ });
});

test('entry counts and string lengths at each msgpack size boundary round-trip as msgpackr writes them', (t) => {
  const msgpackr = new Packr({ useRecords: false });
  for (const count of [15, 16, 65_535]) {
    const state: SavedState = { rev: 1, savedAt: 2, entries: Array.from({ length: count }, (_, i) => [`k${i}`, '']) };
    const file = encodeState(state);
    t.true(file.subarray(12).equals(Buffer.from(msgpackr.pack(state))), `${count} entries`);
    t.is(decodeState(file).entries.length, count);
  }
  for (const length of [31, 32, 255, 256, 65_535, 65_536]) {
    const state: SavedState = { rev: 1, savedAt: 2, entries: [['k', 'x'.repeat(length)]], epoch: 'y'.repeat(length) };
    const file = encodeState(state);
    t.true(file.subarray(12).equals(Buffer.from(msgpackr.pack(state))), `${length} bytes`);
    t.is(decodeState(file).epoch?.length, length);
  }
});

// ---------------------------------------------------------------------------
// 5. What a save writes, and when it writes nothing
// ---------------------------------------------------------------------------

test('a save writes the cache\'s state, its epoch if it has one, readable by its owner only, creating the state dir', async (t) => {
  const dir = join(tempDir(t), 'nested', 'state');
  const { cache, persister } = persisterIn(dir);
  t.is(persister.path, join(dir, 'state.bin'));
  cache.replace(3, [A, B], 'hub');
  cache.epoch = 'e1';
  const before = Date.now();
  await persister.saveNow();
  t.is(persister.lastSaveError, '');
  const saved = fileState(persister.path);
  t.like(saved, { rev: 3, entries: [A, B], epoch: 'e1' });
  t.true(saved.savedAt >= before && saved.savedAt <= Date.now());
  t.is(persister.savedRevision, 3);
  t.true(persister.lastSavedAt >= before);
  t.is(statSync(persister.path).mode & 0o777, 0o600, 'the state holds secrets (config)');
  t.deepEqual(readdirSync(dir), ['state.bin'], 'the temp file was renamed');

  cache.epoch = '';
  cache.applyDelta(4, [], [A[0]]);
  await persister.saveNow();
  t.deepEqual(fileState(persister.path), { rev: 4, savedAt: fileState(persister.path).savedAt, entries: [B] }, 'no epoch: none in the file');
});

test('nothing is written without a state, nor again for a revision already on disk (also one just loaded)', async (t) => {
  const dir = tempDir(t);
  const { cache, persister } = persisterIn(dir);
  let saves = 0;
  persister.onSaved = () => saves++;
  await persister.saveNow();
  t.deepEqual(readdirSync(dir), [], 'no state, no file');
  t.is(saves, 0);
  cache.replace(3, [A], 'hub');
  await persister.saveNow();
  await persister.saveNow();
  t.is(saves, 1);

  const restarted = persisterIn(dir);
  const loaded = restarted.persister.load()!;
  restarted.cache.replace(loaded.rev, loaded.entries, 'state-file');
  let rewrites = 0;
  restarted.persister.onSaved = () => rewrites++;
  await restarted.persister.saveNow();
  t.is(rewrites, 0, 'the file already holds revision 3');
});

test('the hub list is kept in the file: a change of it alone is saved, and a save with nothing new writes nothing', async (t) => {
  const dir = tempDir(t);
  const { cache, persister } = persisterIn(dir);
  let saves = 0;
  persister.onSaved = () => saves++;
  cache.replace(3, [A], 'hub');
  cache.hubs = ['ws://h1:9000', 'ws://h2:9000'];
  await persister.saveNow();
  t.deepEqual(fileState(persister.path).hubs, ['ws://h1:9000', 'ws://h2:9000']);
  await persister.saveNow();
  t.is(saves, 1, 'same revision, same hubs: no second write');
  cache.hubs = ['ws://h1:9000', 'ws://h3:9000'];
  await persister.saveNow();
  t.is(saves, 2, 'the hub list alone changed: saved');
  t.deepEqual(fileState(persister.path).hubs, ['ws://h1:9000', 'ws://h3:9000']);
  t.is(fileState(persister.path).rev, 3);

  // A file loaded with its hub list is not written again for them.
  const restarted = persisterIn(dir);
  const loaded = restarted.persister.load()!;
  restarted.cache.replace(loaded.rev, loaded.entries, 'state-file');
  restarted.cache.hubs = [...loaded.hubs!];
  let rewrites = 0;
  restarted.persister.onSaved = () => rewrites++;
  await restarted.persister.saveNow();
  t.is(rewrites, 0, 'the file already holds revision 3 and these hubs');
});

test('changes made while the cache is being copied are in the file: a new key, a changed one, a deleted one and one put then deleted', async (t) => {
  // sliceMs 0: the copy lets the event loop turn at every step, so the changes below land in
  // the middle of it (2,000 entries: several steps).
  const { cache, persister } = persisterIn(tempDir(t), { sliceMs: 0 });
  cache.replace(1, configEntries(2000, 10), 'hub');
  const saving = persister.saveNow();
  await new Promise<void>((resolve) => setImmediate(resolve));
  cache.applyDelta(2, [['/lain/config/new', 'n'], ['/lain/config/k00007', 'changed']], ['/lain/config/k01999']);
  cache.applyDelta(3, [['/lain/config/gone', 'g']], []);
  cache.applyDelta(4, [], ['/lain/config/gone', '/lain/config/k00000']);
  await saving;
  t.is(persister.lastSaveError, '');
  const file = fileState(persister.path);
  t.is(file.rev, 4, 'the file is at the revision the cache reached during the copy');
  const sorted = (entries: Iterable<readonly [string, string]>) => JSON.stringify([...entries].sort(([a], [b]) => (a < b ? -1 : 1)));
  t.is(sorted(file.entries), sorted(cache.entries)); // (the changes made meanwhile come after the copied entries)
  t.is(file.entries.length, 2000 - 2 + 1);
});

test('a save after a failed one clears the error; the count of failures stays', async (t) => {
  const dir = tempDir(t);
  let failing = true;
  const write = (fd: number, buf: Uint8Array, offset: number, length: number, position: number) => {
    if (failing) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
    return writeSync(fd, buf, offset, length, position);
  };
  const { cache, persister, lines } = persisterIn(dir, { write });
  cache.replace(3, [A], 'hub');
  await persister.saveNow();
  t.is(persister.lastSaveError, 'EIO: i/o error, write');
  t.is(persister.savedRevision, -1);
  t.is(persister.lastSavedAt, 0);
  t.like(lines[0], { level: 50, msg: 'cannot write state file', path: join(dir, 'state.bin'), err: 'EIO: i/o error, write', errors: 1 });
  failing = false;
  await persister.saveNow();
  t.is(persister.lastSaveError, '');
  t.is(persister.saveErrors, 1);
  t.is(persister.savedRevision, 3);
  t.is(fileState(persister.path).rev, 3);
});

// ---------------------------------------------------------------------------
// 6. Saves are debounced, but never put off for long (a fake clock: time is the subject)
// ---------------------------------------------------------------------------

/** Runs `fn` with setTimeout and Date on a fake clock starting at 1 000 000 ms (a save's own work is not timed by them). */
async function withFakeClock(fn: (tick: (ms: number) => void) => Promise<void>): Promise<void> {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  try {
    await fn((ms) => mock.timers.tick(ms));
  } finally {
    mock.timers.reset();
  }
}

/** A persister with real defaults (or `opts`), and a count of its saves. */
function debounced(t: { teardown(fn: () => void): void }, opts: ConstructorParameters<typeof StatePersister>[3] = {}) {
  const cache = new Cache();
  const persister = new StatePersister(tempDir(t), cache, capturingLogger().log, opts);
  const saved = { count: 0 };
  persister.onSaved = () => saved.count++;
  let rev = 0;
  const change = () => { cache.replace(++rev, [[A[0], String(rev)]], 'hub'); persister.changed(); };
  return { persister, saved, change };
}

test.serial('a change is saved once it has been quiet for the debounce time (1 s by default)', async (t) => {
  await withFakeClock(async (tick) => {
    const { persister, saved, change } = debounced(t);
    change();
    tick(999);
    t.false(persister.saving);
    tick(1);
    t.true(persister.saving, 'the save starts when the timer fires');
    await persister.idle();
    t.is(saved.count, 1);
    t.is(fileState(persister.path).rev, 1);
    change();
    tick(600);
    change(); // a burst: one save for both
    tick(999);
    t.false(persister.saving);
    t.is(saved.count, 1);
    tick(1);
    await persister.idle();
    t.is(saved.count, 2);
    t.is(fileState(persister.path).rev, 3);
  });
});

test.serial('under continuous churn a save comes at the latest after the maximum delay (5 s by default) from the first change', async (t) => {
  await withFakeClock(async (tick) => {
    const { persister, saved, change } = debounced(t);
    for (let i = 0; i < 9; i++) { change(); tick(500); } // 4.5 s of changes, never quiet for 1 s
    t.false(persister.saving);
    change(); // at 4.5 s: due in 0.5 s, not 1 s
    tick(499);
    t.false(persister.saving);
    tick(1);
    await persister.idle();
    t.is(saved.count, 1);
    t.is(fileState(persister.path).rev, 10);
    // The clock starts again from the next change.
    change();
    tick(999);
    t.false(persister.saving);
    tick(1);
    await persister.idle();
    t.is(saved.count, 2);
  });
});

test.serial('the same rule with other delays; saveNow takes a pending save with it', async (t) => {
  await withFakeClock(async (tick) => {
    const { persister, saved, change } = debounced(t, { debounceMs: 100, maxDelayMs: 300 });
    change();
    tick(99);
    change();
    tick(99);
    change();
    tick(99);
    t.false(persister.saving);
    change(); // at 297 ms: due at 300
    tick(2);
    t.false(persister.saving);
    tick(1);
    await persister.idle();
    t.is(saved.count, 1);
    change();
    await persister.saveNow();
    t.is(saved.count, 2);
    tick(1000);
    t.false(persister.saving, 'the pending timer went with the save');
    t.is(saved.count, 2);
  });
});

test('a persister that has not saved yet reports no error, no save and no failures (what /debug shows at start)', (t) => {
  const { persister } = persisterIn(tempDir(t));
  t.is(persister.lastSaveError, '');
  t.is(persister.lastSavedAt, 0);
  t.is(persister.saveErrors, 0);
});

// ---------------------------------------------------------------------------
// 7. A save does not hold the event loop: sliced copy, encoding a chunk at a time, file calls off the loop
// ---------------------------------------------------------------------------

test('a save of a 10 MB state is encoded and written a chunk at a time, the event loop turning between chunks: no buffer of the state\'s size is made', async (t) => {
  let turns = 0;
  const writes: Array<{ length: number; turn: number }> = [];
  const write = (fd: number, buf: Uint8Array, offset: number, length: number, position: number) => {
    writes.push({ length, turn: turns });
    return FS_IO.write(fd, buf, offset, length, position);
  };
  const { cache, persister } = persisterIn(tempDir(t), { write });
  cache.replace(1, configEntries(10_000, 1000), 'hub');
  const saving = persister.saveNow();
  let settled = false;
  void saving.finally(() => { settled = true; });
  while (!settled) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    turns++;
  }
  t.is(persister.lastSaveError, '');
  t.deepEqual(fileState(persister.path).entries, [...cache.entries]);
  // Encoded in one go, the file would be one 10 MB buffer and one write.
  t.true(writes.length >= 10_000_000 / CHUNK_BYTES, `${writes.length} writes`);
  t.true(writes.every((w) => w.length <= CHUNK_BYTES), `the largest write: ${Math.max(...writes.map((w) => w.length))} bytes`);
  t.true(writes.every((w, i) => i === 0 || w.turn > writes[i - 1].turn), 'the event loop turned between every two writes');
});

test('while the file is being synced the cache changes; the file holds the state as copied, the next save the rest', async (t) => {
  let releaseFsync!: () => void;
  const fsyncing = new Promise<void>((resolve) => { releaseFsync = resolve; });
  let fsyncCalled!: () => void;
  const fsyncReached = new Promise<void>((resolve) => { fsyncCalled = resolve; });
  let fsyncs = 0;
  const io = {
    fsync: async (fd: number) => {
      if (fsyncs++ === 0) { fsyncCalled(); await fsyncing; }
      await FS_IO.fsync(fd);
    },
  };
  const { cache, persister } = persisterIn(tempDir(t), { io });
  cache.replace(3, [A], 'hub');
  const first = persister.saveNow();
  await fsyncReached;
  t.true(persister.saving);
  cache.applyDelta(4, [B], []);
  const second = persister.saveNow();
  t.not(second, first);
  t.is(persister.saveNow(), second, 'one next save for every caller while one runs');
  releaseFsync();
  await first;
  t.deepEqual(fileState(persister.path).entries, [A], 'the first save: the state it copied');
  await second;
  t.like(fileState(persister.path), { rev: 4, entries: [A, B] });
  t.is(fsyncs, 4, 'file and directory, twice');
  await persister.idle();
  t.false(persister.saving);
});

test('saves never overlap: the temp file is written by one save at a time', async (t) => {
  let open = 0;
  let maxOpen = 0;
  const io = {
    open: async (path: string, flags: string, mode?: number) => {
      const fd = await FS_IO.open(path, flags, mode);
      if (path.endsWith('.tmp')) maxOpen = Math.max(maxOpen, ++open);
      return fd;
    },
    rename: async (from: string, to: string) => { open--; await FS_IO.rename(from, to); },
  };
  const { cache, persister } = persisterIn(tempDir(t), { io });
  const saves: Array<Promise<void>> = [];
  for (let rev = 1; rev <= 6; rev++) {
    cache.replace(rev, configEntries(2000, 20, String(rev)), 'hub');
    saves.push(persister.saveNow());
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await Promise.all(saves);
  t.is(maxOpen, 1);
  t.is(fileState(persister.path).rev, 6, 'the last state is on disk once every save has resolved');
});

test('a state that changes while a save copies it is saved as it was at one revision: changed, added, deleted and re-added keys', async (t) => {
  // Copied a step (512 entries) per turn of the event loop: the changes below land in the middle.
  const { cache, persister } = persisterIn(tempDir(t), { sliceMs: 0 });
  const start = configEntries(5000, 10);
  cache.replace(1, start, 'hub');
  const states = new Map<number, string>([[1, JSON.stringify([...cache.entries].sort())]]);
  const deltas: Array<[Array<[string, string]>, string[]]> = [
    [[[start[10][0], 'early-changed'], [start[4990][0], 'late-changed'], ['/lain/config/new1', 'n1']], [start[20][0], start[4980][0]]],
    [[[start[20][0], 're-added'], [start[2500][0], 'middle']], [start[11][0]]],
    [[[start[4990][0], 'late-again']], ['/lain/config/new1']],
    [[['/lain/config/new2', 'n2']], [start[0][0], start[4999][0]]],
  ];
  const saving = persister.saveNow();
  for (const [puts, dels] of deltas) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    cache.applyDelta(cache.revision + 1, puts, dels);
    states.set(cache.revision, JSON.stringify([...cache.entries].sort()));
  }
  await saving;
  const saved = fileState(persister.path);
  t.true(saved.rev > 1, `the copy ended after some of the changes (at revision ${saved.rev})`);
  t.is(JSON.stringify([...saved.entries].sort()), states.get(saved.rev) ?? 'none', `the file is the state at revision ${saved.rev}`);
  t.is(saved.entries.length, new Set(saved.entries.map(([k]) => k)).size, 'no key twice');
});

test('the buffer of a state file read is not held afterwards, whether it decoded or not (msgpackr keeps the last buffer it read)', async (t) => {
  // A WeakRef to each file's ArrayBuffer: collected once nothing holds it. The decoded entries
  // are kept alive meanwhile, as the cache keeps them.
  const big = { rev: 3, savedAt: 1, entries: configEntries(2000, 1000) };
  // A good CRC around a payload that does not end where its one value does: unpack throws.
  const malformed = () => fileAround(Buffer.concat([Buffer.from([0x90, 0x90]), Buffer.alloc(2_000_000)]));
  // Each alone: a file read after another replaces it in msgpackr's state.
  for (const [what, make] of [['the file that decoded', () => encodeState(big)], ['the file that did not', malformed]] as const) {
    let ref: WeakRef<ArrayBufferLike> | undefined;
    let entries: unknown[] = [];
    (() => {
      const bytes = make();
      ref = new WeakRef(bytes.buffer);
      try { entries = decodeState(bytes).entries; } catch (err) { t.regex((err as Error).message, /end of buffer not reached/, what); }
    })();
    // A WeakRef holds its target until the end of the current job: collect in a later one.
    await new Promise<void>((resolve) => setImmediate(resolve));
    collectGarbage();
    t.is(ref?.deref(), undefined, what);
    t.is(entries.length, what === 'the file that decoded' ? 2000 : 0, what);
  }
});
