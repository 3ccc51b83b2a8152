// The agent's state file (agent/persist.ts): it follows the state save after save without
// disturbing any other msgpack encoder in the process, a failed or short write keeps the
// previous good file, and a damaged file is refused. Unit tests on the persister, an
// in-process agent for /debug and /metrics (on a real, nearly full tmpfs), and a standalone
// agent process on a real etcd.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { pino, type Logger } from 'pino';
import { startAgent, type Agent } from '../agent/agent.js';
import { Cache } from '../agent/cache.js';
import { decodeState, encodeState, StatePersister, type SavedState } from '../agent/persist.js';
import { collectGarbage } from '../shared/gc.js';
import { decodeFrame, encodeFrame } from '../shared/protocol.js';
import { currentRevision, etcdClient, putAll, startEtcd } from '../testkit/etcd.js';
import { httpGet } from '../testkit/http.js';
import { freePort, freePorts } from '../testkit/ports.js';
import { startAgent as startAgentProc, waitFor } from '../testkit/procs.js';
import { agentSynced, fixtureKvs } from './helpers/cluster.js';

/** A logger whose lines the test can read. */
interface LogLine { msg: string; err?: string }
function capturingLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { log, lines };
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'lainlet-persist-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A persister that writes only when told (saveNow), as at SIGTERM. */
function persisterIn(dir: string, opts: ConstructorParameters<typeof StatePersister>[3] = {}) {
  const cache = new Cache();
  const { log, lines } = capturingLogger();
  const persister = new StatePersister(dir, cache, log, { debounceMs: 1e9, maxDelayMs: 1e9, ...opts });
  return { cache, persister, lines };
}

function fileState(path: string): SavedState {
  return decodeState(readFileSync(path));
}

/** n config keys with values of `valueLength` characters: a state of about n × (valueLength + 25) bytes. */
function configEntries(n: number, valueLength: number, tag = 'v'): Array<[string, string]> {
  return Array.from({ length: n }, (_, i) => [`/lain/config/k${String(i).padStart(5, '0')}`, tag.repeat(valueLength)]);
}

interface DebugView { revision: number; hasState: boolean; source: string; stateFile: { path: string; lastSavedAt: number | null; lastError: string; errors: number } }
async function debugOf(base: string): Promise<DebugView> {
  return JSON.parse((await httpGet(`${base}/debug`)).body) as DebugView;
}

function metricValue(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`metric ${name} missing`);
  return Number(m[1]);
}

/** An in-process agent whose only hub is a closed port: its state is what the test puts in its cache or state dir. */
async function agentWithoutHub(stateDir: string, log: Logger): Promise<{ agent: Agent; base: string }> {
  const deadHub = await freePort();
  const agent = await startAgent({ host: '127.0.0.1', port: 0, nodeIp: '127.0.0.1', hostname: 'node1', noauth: false, hubs: [`ws://127.0.0.1:${deadHub}`], stateDir }, log);
  return { agent, base: `http://127.0.0.1:${agent.port}` };
}

// ---------------------------------------------------------------------------
// 1. The file follows the state; no other encoder is disturbed
// ---------------------------------------------------------------------------

test('many saves in a row: each file holds the live state, long and non-ASCII values included', (t) => {
  const { cache, persister } = persisterIn(tempDir(t));
  cache.replace(1, configEntries(50, 10), 'hub');
  // Around msgpackr's 64-character switch to its native UTF-8 writer, str8/16/32 boundaries, multi-byte text.
  const values = ['a'.repeat(63), 'b'.repeat(64), 'c'.repeat(100), 'd'.repeat(255), 'e'.repeat(256), 'f'.repeat(70_000), 'ü→漢字🙂'.repeat(40), '', 'short'];
  let saves = 0;
  persister.onSaved = () => saves++;
  for (let i = 0; i < values.length * 2; i++) {
    cache.applyDelta(cache.revision + 1, [[`/lain/config/long${i % values.length}`, values[i % values.length]]], i % 3 === 0 ? ['/lain/config/k00000'] : []);
    persister.saveNow();
    t.is(persister.lastSaveError, '', `save ${i + 1}`);
    const saved = fileState(persister.path);
    t.is(saved.rev, cache.revision, `save ${i + 1}`);
    t.deepEqual(new Map(saved.entries), cache.entries, `save ${i + 1}`);
  }
  t.is(saves, values.length * 2);
});

test('after a save, the protocol encoder still encodes long strings', (t) => {
  const { cache, persister } = persisterIn(tempDir(t));
  cache.replace(7, [['/lain/config/domain', 'lain.local'], ['/lain/config/big', 'x'.repeat(200_000)]], 'hub');
  persister.saveNow();
  t.is(persister.lastSaveError, '');
  const hello = { t: 'hello', v: 1, node: 'node-with-a-long-hostname.'.repeat(4), rev: 7 } as const;
  const delta = { t: 'delta', prev: 7, rev: 8, puts: [['/lain/config/long', 'y'.repeat(100)]], dels: [] } as { t: 'delta'; prev: number; rev: number; puts: Array<[string, string]>; dels: string[] };
  t.deepEqual(decodeFrame(encodeFrame(hello)), hello);
  t.deepEqual(decodeFrame(encodeFrame(delta)), delta);
  // And the other way round: frames packed in between do not change what the next save writes.
  cache.applyDelta(9, [['/lain/config/after', 'z'.repeat(100)]], []);
  persister.saveNow();
  t.is(persister.lastSaveError, '');
  t.deepEqual(new Map(fileState(persister.path).entries), cache.entries);
  t.deepEqual(decodeFrame(encodeFrame(hello)), hello);
});

/** Garbage collected and Buffers' memory given back: a dead Buffer's memory goes in the second collection. */
function fullCollection(): void {
  collectGarbage();
  collectGarbage();
}

test.serial('saving a 10 MB state leaves no encoder buffer of that size behind', (t) => {
  const { cache, persister } = persisterIn(tempDir(t));
  cache.replace(1, configEntries(10_000, 1000), 'hub');
  fullCollection();
  const before = process.memoryUsage().arrayBuffers;
  persister.saveNow();
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

test('a write that stops short is continued until the whole file is written', (t) => {
  let calls = 0;
  // At most 1000 bytes per call, as write(2) may do on a nearly full disk.
  const write = (fd: number, buf: Uint8Array, offset: number, length: number) => { calls++; return writeSync(fd, buf, offset, Math.min(length, 1000)); };
  const { cache, persister } = persisterIn(tempDir(t), { write });
  cache.replace(3, configEntries(200, 100), 'hub');
  persister.saveNow();
  t.is(persister.lastSaveError, '');
  t.true(calls > 20, `the persister wrote through the given write function (${calls} calls)`);
  t.deepEqual(fileState(persister.path), { rev: 3, savedAt: fileState(persister.path).savedAt, entries: [...cache.entries] });
});

test('a failed write keeps the old file, removes the temp file, logs and counts the error', (t) => {
  const dir = tempDir(t);
  let failing = false;
  const write = (fd: number, buf: Uint8Array, offset: number, length: number) => {
    if (!failing) return writeSync(fd, buf, offset, length);
    if (offset === 0) return writeSync(fd, buf, offset, Math.min(length, 512)); // some of it fits…
    throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }); // …then nothing does
  };
  const { cache, persister, lines } = persisterIn(dir, { write });
  cache.replace(3, configEntries(100, 30), 'hub');
  persister.saveNow();
  const good = readFileSync(persister.path);
  failing = true;
  cache.applyDelta(4, configEntries(300, 50, 'w'), []);
  persister.saveNow();
  t.regex(persister.lastSaveError, /ENOSPC/);
  t.is(persister.saveErrors, 1);
  t.true(readFileSync(persister.path).equals(good), 'the old file is untouched');
  t.deepEqual(readdirSync(dir), ['state.bin'], 'no temp file left behind');
  t.true(lines.some((l) => l.msg === 'cannot write state file' && /ENOSPC/.test(l.err ?? '')));
  t.is(persisterIn(dir).persister.load()?.rev, 3, 'the old file still loads');
});

test('a write that writes nothing is an error, not an endless loop', (t) => {
  const dir = tempDir(t);
  let failing = false;
  const write = (fd: number, buf: Uint8Array, offset: number, length: number) => (failing ? 0 : writeSync(fd, buf, offset, length));
  const { cache, persister } = persisterIn(dir, { write });
  cache.replace(3, configEntries(10, 10), 'hub');
  persister.saveNow();
  failing = true;
  cache.applyDelta(4, [['/lain/config/x', 'y']], []);
  persister.saveNow();
  t.regex(persister.lastSaveError, /short write/);
  t.is(persister.saveErrors, 1);
  t.is(fileState(persister.path).rev, 3);
  t.deepEqual(readdirSync(dir), ['state.bin']);
});

test.serial('on a nearly full filesystem a failed save keeps the old file and shows in /debug, the log and /metrics', async (t) => {
  t.timeout(60_000);
  // A real short write: tmpfs of 64 KB holding a ~20 KB state file, then a ~60 KB state.
  const dir = mkdtempSync(join(tmpdir(), 'lainlet-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
  t.teardown(() => {
    execFileSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  const { log, lines } = capturingLogger();
  const { agent, base } = await agentWithoutHub(dir, log);
  try {
    const saveAttempted = async (since: { lastSavedAt: number | null; errors: number }) => {
      await waitFor(async () => {
        const { stateFile } = await debugOf(base);
        return stateFile.lastSavedAt !== since.lastSavedAt || (stateFile.errors ?? 0) !== since.errors;
      }, { timeoutMs: 10_000, message: 'a save attempt' });
      return (await debugOf(base)).stateFile;
    };
    agent.cache.replace(10, configEntries(330, 40), 'hub');
    const first = await saveAttempted({ lastSavedAt: null, errors: 0 });
    t.is(first.lastError, '');
    const good = readFileSync(join(dir, 'state.bin'));
    t.is(decodeState(good).rev, 10);

    agent.cache.replace(11, configEntries(1000, 40, 'w'), 'hub');
    const failed = await saveAttempted(first);
    t.regex(failed.lastError, /ENOSPC|short write/);
    t.is(failed.errors, 1);
    t.true(readFileSync(join(dir, 'state.bin')).equals(good), 'the good file is still there, whole');
    t.deepEqual(readdirSync(dir), ['state.bin'], 'the temp file is removed');
    t.true(lines.some((l) => l.msg === 'cannot write state file'));
    t.is(metricValue((await httpGet(`${base}/metrics`)).body, 'lainlet_agent_state_file_errors_total'), 1);
    const { persister } = persisterIn(dir);
    t.deepEqual(persister.load()?.entries, configEntries(330, 40), 'a restart would load the last good state');

    // Once it fits again, saving resumes and the error clears; the counter keeps the history.
    agent.cache.replace(12, configEntries(100, 40, 'x'), 'hub');
    const recovered = await saveAttempted(failed);
    t.is(recovered.lastError, '');
    t.is(decodeState(readFileSync(join(dir, 'state.bin'))).rev, 12);
    t.is(metricValue((await httpGet(`${base}/metrics`)).body, 'lainlet_agent_state_file_errors_total'), 1);
  } finally {
    await agent.stop();
  }
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

test('an agent does not serve a state file with a flipped byte', async (t) => {
  const whole = encodeState({ rev: 5, savedAt: Date.now(), entries: [['/lain/config/domain', 'lain.local']] });
  for (const damage of [false, true]) {
    const dir = tempDir(t);
    const bytes = Buffer.from(whole);
    if (damage) bytes[bytes.length - 3] ^= 0x04; // inside "lain.local": still valid msgpack, a different value
    writeFileSync(join(dir, 'state.bin'), bytes);
    const { log, lines } = capturingLogger();
    const { agent, base } = await agentWithoutHub(dir, log);
    try {
      const res = await httpGet(`${base}/v2/configwatcher?target=domain`);
      if (damage) {
        t.is(res.status, 503);
        t.false((await debugOf(base)).hasState);
        t.true(lines.some((l) => l.msg === 'state file is corrupt; ignoring it'));
      } else {
        t.is(res.body, '{"domain":"lain.local"}', 'the same file undamaged is served');
      }
    } finally {
      await agent.stop();
    }
  }
});

// ---------------------------------------------------------------------------
// The whole agent: standalone on a real etcd
// ---------------------------------------------------------------------------

test.serial('standalone with -state-dir: the file follows every write after the first save, long values included, and SIGTERM writes the last revision', async (t) => {
  t.timeout(90_000);
  const etcd = await startEtcd();
  const stateDir = mkdtempSync(join(tmpdir(), 'lainlet-state-'));
  const web = (await freePorts(1))[0];
  const client = etcdClient(etcd);
  // The fixture's pod groups are long JSON values: the state holds strings over 64 characters from the first save.
  const seeded = await putAll(client, fixtureKvs('cluster-small'));
  const agent = startAgentProc(['-web', `127.0.0.1:${web}`, '-etcd', etcd.endpoint, '-ip', '127.0.0.1', '-hostname', 'node1', '-state-dir', stateDir]);
  try {
    const base = `http://127.0.0.1:${web}`;
    const statePath = join(stateDir, 'state.bin');
    const fileRev = () => (existsSync(statePath) ? fileState(statePath).rev : -1);
    const fileFollows = async (rev: number, what: string) => {
      await waitFor(() => fileRev() === rev, { timeoutMs: 15_000, message: `state file at revision ${rev} (${what}); file at ${fileRev()}\n${agent.output()}` });
    };
    await waitFor(() => agentSynced(base), { timeoutMs: 15_000, message: `standalone agent syncs\n${agent.output()}` });
    await fileFollows(seeded, 'first save');

    const r1 = Number((await client.put('/lain/config/persist-short').value('a')).header.revision);
    await fileFollows(r1, 'a short value after the first save');

    const long = 'L'.repeat(100);
    const r2 = Number((await client.put('/lain/config/persist-long').value(long)).header.revision);
    await waitFor(async () => (await httpGet(`${base}/v2/configwatcher?target=persist-long`)).body === JSON.stringify({ 'persist-long': long }),
      { timeoutMs: 10_000, message: `the 100-character value is served\n${agent.output()}` });
    await fileFollows(r2, 'a 100-character value');
    t.is(agent.proc.exitCode, null, 'the agent is still running');
    t.is((await debugOf(base)).stateFile.lastError, '');

    // The last write reaches the agent and the agent is stopped at once: the save at SIGTERM must hold it.
    const r3 = Number((await client.put('/lain/config/persist-last').value('M'.repeat(100))).header.revision);
    await waitFor(async () => (await debugOf(base)).revision >= r3, { timeoutMs: 10_000, message: 'the last write reaches the agent' });
    t.is(await agent.stop('SIGTERM'), 0, 'exits cleanly on SIGTERM');
    const last = fileState(statePath);
    t.is(last.rev, await currentRevision(client));
    t.is(new Map(last.entries).get('/lain/config/persist-last'), 'M'.repeat(100));
    t.is(new Map(last.entries).get('/lain/config/persist-long'), long);
    t.deepEqual(readdirSync(stateDir), ['state.bin']);
  } finally {
    client.close();
    await agent.kill();
    await etcd.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
});
