// Persists the agent's cache to its state dir so that after a reboot with the whole hub tier
// down it serves the last known state (marked stale) instead of 503.
//
// File format: "LAINLET1" magic, a uint32 CRC-32 of the payload, then the msgpack payload
// {rev, savedAt, entries}. Written atomically: temp file, fsync, rename, fsync of the dir —
// a crash leaves either the old file or the new one, never a torn one. A write that fails or
// stops short leaves the old file in place. A file that fails the magic, CRC or decoding is
// reported and ignored.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { unpack } from 'msgpackr';
import type { Logger } from '../shared/log.js';
import type { Cache } from './cache.js';

const MAGIC = Buffer.from('LAINLET1');
const HEAD_BYTES = MAGIC.length + 4;
const FILE = 'state.bin';

export interface SavedState {
  rev: number;
  savedAt: number;
  entries: Array<[string, string]>;
  /** The store identity the state came from (etcd's cluster id); absent in older files. */
  epoch?: string;
}

/** What a save writes; `entries` is walked twice (once to measure, once to write), so a Map or an array, not a generator. */
export interface StateToSave {
  rev: number;
  savedAt: number;
  entries: Iterable<readonly [string, string]>;
  epoch?: string;
}

// The payload is encoded here, not by a msgpackr Packr. Every Packr in the process packs into
// one module-wide working buffer (DESIGN.md, Known traps): whatever this module does to it, the
// frame encoder of shared/protocol.ts (the embedded hub's, the hub client's) works with next.
// Left alone, it grows to 1.5× a 10 MB state and stays pinned for the life of the process;
// swapped for a small Uint8Array after a save, it broke every later save and frame holding a
// string of 64+ characters (msgpackr writes those with Buffer's utf8Write). The schema is fixed
// and small, so the encoder is too: it measures the file, fills a Buffer of exactly that size
// that belongs to this save alone, and keeps nothing afterwards (bench/RESULTS.md, memory).
// The bytes are the ones msgpackr writes for the same state (test/persist.test.ts compares
// them), so files from before and after are one format, read by msgpackr's unpack.

/** A fixstr map key, encoded once. */
const key = (name: string): Buffer => Buffer.concat([Buffer.from([0xa0 | name.length]), Buffer.from(name)]);
const KEY_REV = key('rev');
const KEY_SAVED_AT = key('savedAt');
const KEY_ENTRIES = key('entries');
const KEY_EPOCH = key('epoch');

function uintBytes(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`state file: ${n} is not a revision or a time`);
  return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n <= 0xffffffff ? 5 : 9;
}

function arrayBytes(count: number): number { return count < 0x10 ? 1 : count < 0x10000 ? 3 : 5; }

function strBytes(s: string): number {
  // Stryker disable next-line StringLiteral: Node reads an empty encoding name as 'utf8' (its default), so the emptied literal changes nothing
  const n = Buffer.byteLength(s, 'utf8');
  return (n < 32 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5) + n;
}

/** Appends msgpack values to a Buffer sized for them in advance. */
class PayloadWriter {
  offset = 0;
  constructor(readonly out: Buffer) {}

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

  str(s: string): void {
    const { out } = this;
    // Stryker disable next-line StringLiteral: Node reads an empty encoding name as 'utf8' (its default), so the emptied literal changes nothing
    const n = Buffer.byteLength(s, 'utf8');
    if (n < 32) this.byte(0xa0 | n);
    else if (n < 0x100) { this.byte(0xd9); this.byte(n); }
    else if (n < 0x10000) { this.byte(0xda); this.offset = out.writeUInt16BE(n, this.offset); }
    else { this.byte(0xdb); this.offset = out.writeUInt32BE(n, this.offset); }
    // Stryker disable next-line StringLiteral: Node reads an empty encoding name as 'utf8' (its default), so the emptied literal changes nothing
    this.offset += out.write(s, this.offset, n, 'utf8');
  }
}

/** The whole file: header (magic + CRC) and payload, in one Buffer of its own. */
export function encodeState(state: StateToSave): Buffer {
  let count = 0;
  let entryBytes = 0;
  for (const [k, v] of state.entries) {
    count++;
    entryBytes += 1 + strBytes(k) + strBytes(v); // fixarray(2), key, value
  }
  const size = HEAD_BYTES + 3 /* map16(3) */
    + KEY_REV.length + uintBytes(state.rev)
    + KEY_SAVED_AT.length + uintBytes(state.savedAt)
    + KEY_ENTRIES.length + arrayBytes(count) + entryBytes
    + (state.epoch ? KEY_EPOCH.length + strBytes(state.epoch) : 0);
  const w = new PayloadWriter(Buffer.allocUnsafe(size));
  w.offset = HEAD_BYTES;
  w.byte(0xde); w.byte(0); w.byte(state.epoch ? 4 : 3); // map16 where fixmap would do: msgpackr's choice, so the bytes are the same as before
  w.raw(KEY_REV); w.uint(state.rev);
  w.raw(KEY_SAVED_AT); w.uint(state.savedAt);
  w.raw(KEY_ENTRIES); w.arrayHeader(count);
  for (const [k, v] of state.entries) { w.byte(0x92); w.str(k); w.str(v); }
  if (state.epoch) { w.raw(KEY_EPOCH); w.str(state.epoch); }
  // Only if the entries changed between the two walks, which a synchronous save rules out.
  if (w.offset !== size) throw new Error(`state file: encoded ${w.offset} bytes, measured ${size}`);
  MAGIC.copy(w.out);
  w.out.writeUInt32BE(crc32(w.out.subarray(HEAD_BYTES)), MAGIC.length);
  return w.out;
}

export function decodeState(bytes: Buffer): SavedState {
  if (bytes.length < HEAD_BYTES || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('not a lainlet state file (bad magic)');
  const payload = bytes.subarray(HEAD_BYTES);
  if (crc32(payload) !== bytes.readUInt32BE(MAGIC.length)) throw new Error('checksum mismatch (truncated or corrupt)');
  const s = unpack(payload) as SavedState;
  if (!s || typeof s.rev !== 'number' || !Array.isArray(s.entries)) throw new Error('state payload malformed');
  for (const e of s.entries) if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'string') throw new Error('state entry malformed');
  if (s.epoch !== undefined && typeof s.epoch !== 'string') throw new Error('state epoch malformed');
  return s;
}

/** fs.writeSync's shape: bytes actually written, which may be fewer than asked. */
export type WriteFn = (fd: number, buffer: Uint8Array, offset: number, length: number) => number;

/**
 * write(2) may write less than asked — on a nearly full disk it writes what fits and the next
 * call fails with ENOSPC. Ignoring the count renamed a truncated file over a good one; go on
 * from where it stopped until all is written, or throw.
 */
function writeFully(write: WriteFn, fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) {
    const n = write(fd, bytes, done, bytes.length - done);
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
}

export class StatePersister {
  private timer?: NodeJS.Timeout;
  private firstDirtyAt = 0;
  private savedRev = -1;
  private readonly debounceMs: number;
  private readonly maxDelayMs: number;
  private readonly write: WriteFn;
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
    this.write = opts.write ?? writeSync;
  }

  get path(): string { return join(this.dir, FILE); }

  /** The revision of the state file on disk (-1: none written or loaded yet). */
  get savedRevision(): number { return this.savedRev; }

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
      this.savedRev = s.rev;
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
    this.timer = setTimeout(() => { this.timer = undefined; this.saveNow(); }, wait);
  }

  saveNow(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.cache.hasState || this.cache.revision === this.savedRev) return;
    const tmp = `${this.path}.tmp`;
    const rev = this.cache.revision;
    try {
      mkdirSync(this.dir, { recursive: true });
      // Encoded straight from the cache's Map: no copy of the entries as pairs first.
      const bytes = encodeState({ rev, savedAt: Date.now(), entries: this.cache.entries, epoch: this.cache.epoch || undefined });
      const fd = openSync(tmp, 'w', 0o600);
      try {
        writeFully(this.write, fd, bytes);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.path);
      const dfd = openSync(this.dir, 'r');
      try { fsyncSync(dfd); } finally { closeSync(dfd); }
    } catch (err) {
      this.lastSaveError = (err as Error).message;
      this.saveErrors++;
      // Failing before the rename leaves the old file in place; a partial temp file would only
      // hold the disk space the next save needs.
      try { unlinkSync(tmp); } catch { /* never created, or already renamed */ }
      this.log.error({ path: this.path, err: this.lastSaveError, errors: this.saveErrors }, 'cannot write state file');
      return;
    }
    this.savedRev = rev;
    this.lastSavedAt = Date.now();
    this.lastSaveError = '';
    this.onSaved?.();
  }
}
