// The frame ring (hub/ring.ts): one writer, readers that copy and check. Wrap-around, a reader
// a whole ring behind, a record overwritten while it was being read, and a writer in another
// thread racing a reader over a tiny ring: a read is either the exact record or an overrun.
import test from 'ava';
import { Worker } from 'node:worker_threads';
import { RECORD_DELTA, RingReader, RingWriter, type RingRecord } from '../hub/ring.js';

/** A record whose bytes say which record they are: length and content follow from `seq`. */
const bodyOf = (seq: number) => Buffer.alloc(1 + (seq * 7) % 13, seq & 0xff);

function pair(slots: number, bytes: number) {
  const writer = new RingWriter({ slots, bytes });
  const reader = new RingReader(writer.sab, { slots, bytes });
  return { writer, reader };
}

test('records come out as written, in order, across many wraps of the slots and the bytes', (t) => {
  const { writer, reader } = pair(4, 64);
  let cursor = 0;
  for (let seq = 0; seq < 500; seq++) {
    t.is(writer.append(RECORD_DELTA, seq * 10, seq * 10 + 5, bodyOf(seq)), seq);
    // Read every other step: the reader is at most two records behind.
    if (seq % 2 === 1) {
      for (; cursor <= seq; cursor++) {
        const r = reader.read(cursor) as RingRecord;
        t.like(r, { seq: cursor, kind: RECORD_DELTA, prev: cursor * 10, rev: cursor * 10 + 5 });
        t.deepEqual(r.bytes, bodyOf(cursor));
      }
    }
  }
  t.is(reader.written(), 500);
  t.is(reader.read(500), 'pending', 'not written yet');
});

test('a record is never split at the end of the byte ring: it starts again at the beginning', (t) => {
  const { writer, reader } = pair(8, 10);
  writer.append(RECORD_DELTA, 0, 1, Buffer.from('abcdef'));
  writer.append(RECORD_DELTA, 1, 2, Buffer.from('ghijkl')); // would straddle the end
  t.deepEqual((reader.read(1) as RingRecord).bytes, Buffer.from('ghijkl'));
  t.is(reader.read(0), 'overrun', 'the first record\'s bytes were reused');
  t.throws(() => writer.append(RECORD_DELTA, 2, 3, Buffer.alloc(11)), { message: /11 bytes does not fit a ring of 10 bytes/ });
});

test('a reader a whole ring behind sees an overrun from the sequence numbers, never an older record', (t) => {
  const { writer, reader } = pair(4, 1024);
  for (let seq = 0; seq < 9; seq++) writer.append(RECORD_DELTA, seq, seq + 1, bodyOf(seq));
  for (let seq = 0; seq < 5; seq++) t.is(reader.meta(seq), 'overrun', `record ${seq} is gone`);
  for (let seq = 5; seq < 9; seq++) t.deepEqual((reader.read(seq) as RingRecord).bytes, bodyOf(seq));
});

test('bytes overwritten after the reader took the metadata are reported, not handed out', (t) => {
  // Enough slots, few bytes: the bytes wrap long before the slots do.
  const { writer, reader } = pair(64, 32);
  writer.append(RECORD_DELTA, 0, 1, Buffer.alloc(16, 1));
  const meta = reader.meta(0);
  if (typeof meta === 'string') { t.fail(meta); return; }
  writer.append(RECORD_DELTA, 1, 2, Buffer.alloc(16, 2));
  t.deepEqual(reader.bytes(meta), Buffer.alloc(16, 1), 'still intact: 32 bytes hold both');
  writer.append(RECORD_DELTA, 2, 3, Buffer.alloc(16, 3)); // over record 0's bytes
  t.is(reader.bytes(meta), 'overrun');
  t.is(reader.read(0), 'overrun');
  t.deepEqual((reader.read(2) as RingRecord).bytes, Buffer.alloc(16, 3));
});

test('a slot rewritten after the reader took its metadata is reported', (t) => {
  const { writer, reader } = pair(2, 1 << 16);
  writer.append(RECORD_DELTA, 0, 1, Buffer.from('a'));
  const meta = reader.meta(0);
  if (typeof meta === 'string') { t.fail(meta); return; }
  writer.append(RECORD_DELTA, 1, 2, Buffer.from('b'));
  writer.append(RECORD_DELTA, 2, 3, Buffer.from('c')); // slot 0 again
  t.is(reader.bytes(meta), 'overrun');
});

test('waitAfter resolves once the writer appends', async (t) => {
  const { writer, reader } = pair(4, 64);
  const seen = reader.wakeValue();
  let woke = false;
  const waiting = reader.waitAfter(seen).then(() => { woke = true; });
  await new Promise((r) => setImmediate(r));
  t.false(woke, 'nothing appended yet');
  writer.append(RECORD_DELTA, 0, 1, Buffer.from('x'));
  await waiting;
  t.true(woke);
  await reader.waitAfter(seen); // already moved on: resolves at once
});

test('a writer thread racing a reader over a tiny ring: every read is the exact record or an overrun, never torn', async (t) => {
  t.timeout(60_000);
  const slots = 4, bytes = 40, total = 200_000;
  // The writer runs in its own thread, writing as fast as it can; the reader here reads the
  // newest records as the writer passes over them.
  const ringUrl = new URL('../hub/ring.ts', import.meta.url).href;
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    import('tsx/esm/api').then((tsx) => { tsx.register(); return import(workerData.ringUrl); }).then(({ RingWriter, RECORD_DELTA }) => {
      const w = new RingWriter({ slots: ${slots}, bytes: ${bytes} });
      parentPort.postMessage(w.sab);
      parentPort.once('message', () => {
        for (let seq = 0; seq < ${total}; seq++) w.append(RECORD_DELTA, seq, seq + 1, Buffer.alloc(1 + (seq * 7) % 13, seq & 0xff));
        parentPort.postMessage('done');
      });
    });`, { eval: true, workerData: { ringUrl } });
  const sab = await new Promise<SharedArrayBuffer>((resolve) => worker.once('message', resolve));
  const reader = new RingReader(sab, { slots, bytes });
  let done = false;
  worker.once('message', () => { done = true; });
  worker.postMessage('go');
  let exact = 0, overruns = 0, torn = 0;
  while (!done || reader.written() < total) {
    const newest = reader.written() - 1;
    if (newest < 0) { await new Promise((r) => setImmediate(r)); continue; }
    for (let seq = Math.max(0, newest - slots); seq <= newest; seq++) {
      const r = reader.read(seq);
      if (r === 'overrun') { overruns++; continue; }
      if (r === 'pending') continue;
      if (r.prev === seq && r.rev === seq + 1 && r.bytes.equals(bodyOf(seq))) exact++; else torn++;
    }
    if (exact + overruns > 0 && (exact + overruns) % 4096 === 0) await new Promise((r) => setImmediate(r));
    if (done && reader.written() >= total) break;
  }
  await worker.terminate();
  t.is(torn, 0, 'no read handed out a record other than the one asked for');
  t.true(exact > 0, `some reads succeeded (${exact})`);
  t.true(overruns > 0, `and some found their record overwritten (${overruns}): the race was run`);
});
