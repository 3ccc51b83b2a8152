// Persists the agent's cache to its state dir so that after a reboot with the whole hub tier
// down it serves the last known state (marked stale) instead of 503.
//
// File format: "LAINLET1" magic, a uint32 CRC-32 of the payload, then the msgpack payload
// {rev, savedAt, entries}. Written atomically: temp file, fsync, rename, fsync of the dir —
// a crash leaves either the old file or the new one, never a torn one. A file that fails the
// magic, CRC or decoding is reported and ignored.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { Packr, unpack } from 'msgpackr';
import type { Logger } from '../shared/log.js';
import type { Cache } from './cache.js';

const MAGIC = Buffer.from('LAINLET1');
const FILE = 'state.bin';

export interface SavedState {
  rev: number;
  savedAt: number;
  entries: Array<[string, string]>;
}

/**
 * The file's two parts: header (magic + CRC) and payload. `payload` is a view on msgpackr's
 * working buffer: use it before anything else is packed, then call releaseEncoderMemory().
 */
function encodeStateParts(state: SavedState): [Buffer, Buffer] {
  const payload = statePackr.pack(state);
  const head = Buffer.alloc(MAGIC.length + 4);
  MAGIC.copy(head);
  head.writeUInt32BE(crc32(payload), MAGIC.length);
  return [head, payload];
}

/**
 * msgpackr packs into one module-wide buffer that only ever grows (to ~1.5× the largest thing
 * packed): after a 10 MB state it would pin ~15 MB for the life of the process (measured,
 * bench/RESULTS.md). Hand it a small buffer again once the state is written.
 */
function releaseEncoderMemory(): void {
  statePackr.useBuffer(new Uint8Array(8192));
}

const statePackr = new Packr({ useRecords: false });

export function encodeState(state: SavedState): Buffer {
  const whole = Buffer.concat(encodeStateParts(state));
  releaseEncoderMemory();
  return whole;
}

export function decodeState(bytes: Buffer): SavedState {
  if (bytes.length < MAGIC.length + 4 || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('not a lainlet state file (bad magic)');
  const payload = bytes.subarray(MAGIC.length + 4);
  if (crc32(payload) !== bytes.readUInt32BE(MAGIC.length)) throw new Error('checksum mismatch (truncated or corrupt)');
  const s = unpack(payload) as SavedState;
  if (!s || typeof s.rev !== 'number' || !Array.isArray(s.entries)) throw new Error('state payload malformed');
  for (const e of s.entries) if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'string') throw new Error('state entry malformed');
  return s;
}

export class StatePersister {
  private timer?: NodeJS.Timeout;
  private firstDirtyAt = 0;
  private savedRev = -1;
  lastSaveError = '';
  lastSavedAt = 0;
  /** Called after each successful write. */
  onSaved?: () => void;

  constructor(
    private readonly dir: string,
    private readonly cache: Cache,
    private readonly log: Logger,
    /** Wait this long after a change before writing, to batch bursts… */
    private readonly debounceMs = 1000,
    /** …but never delay a write longer than this under continuous churn. */
    private readonly maxDelayMs = 5000,
  ) {}

  get path(): string { return join(this.dir, FILE); }

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
    try {
      mkdirSync(this.dir, { recursive: true });
      const fd = openSync(tmp, 'w', 0o600);
      try {
        const [head, payload] = encodeStateParts({ rev: this.cache.revision, savedAt: Date.now(), entries: [...this.cache.entries] });
        writeSync(fd, head);
        writeSync(fd, payload);
        releaseEncoderMemory();
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.path);
      const dfd = openSync(this.dir, 'r');
      try { fsyncSync(dfd); } finally { closeSync(dfd); }
      this.savedRev = this.cache.revision;
      this.lastSavedAt = Date.now();
      this.lastSaveError = '';
      this.onSaved?.();
    } catch (err) {
      this.lastSaveError = (err as Error).message;
      this.log.error({ path: this.path, err: this.lastSaveError }, 'cannot write state file');
    }
  }
}
