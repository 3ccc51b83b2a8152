// The frame ring: encoded frames in a SharedArrayBuffer, written once by the hub's main thread
// and read by every worker thread (DESIGN.md, "Scaling the hub across cores"). No copy per
// agent, no re-encoding per worker, no postMessage per frame: a worker copies each record out
// once, checks it was not overwritten while it copied, and fans it out to its agents.
//
// One writer, any number of readers, no locks. Layout (all offsets in bytes):
//
//   [0, 8)        wake: Int32 — bumped and Atomics.notify'd after every append (readers wait on it)
//   [8, 16)       writeSeq: BigInt64 — records published; record k is readable once writeSeq > k
//   [16, 24)      reserved: BigInt64 — absolute byte position up to which data may be in the
//                 middle of being written (see invariant 3)
//   [24, 32)      floor: BigInt64 — a revision set by the writer's owner: the oldest revision
//                 readers may serve from the ring (the hub's history reaches no further back)
//   [32, 32 + 8S)             slotSeq: BigInt64 per slot — k + 1 while the slot holds record k,
//                             0 while it is being (re)written
//   [.., + 40S)               slot meta: Float64 × 5 per slot — kind, prev, rev, pos, length
//   [.., + B)                 data: the frames' bytes, a byte ring of B bytes
//
// Invariants (the writer keeps them; every reader relies on them):
//  1. Record k lives in slot k mod S. The writer stores slotSeq = 0 before it touches the
//     slot's meta and bytes, and slotSeq = k + 1 after; then writeSeq = k + 1. Readers load
//     slotSeq before and after reading: equal to k + 1 both times means the meta they read is
//     record k's.
//  2. Record k's bytes are data[pos mod B, pos mod B + length), where pos is an absolute byte
//     position that only grows (a record never wraps: when it would not fit before the end of
//     the buffer, pos skips to the next multiple of B).
//  3. Before writing bytes ending at absolute position e, the writer stores reserved = e. Bytes
//     at absolute position p are intact as long as reserved - p <= B: a reader that loads
//     reserved AFTER copying and finds this true copied untorn bytes. Otherwise the record was
//     (maybe) overwritten while it was read, and the reader reports an overrun — it never hands
//     out the torn copy.
//  4. Records are published in sequence order; a reader more than S records behind writeSeq has
//     lost records it never read (an overrun), which it sees from the sequence numbers alone.
//
// The JS memory model makes Atomics operations sequentially consistent and orders the plain
// reads and writes around them (a plain write before an atomic store is seen by a thread whose
// atomic load sees that store), which is all the seqlock above needs.

export const RECORD_DELTA = 1;
export const RECORD_STATE = 2;

export interface RingRecord {
  seq: number;
  kind: number;
  prev: number;
  rev: number;
  /** A copy of the record's bytes, taken by this reader (never a view on the shared buffer). */
  bytes: Buffer;
}

/** A record's metadata, without its bytes. */
export interface RingMeta { seq: number; kind: number; prev: number; rev: number; pos: number; length: number }

const HEADER_BYTES = 32;
const META_FIELDS = 5;

export interface RingSize {
  /** Records the ring holds (S). */
  slots: number;
  /** Bytes of frame data it holds (B); the largest record it takes. */
  bytes: number;
}

/** Shared views on one ring buffer; both ends build them from the same SharedArrayBuffer. */
class RingViews {
  readonly wake: Int32Array;
  readonly header: BigInt64Array;
  readonly slotSeq: BigInt64Array;
  readonly meta: Float64Array;
  readonly data: Uint8Array;
  readonly slots: number;
  readonly size: number;

  constructor(readonly sab: SharedArrayBuffer, size: RingSize) {
    this.slots = size.slots;
    this.size = size.bytes;
    this.wake = new Int32Array(sab, 0, 2);
    this.header = new BigInt64Array(sab, 8, 3);
    this.slotSeq = new BigInt64Array(sab, HEADER_BYTES, size.slots);
    this.meta = new Float64Array(sab, HEADER_BYTES + 8 * size.slots, META_FIELDS * size.slots);
    this.data = new Uint8Array(sab, HEADER_BYTES + 8 * size.slots + 8 * META_FIELDS * size.slots, size.bytes);
  }

  writeSeq(): number { return Number(Atomics.load(this.header, 0)); }
}

export function ringBufferBytes(size: RingSize): number {
  return HEADER_BYTES + 8 * size.slots + 8 * META_FIELDS * size.slots + size.bytes;
}

/** The one writer of a ring (the hub's main thread). */
export class RingWriter {
  private readonly v: RingViews;
  private seq = 0;
  /** Absolute byte position the next record starts at (before the wrap skip). */
  private head = 0;
  readonly sab: SharedArrayBuffer;

  constructor(readonly size: RingSize) {
    if (!Number.isInteger(size.slots) || size.slots < 1) throw new Error('a ring needs at least one slot');
    if (!Number.isInteger(size.bytes) || size.bytes < 1) throw new Error('a ring needs at least one byte of data');
    this.sab = new SharedArrayBuffer(ringBufferBytes(size));
    this.v = new RingViews(this.sab, size);
  }

  /** Records appended so far; the next record's sequence number. */
  get written(): number { return this.seq; }

  /** Sets the floor (see the layout): only ever raised by the hub, or reset with its history. */
  setFloor(rev: number): void { Atomics.store(this.v.header, 2, BigInt(rev)); }

  /** Appends one record and wakes the readers; returns its sequence number. */
  append(kind: number, prev: number, rev: number, bytes: Uint8Array): number {
    const v = this.v;
    const n = bytes.length;
    if (n > v.size) throw new Error(`a record of ${n} bytes does not fit a ring of ${v.size} bytes`);
    let pos = this.head;
    let off = pos % v.size;
    if (off + n > v.size) { pos += v.size - off; off = 0; }
    const end = pos + n;
    Atomics.store(v.header, 1, BigInt(end)); // invariant 3: announced before the bytes change
    const seq = this.seq;
    const slot = seq % v.slots;
    Atomics.store(v.slotSeq, slot, 0n); // invariant 1: the slot is being rewritten
    const m = slot * META_FIELDS;
    v.meta[m] = kind;
    v.meta[m + 1] = prev;
    v.meta[m + 2] = rev;
    v.meta[m + 3] = pos;
    v.meta[m + 4] = n;
    v.data.set(bytes, off);
    Atomics.store(v.slotSeq, slot, BigInt(seq + 1));
    this.seq = seq + 1;
    this.head = end;
    Atomics.store(v.header, 0, BigInt(seq + 1)); // invariant 4: published in order
    Atomics.add(v.wake, 0, 1);
    Atomics.notify(v.wake, 0);
    return seq;
  }
}

export type ReadResult = RingRecord | 'pending' | 'overrun';

/** One reader's access to a ring (a worker thread). Readers keep their own cursor. */
export class RingReader {
  private readonly v: RingViews;

  constructor(sab: SharedArrayBuffer, size: RingSize) {
    this.v = new RingViews(sab, size);
  }

  get slots(): number { return this.v.slots; }

  /** Records published so far. */
  written(): number { return this.v.writeSeq(); }

  /** The floor the writer set (see the layout). */
  floor(): number { return Number(Atomics.load(this.v.header, 2)); }

  /** Record `seq`'s metadata; 'pending' if not published yet, 'overrun' if already overwritten. */
  meta(seq: number): RingMeta | 'pending' | 'overrun' {
    const v = this.v;
    if (seq >= v.writeSeq()) return 'pending';
    const slot = seq % v.slots;
    const want = BigInt(seq + 1);
    if (Atomics.load(v.slotSeq, slot) !== want) return 'overrun';
    const m = slot * META_FIELDS;
    const out: RingMeta = { seq, kind: v.meta[m], prev: v.meta[m + 1], rev: v.meta[m + 2], pos: v.meta[m + 3], length: v.meta[m + 4] };
    if (Atomics.load(v.slotSeq, slot) !== want) return 'overrun';
    return out;
  }

  /** A copy of a record's bytes, or 'overrun' when they were (maybe) overwritten while copied. */
  bytes(meta: RingMeta): Buffer | 'overrun' {
    const v = this.v;
    const off = meta.pos % v.size;
    const out = Buffer.allocUnsafe(meta.length);
    out.set(v.data.subarray(off, off + meta.length));
    // Invariant 3, checked after the copy: nothing was written over these bytes meanwhile.
    if (Number(Atomics.load(v.header, 1)) - meta.pos > v.size) return 'overrun';
    // And the slot still describes this record (it was not rewritten under us).
    if (Atomics.load(v.slotSeq, meta.seq % v.slots) !== BigInt(meta.seq + 1)) return 'overrun';
    return out;
  }

  /** Record `seq` with a copy of its bytes. */
  read(seq: number): ReadResult {
    const m = this.meta(seq);
    if (typeof m === 'string') return m;
    const bytes = this.bytes(m);
    if (bytes === 'overrun') return 'overrun';
    return { seq, kind: m.kind, prev: m.prev, rev: m.rev, bytes };
  }

  /** The wake word's value now; pass it to waitAfter. */
  wakeValue(): number { return Atomics.load(this.v.wake, 0); }

  /** Resolves once the writer appended after `value` was read (or at once if it already has). */
  waitAfter(value: number): Promise<unknown> {
    const r = Atomics.waitAsync(this.v.wake, 0, value);
    return r.async ? r.value : Promise.resolve();
  }
}
