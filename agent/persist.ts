// Persists the agent's cache to its state dir so that after a reboot with the whole hub tier
// down it serves the last known state (marked stale) instead of 503.
//
// File format: "LAINLET1" magic, a uint32 CRC-32 of the payload, then the msgpack payload
// {rev, savedAt, entries, epoch?, hubs?, decoded?}; `decoded` holds the pod groups as the
// indexes decoded them ({v: the record version, podGroups: [etcd key, value length, record]}),
// which a start from the file takes instead of decoding the values again (issue 13). A file
// without it (older agents) or of another record version loads all the same, decoding.
// Written atomically: temp file, fsync, rename, fsync of the dir — a crash leaves either the
// old file or the new one, never a torn one. A write that fails or stops short leaves the old
// file in place. A file that fails the magic, CRC or decoding is reported and ignored.
//
// A save never holds the event loop for long (a delta's path through the agent must not wait
// for it): the state is copied in slices of about a millisecond, the changes made meanwhile
// laid over the copy; the file is then encoded a chunk (CHUNK_BYTES) at a time into one small
// buffer, each chunk written before the next is encoded, so no buffer of the state's size is
// made; the file system calls (the writes, the two fsyncs, rename) go to libuv's thread pool.
// One save runs at a time.
import { close, fsync, mkdir, open, readFileSync, rename, unlink, write as fsWrite } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import { unpack } from 'msgpackr';
import type { Logger } from '../shared/log.js';
import type { Cache, ChangeSet } from './cache.js';
import type { DecodedRecord } from './indexes/index.js';

const MAGIC = Buffer.from('LAINLET1');
const HEAD_BYTES = MAGIC.length + 4;
const FILE = 'state.bin';

export interface SavedState {
  rev: number;
  savedAt: number;
  entries: Array<[string, string]>;
  /** The store identity the state came from (etcd's cluster id); absent in older files. */
  epoch?: string;
  /** The hub tier's members when it was saved (HubClient.learnMembers); absent in older files. */
  hubs?: string[];
  /** Values decoded when it was saved, in the decoder's version `v` (Indexes.offerDecoded); absent in older files. */
  decoded?: SavedDecoded;
  /** The file's decoded values were malformed and left out (the raw values are whole). */
  decodedDropped?: boolean;
}

/** Decoded values saved beside the raw ones, so that a start from the file need not decode them again. */
export interface SavedDecoded {
  /** The records' version (POD_GROUP_RECORD_VERSION when they were written). */
  v: number;
  podGroups: DecodedRecord[];
}

/** What a save writes; without `count`, `entries` may be walked twice (once to count, once to write), so a Map or an array, not a generator. */
export interface StateToSave {
  rev: number;
  savedAt: number;
  entries: Iterable<readonly [string, string]>;
  /** How many entries `entries` yields, when the caller knows (else an array's or a Map's count, or one walk). */
  count?: number;
  epoch?: string;
  hubs?: readonly string[];
  decoded?: { readonly v: number; readonly podGroups: readonly DecodedRecord[] };
}

// The payload is encoded here, not by a msgpackr Packr. Every Packr in the process packs into
// one module-wide working buffer (DESIGN.md, Known traps): whatever this module does to it, the
// frame encoder of shared/protocol.ts (the embedded hub's, the hub client's) works with next.
// Left alone, it grows to 1.5× a 10 MB state and stays pinned for the life of the process;
// swapped for a small Uint8Array after a save, it broke every later save and frame holding a
// string of 64+ characters (msgpackr writes those with Buffer's utf8Write). The schema is fixed
// and small, so the encoder is too: it fills a chunk buffer of its own, hands it out, fills it
// again, and keeps nothing afterwards (bench/RESULTS.md, memory).
// The bytes are the ones msgpackr writes for the same state (test/persist.test.ts compares
// them), so files from before and after are one format, read by msgpackr's unpack.

/** A fixstr map key, encoded once. */
const key = (name: string): Buffer => Buffer.concat([Buffer.from([0xa0 | name.length]), Buffer.from(name)]);
const KEY_REV = key('rev');
const KEY_SAVED_AT = key('savedAt');
const KEY_ENTRIES = key('entries');
const KEY_EPOCH = key('epoch');
const KEY_HUBS = key('hubs');
const KEY_DECODED = key('decoded');
const KEY_V = key('v');
const KEY_POD_GROUPS = key('podGroups');

function checkUint(n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`state file: ${n} is not a revision or a time`);
}

/** Bytes of the file encoded between two writes: the buffer a save fills and writes, in turn. */
export const CHUNK_BYTES = 64 * 1024;
/** The most a msgpack string header takes (str32). */
const STR_HEAD_MAX = 5;

/**
 * Appends msgpack values to a chunk of the file. The caller checks that a value fits (room)
 * before it appends one; a chunk that has no room left is handed out and filled again.
 */
class ChunkWriter {
  offset = 0;
  constructor(readonly out: Buffer) {}

  room(): number { return this.out.length - this.offset; }

  raw(bytes: Buffer): void { this.offset += bytes.copy(this.out, this.offset); }

  byte(b: number): void { this.out[this.offset++] = b; }

  /** A non-negative safe integer: uint up to 32 bits, float64 above (exact below 2^53; msgpackr reads uint64 as a BigInt). */
  uint(n: number): void {
    const { out } = this;
    if (n < 0x80) this.byte(n);
    else if (n < 0x100) { this.byte(0xcc); this.byte(n); }
    else if (n < 0x10000) { this.byte(0xcd); this.offset = out.writeUInt16BE(n, this.offset); }
    else if (n <= 0xffffffff) { this.byte(0xce); this.offset = out.writeUInt32BE(n, this.offset); }
    else { this.byte(0xcb); this.offset = out.writeDoubleBE(n, this.offset); }
  }

  arrayHeader(n: number): void {
    if (n < 0x10) this.byte(0x90 | n);
    else if (n < 0x10000) { this.byte(0xdc); this.offset = this.out.writeUInt16BE(n, this.offset); }
    else { this.byte(0xdd); this.offset = this.out.writeUInt32BE(n, this.offset); }
  }

  /** A string's header for `n` bytes of UTF-8. */
  strHeader(n: number): void {
    const { out } = this;
    if (n < 32) this.byte(0xa0 | n);
    else if (n < 0x100) { this.byte(0xd9); this.byte(n); }
    else if (n < 0x10000) { this.byte(0xda); this.offset = out.writeUInt16BE(n, this.offset); }
    else { this.byte(0xdb); this.offset = out.writeUInt32BE(n, this.offset); }
  }

  /** A string of `n` bytes of UTF-8 (Buffer.byteLength), header and bytes: the caller has made room for it. */
  str(s: string, n: number): void {
    this.strHeader(n);
    // Stryker disable next-line StringLiteral: Node reads an empty encoding name as 'utf8' (its default), so the emptied literal changes nothing
    this.offset += this.out.write(s, this.offset, n, 'utf8');
  }
}

/** The whole file: header (magic + CRC) and payload, in one Buffer of its own. */
export function encodeState(state: StateToSave): Buffer {
  const chunks: Buffer[] = [];
  const steps = encodeChunks(state);
  for (;;) {
    const r = steps.next();
    if (r.done) {
      const file = Buffer.concat(chunks);
      file.writeUInt32BE(r.value, MAGIC.length);
      return file;
    }
    chunks.push(Buffer.from(r.value)); // the chunk's buffer is filled again after this
  }
}

/** Entries between two points where a sliced copy may yield. */
const STEP_ENTRIES = 512;

/** How many entries `entries` holds: an array's or a Map's own count, or one walk. */
function countEntries(entries: Iterable<unknown>): number {
  if (Array.isArray(entries)) return entries.length;
  if (entries instanceof Map) return entries.size;
  let n = 0;
  for (const _ of entries) n++;
  return n;
}

/**
 * The file, a chunk at a time: yields each filled chunk (at most chunkBytes, but for one entry
 * longer than that, which gets a buffer of its own), which the caller writes out before asking
 * for the next — the chunk's buffer is filled again. The first chunk starts with the magic and
 * room for the CRC, which is returned at the end: the caller writes it at byte MAGIC.length.
 * No buffer the size of the state is ever allocated, and each step encodes at most a chunk.
 */
export function* encodeChunks(state: StateToSave, chunkBytes = CHUNK_BYTES): Generator<Buffer, number> {
  const hubs = state.hubs ?? [];
  // Checked before anything is encoded.
  checkUint(state.rev);
  checkUint(state.savedAt);
  const count = state.count ?? countEntries(state.entries);
  const w = new ChunkWriter(Buffer.allocUnsafe(Math.max(chunkBytes, 64)));
  let crc = 0;
  // The CRC covers the payload: everything after the header.
  let crcFrom = HEAD_BYTES;
  const filled = (): Buffer => {
    const chunk = w.out.subarray(0, w.offset);
    crc = crc32(chunk.subarray(crcFrom), crc);
    crcFrom = 0;
    w.offset = 0;
    return chunk;
  };
  /**
   * A writer with room for `need` bytes: the chunk, after handing out what it holds if it must;
   * for more than a whole chunk (one long entry, a very long member list), a buffer of its own,
   * this once, which the caller hands out with `own`.
   */
  function* writerFor(need: number): Generator<Buffer, ChunkWriter> {
    if (need <= w.room()) return w;
    if (w.offset > 0) yield filled();
    return need <= w.room() ? w : new ChunkWriter(Buffer.allocUnsafe(need));
  }
  const own = (big: ChunkWriter): Buffer => {
    const chunk = big.out.subarray(0, big.offset);
    crc = crc32(chunk, crc);
    return chunk;
  };
  w.raw(MAGIC);
  w.offset = HEAD_BYTES; // the CRC's place, written last
  const { decoded } = state;
  if (decoded) checkUint(decoded.v);
  w.byte(0xde); w.byte(0); w.byte(3 + (state.epoch ? 1 : 0) + (hubs.length > 0 ? 1 : 0) + (decoded ? 1 : 0)); // map16 where fixmap would do: msgpackr's choice, so the bytes are the same as before
  w.raw(KEY_REV); w.uint(state.rev);
  w.raw(KEY_SAVED_AT); w.uint(state.savedAt);
  w.raw(KEY_ENTRIES); w.arrayHeader(count);
  let written = 0;
  for (const [k, v] of state.entries) {
    written++;
    // Stryker disable next-line StringLiteral: Node reads an empty encoding name as 'utf8' (its default), so the emptied literal changes nothing
    const nk = Buffer.byteLength(k, 'utf8');
    // Stryker disable next-line StringLiteral: as above
    const nv = Buffer.byteLength(v, 'utf8');
    const out = yield* writerFor(1 + STR_HEAD_MAX + nk + STR_HEAD_MAX + nv);
    out.byte(0x92); out.str(k, nk); out.str(v, nv);
    if (out !== w) yield own(out);
  }
  // Only if the entries changed between counting and writing, which the persister's copy of them rules out.
  if (written !== count) throw new Error(`state file: ${written} entries written, ${count} counted`);
  const tail = (state.epoch ? KEY_EPOCH.length + STR_HEAD_MAX + Buffer.byteLength(state.epoch) : 0)
    + KEY_HUBS.length + 5 + hubs.reduce((n, h) => n + STR_HEAD_MAX + Buffer.byteLength(h), 0);
  const out = yield* writerFor(tail);
  writeTail(out, state.epoch, hubs);
  if (out !== w) yield own(out);
  if (decoded) {
    const head = yield* writerFor(KEY_DECODED.length + 3 + KEY_V.length + 9 + KEY_POD_GROUPS.length + 5);
    head.raw(KEY_DECODED); head.byte(0xde); head.byte(0); head.byte(2);
    head.raw(KEY_V); head.uint(decoded.v);
    head.raw(KEY_POD_GROUPS); head.arrayHeader(decoded.podGroups.length);
    if (head !== w) yield own(head);
    for (const [k, length, record] of decoded.podGroups) {
      checkUint(length);
      const nk = Buffer.byteLength(k, 'utf8');
      const nr = Buffer.byteLength(record, 'utf8');
      const rec = yield* writerFor(1 + STR_HEAD_MAX + nk + 9 + STR_HEAD_MAX + nr);
      rec.byte(0x93); rec.str(k, nk); rec.uint(length); rec.str(record, nr);
      if (rec !== w) yield own(rec);
    }
  }
  if (w.offset > 0) yield filled();
  return crc;
}

function writeTail(w: ChunkWriter, epoch: string | undefined, hubs: readonly string[]): void {
  if (epoch) { w.raw(KEY_EPOCH); w.str(epoch, Buffer.byteLength(epoch)); }
  if (hubs.length > 0) { w.raw(KEY_HUBS); w.arrayHeader(hubs.length); for (const h of hubs) w.str(h, Buffer.byteLength(h)); }
}

/** Runs `steps` to the end in slices of about `sliceMs` of the event loop, letting it turn (setImmediate) in between. */
async function runSliced<T>(steps: Generator<void, T>, sliceMs: number): Promise<T> {
  let sliceStart = performance.now();
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (performance.now() - sliceStart >= sliceMs) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
  }
}

/** What a copy of the state lays over the entries it copied: the last value of each key changed meanwhile (undefined: deleted). */
type Overlay = Map<string, string | undefined>;

/**
 * The cache's state, copied a step at a time while the cache goes on changing: the entries as
 * the copy found them, then the changes made meanwhile (`changes`, filled by the caller) laid
 * over them — which is the state the cache holds when the copy ends, at its revision then.
 */
function* copySteps(cache: Cache, changes: ChangeSet[], decoded?: DecodedSource): Generator<void, StateToSave> {
  // Keys and values in turn: no pair array per entry. A Map's iterator survives changes to it.
  const flat: string[] = [];
  // The records of the values copied, each made in the same step as its value's copy: the
  // indexes follow the cache change by change, so between two steps they hold the same values.
  const records: DecodedRecord[] = [];
  let n = 0;
  for (const [k, v] of cache.entries) {
    flat.push(k, v);
    const r = decoded?.recordOf(k, v);
    if (r && records.push(r) % RECORD_STEP === 0) yield;
    else if (++n % STEP_ENTRIES === 0) yield;
  }
  const overlay: Overlay = new Map();
  for (const { puts, dels } of changes) {
    for (const k of dels) overlay.set(k, undefined);
    for (const [k, v] of puts) overlay.set(k, v);
  }
  // The file's entry count, known before its entries are written: the copied keys the overlay
  // does not replace, and the overlay's live ones.
  let count = flat.length / 2;
  if (overlay.size > 0) {
    for (let i = 0; i < flat.length; i += 2) {
      if (overlay.has(flat[i])) count--;
      if ((i / 2 + 1) % STEP_ENTRIES === 0) yield;
    }
    for (const v of overlay.values()) if (v !== undefined) count++;
  }
  const entries: Iterable<readonly [string, string]> = {
    *[Symbol.iterator]() {
      for (let i = 0; i < flat.length; i += 2) if (!overlay.has(flat[i])) yield [flat[i], flat[i + 1]] as const;
      for (const [k, v] of overlay) if (v !== undefined) yield [k, v] as const;
    },
  };
  // From here to the return is one step: the overlay's records are made for the values the
  // indexes hold now, which are the overlay's.
  const state: StateToSave = { rev: cache.revision, savedAt: Date.now(), entries, count, epoch: cache.epoch || undefined, hubs: [...cache.hubs] };
  if (decoded) {
    const podGroups = overlay.size > 0 ? records.filter((r) => !overlay.has(r[0])) : records;
    for (const [k, v] of overlay) {
      const r = v === undefined ? undefined : decoded.recordOf(k, v);
      if (r) podGroups.push(r);
    }
    state.decoded = { v: decoded.version, podGroups };
  }
  return state;
}

/** Records made between two yields of a copy (each is a JSON.stringify of a pod group: ~5 µs). */
const RECORD_STEP = 64;

/** Where a save gets the decoded form of the values it writes (Indexes.recordOf), and its version. */
export interface DecodedSource {
  readonly version: number;
  /** The record of `raw` under `etcdKey`, if there is one for exactly this value. */
  recordOf(etcdKey: string, raw: string): DecodedRecord | undefined;
}

/** One msgpack byte (an empty array). */
const ONE_BYTE = Buffer.from([0x90]);

/**
 * msgpackr keeps a DataView of the last buffer it read in module state (unpack.js `dataView`,
 * which its clearSource() leaves): after a state file, the whole file (~12 MB for a 10 MB
 * cluster), held until it reads something else — for ever in an agent that has no hub to hear
 * from. Reading one byte makes that the buffer it holds.
 */
function releaseSource(): void {
  unpack(ONE_BYTE);
}

export function decodeState(bytes: Buffer): SavedState {
  if (bytes.length < HEAD_BYTES || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('not a lainlet state file (bad magic)');
  const payload = bytes.subarray(HEAD_BYTES);
  if (crc32(payload) !== bytes.readUInt32BE(MAGIC.length)) throw new Error('checksum mismatch (truncated or corrupt)');
  let s: SavedState;
  try {
    s = unpack(payload) as SavedState;
  } finally {
    releaseSource();
  }
  if (!s || typeof s.rev !== 'number' || !Array.isArray(s.entries)) throw new Error('state payload malformed');
  for (const e of s.entries) if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'string') throw new Error('state entry malformed');
  if (s.epoch !== undefined && typeof s.epoch !== 'string') throw new Error('state epoch malformed');
  if (s.hubs !== undefined && (!Array.isArray(s.hubs) || !s.hubs.every((h) => typeof h === 'string'))) throw new Error('state hubs malformed');
  if (s.decoded !== undefined && !isSavedDecoded(s.decoded)) {
    // Only a help for the start: without it the raw values are decoded, as from an older file.
    s.decoded = undefined;
    s.decodedDropped = true;
  }
  return s;
}

function isSavedDecoded(d: unknown): d is SavedDecoded {
  if (typeof d !== 'object' || d === null) return false;
  const { v, podGroups } = d as Partial<SavedDecoded>;
  return typeof v === 'number' && Array.isArray(podGroups) && podGroups.every((r) => Array.isArray(r) && r.length === 3
    && typeof r[0] === 'string' && typeof r[1] === 'number' && typeof r[2] === 'string');
}

/**
 * fs.write's shape, promised: `length` bytes from `offset` of `buffer` to the file at
 * `position`; bytes actually written, which may be fewer than asked. Tests give one that writes
 * short or fails (a number returned at once will do).
 */
export type WriteFn = (fd: number, buffer: Uint8Array, offset: number, length: number, position: number) => number | Promise<number>;

/** The file system calls of a save, all on libuv's thread pool: never a synchronous call on the event loop. */
export interface PersistIo {
  mkdir(dir: string): Promise<unknown>;
  open(path: string, flags: string, mode?: number): Promise<number>;
  write: WriteFn;
  fsync(fd: number): Promise<void>;
  close(fd: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
}

const writeAsync = promisify(fsWrite);
const mkdirAsync = promisify(mkdir);
export const FS_IO: PersistIo = {
  mkdir: (dir) => mkdirAsync(dir, { recursive: true }),
  open: promisify(open),
  write: async (fd, buffer, offset, length, position) => (await writeAsync(fd, buffer, offset, length, position)).bytesWritten,
  fsync: promisify(fsync),
  close: promisify(close),
  rename: promisify(rename),
  unlink: promisify(unlink),
};

/**
 * write(2) may write less than asked — on a nearly full disk it writes what fits and the next
 * call fails with ENOSPC. Ignoring the count renamed a truncated file over a good one; go on
 * from where it stopped until all is written, or throw.
 */
async function writeFully(write: WriteFn, fd: number, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const n = await write(fd, bytes, done, bytes.length - done, position + done);
    if (!(n > 0)) throw new Error(`short write: ${done} of ${bytes.length} bytes written, then ${n}`);
    done += n;
  }
}

export interface StatePersisterOptions {
  /** Wait this long after a change before writing, to batch bursts… */
  debounceMs?: number;
  /** …but never delay a write longer than this under continuous churn. */
  maxDelayMs?: number;
  /** The write system call; tests give one that writes short or fails. */
  write?: WriteFn;
  /** The other file system calls (tests); `write` wins over io.write. */
  io?: Partial<PersistIo>;
  /** How long one slice of copying the state may hold the event loop (ms). */
  sliceMs?: number;
  /** Saves the decoded form of the values beside them (SavedState.decoded). */
  decoded?: DecodedSource;
}

export class StatePersister {
  private timer?: NodeJS.Timeout;
  private firstDirtyAt = 0;
  private savedRev = -1;
  /** The hub members the file holds (joined): a change of members alone is saved too. */
  private savedHubs = '';
  private readonly debounceMs: number;
  private readonly maxDelayMs: number;
  private readonly sliceMs: number;
  private readonly io: PersistIo;
  private readonly decoded?: DecodedSource;
  /** The save running now, if any. */
  private running?: Promise<void>;
  /** A save was asked for while one ran: the next one, which every such caller waits for. */
  private next?: Promise<void>;
  /** While a save copies the state: the changes made to the cache meanwhile. */
  private copying?: ChangeSet[];
  /** The last save's error; '' once a save succeeds. */
  lastSaveError = '';
  lastSavedAt = 0;
  /** Saves that failed since start (the previous file was kept each time). */
  saveErrors = 0;
  /** Called after each successful write. */
  onSaved?: () => void;

  constructor(
    private readonly dir: string,
    private readonly cache: Cache,
    private readonly log: Logger,
    opts: StatePersisterOptions = {},
  ) {
    this.debounceMs = opts.debounceMs ?? 1000;
    this.maxDelayMs = opts.maxDelayMs ?? 5000;
    this.sliceMs = opts.sliceMs ?? 1;
    this.decoded = opts.decoded;
    this.io = { ...FS_IO, ...opts.io, ...(opts.write ? { write: opts.write } : {}) };
    cache.onChange((changes) => this.copying?.push(changes));
  }

  get path(): string { return join(this.dir, FILE); }

  /** The revision of the state file on disk (-1: none written or loaded yet). */
  get savedRevision(): number { return this.savedRev; }

  /** Whether a save is running (or about to run after the one running). */
  get saving(): boolean { return this.running !== undefined; }

  /** Reads the state file; null (with a log line) if there is none or it is unusable. */
  load(): SavedState | null {
    let bytes: Buffer;
    try {
      bytes = readFileSync(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ path: this.path, err: (err as Error).message }, 'cannot read state file; ignoring it');
      return null;
    }
    try {
      const s = decodeState(bytes);
      if (s.decodedDropped) this.log.warn({ path: this.path }, 'state file: its decoded values are malformed; decoding the raw values instead');
      this.savedRev = s.rev;
      this.savedHubs = (s.hubs ?? []).join(' ');
      return s;
    } catch (err) {
      this.log.error({ path: this.path, err: (err as Error).message }, 'state file is corrupt; ignoring it');
      return null;
    }
  }

  /** Call after every cache change; writes are debounced. */
  changed(): void {
    const now = Date.now();
    if (!this.timer) this.firstDirtyAt = now;
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.debounceMs, this.firstDirtyAt + this.maxDelayMs - now));
    this.timer = setTimeout(() => { this.timer = undefined; void this.saveNow(); }, wait);
  }

  /**
   * Saves the state as it is now (a pending debounced save goes with it); resolves once it is
   * on disk, or the save has failed (logged and counted, never thrown). While a save runs,
   * the next one waits for it.
   */
  saveNow(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.running === undefined) return this.start();
    this.next ??= this.running.then(() => { this.next = undefined; return this.start(); });
    return this.next;
  }

  /** Resolves once no save is running or waiting. */
  async idle(): Promise<void> {
    while (this.running !== undefined) await (this.next ?? this.running);
  }

  private start(): Promise<void> {
    const run = this.save().finally(() => { if (this.running === run) this.running = undefined; });
    this.running = run;
    return run;
  }

  private async save(): Promise<void> {
    const hubsNow = this.cache.hubs.join(' ');
    if (!this.cache.hasState || (this.cache.revision === this.savedRev && hubsNow === this.savedHubs)) return;
    const tmp = `${this.path}.tmp`;
    const { io } = this;
    let state: StateToSave;
    try {
      this.copying = [];
      try {
        state = await runSliced(copySteps(this.cache, this.copying, this.decoded), this.sliceMs);
      } finally {
        this.copying = undefined;
      }
      await io.mkdir(this.dir);
      const fd = await io.open(tmp, 'w', 0o600);
      try {
        // Encoded a chunk at a time, each written before the next is encoded: the event loop
        // turns at every write, and no buffer the size of the state is made (a 10 MB one per
        // save set off a full collection each time, its pause in the stream's path).
        const chunks = encodeChunks(state);
        let at = 0;
        for (;;) {
          const r = chunks.next();
          if (r.done) {
            const crc = Buffer.allocUnsafe(4);
            crc.writeUInt32BE(r.value);
            await writeFully(io.write, fd, crc, MAGIC.length);
            break;
          }
          await writeFully(io.write, fd, r.value, at);
          at += r.value.length;
        }
        await io.fsync(fd);
      } finally {
        await io.close(fd);
      }
      await io.rename(tmp, this.path);
      const dfd = await io.open(this.dir, 'r');
      try { await io.fsync(dfd); } finally { await io.close(dfd); }
    } catch (err) {
      this.lastSaveError = (err as Error).message;
      this.saveErrors++;
      // Failing before the rename leaves the old file in place; a partial temp file would only
      // hold the disk space the next save needs.
      try { await io.unlink(tmp); } catch { /* never created, or already renamed */ }
      this.log.error({ path: this.path, err: this.lastSaveError, errors: this.saveErrors }, 'cannot write state file');
      return;
    }
    this.savedRev = state.rev;
    this.savedHubs = (state.hubs ?? []).join(' ');
    this.lastSavedAt = Date.now();
    this.lastSaveError = '';
    this.onSaved?.();
  }
}
