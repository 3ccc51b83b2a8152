// What the state-file tests share (test/persist-unit.test.ts, test/persist.test.ts): a logger
// whose lines a test reads, a temp dir removed after the test, a persister over a Cache.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { pino, type Logger } from 'pino';
import { Cache } from '../../agent/cache.js';
import { decodeState, StatePersister, type SavedState } from '../../agent/persist.js';

export interface LogLine { level: number; msg: string; err?: string; path?: string; errors?: number }

/** A logger whose lines the test can read. */
export function capturingLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { log, lines };
}

export function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'lainlet-persist-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A persister that writes only when told (saveNow), as at SIGTERM. */
export function persisterIn(dir: string, opts: ConstructorParameters<typeof StatePersister>[3] = {}) {
  const cache = new Cache();
  const { log, lines } = capturingLogger();
  const persister = new StatePersister(dir, cache, log, { debounceMs: 1e9, maxDelayMs: 1e9, ...opts });
  return { cache, persister, lines };
}

export function fileState(path: string): SavedState {
  return decodeState(readFileSync(path));
}

/** n config keys with values of `valueLength` characters: a state of about n × (valueLength + 25) bytes. */
export function configEntries(n: number, valueLength: number, tag = 'v'): Array<[string, string]> {
  return Array.from({ length: n }, (_, i) => [`/lain/config/k${String(i).padStart(5, '0')}`, tag.repeat(valueLength)]);
}

/** A file with a good header (magic, CRC) around the payload bytes `body`, whatever they hold. */
export function fileAround(body: Buffer): Buffer {
  const head = Buffer.alloc(12);
  head.write('LAINLET1');
  head.writeUInt32BE(crc32(body), 8);
  return Buffer.concat([head, body]);
}

/** A file with a good header around whatever payload msgpackr packs. (A Packr of its own: it only packs.) */
export function fileWith(payload: unknown): Buffer {
  return fileAround(Buffer.from(new Packr({ useRecords: false }).pack(payload)));
}
