// Decoded pod groups saved beside their raw values in the state file (issue 13: a start from the
// file need not JSON.parse ~10 MB of values again): the record round-trips the decoder's output,
// its version follows the decoder's sources, the indexes take a record only for the value it was
// made from, and the file carries the records of exactly the values it holds. The whole path —
// an agent process started from a file, answering every golden request — is in
// test/golden.test.ts.
import test from 'ava';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';
import { startAgent } from '../agent/agent.js';
import { Cache } from '../agent/cache.js';
import { Indexes, type DecodedRecord } from '../agent/indexes/index.js';
import { decodePodGroup, podGroupFromRecord, podGroupRecord, POD_GROUP_RECORD_VERSION } from '../agent/model/podgroup.js';
import { decodeState, encodeChunks, encodeState, type DecodedSource, type StateToSave } from '../agent/persist.js';
import { fixtureKvs } from './helpers/cluster.js';
import { httpGet } from '../testkit/http.js';
import { freePort } from '../testkit/ports.js';
import { capturingLogger, fileState, fileWith, persisterIn, tempDir } from './helpers/persist.js';

const PG = '/lain/deployd/pod_groups/';
const small = fixtureKvs('cluster-small');
const edge = fixtureKvs('edge-cases');

/** Every pod-group value of both fixtures that decodes (edge-cases holds some that do not). */
function podGroupValues(): Array<[string, string]> {
  return [...Object.entries(small), ...Object.entries(edge)].filter(([k, v]) => {
    if (!k.startsWith(PG)) return false;
    try { decodePodGroup(v); return true; } catch { return false; }
  });
}

test('a record reads back as exactly what the decoder made, for every pod group of the fixtures', (t) => {
  const values = podGroupValues();
  t.true(values.length >= 10, `${values.length} pod groups`);
  for (const [key, raw] of values) t.deepEqual(podGroupFromRecord(podGroupRecord(decodePodGroup(raw))), decodePodGroup(raw), key);
});

test('a record that is not a decoded pod group is refused, naming the record', (t) => {
  const good = JSON.parse(podGroupRecord(decodePodGroup(small[`${PG}hello/hello.web.web`]))) as Record<string, unknown>;
  const bad = ['not json', 'null', '[]', '"x"', JSON.stringify({ ...good, name: 1 }), JSON.stringify({ ...good, pods: null }),
    ...['name', 'namespace', 'annotation', 'appVersion', 'dependencies', 'containerSpecs', 'pods', 'streamPorts'].map((f) => JSON.stringify({ ...good, [f]: undefined }))];
  for (const record of bad) t.throws(() => podGroupFromRecord(record), { message: /pod group record|invalid JSON/ }, record.slice(0, 60));
});

// The version must change whenever what decodePodGroup returns could: an agent would otherwise
// serve an older agent's records as its own decoding. Edit the pair below only together.
const DECODER_SOURCES = ['agent/model/podgroup.ts', 'agent/model/annotation.ts', 'agent/model/gofields.ts'];
const RECORDED = { version: 1, sha256: '287a7829eafd634efe2685d33e0411b74dc91ccfab2e75687ba050175c89d5d4' };

test('the record version is bumped when the decoder\'s sources change', (t) => {
  const hash = createHash('sha256');
  for (const f of DECODER_SOURCES) hash.update(readFileSync(fileURLToPath(new URL(`../${f}`, import.meta.url))));
  const sha256 = hash.digest('hex');
  t.is(POD_GROUP_RECORD_VERSION, RECORDED.version, 'the recorded version is the decoder\'s');
  t.is(sha256, RECORDED.sha256, `${DECODER_SOURCES.join(', ')} changed: if what decodePodGroup returns for any value may differ, bump POD_GROUP_RECORD_VERSION; then record the version and this hash here`);
});

/** Indexes with a decoder that counts what it decodes. */
function counting() {
  const decoded: string[] = [];
  const indexes = new Indexes({ decoders: { podGroup: (raw) => { const pg = decodePodGroup(raw); decoded.push(pg.name); return pg; } } });
  const cache = new Cache();
  cache.onChange((changes) => indexes.apply(changes));
  return { indexes, cache, decoded };
}

test('the indexes take an offered record instead of decoding its value, only for a value of its length, for the next apply only', (t) => {
  const source = counting();
  source.cache.replace(1, Object.entries(small), 'hub');
  const records = Object.entries(small).map(([k, v]) => source.indexes.recordOf(k, v)).filter((r) => r !== undefined);
  const podGroups = Object.keys(small).filter((k) => k.startsWith(PG)).length;
  t.is(records.length, podGroups, 'a record for each pod group, none for other keys');

  const target = counting();
  target.indexes.offerDecoded(records);
  target.cache.replace(1, Object.entries(small), 'state-file');
  t.deepEqual(target.decoded, [], 'nothing decoded');
  t.deepEqual(target.indexes.offerResult(), { taken: podGroups, refused: 0 });
  for (const key of Object.keys(small).filter((k) => k.startsWith(PG))) {
    t.deepEqual(target.indexes.podGroups.get(key.slice(PG.length))?.pg, source.indexes.podGroups.get(key.slice(PG.length))?.pg, key);
  }

  // A record whose length does not match its value, and one that cannot be read, are refused:
  // those values are decoded.
  const [first, second] = records;
  const other = counting();
  other.indexes.offerDecoded([[first[0], first[1] + 1, first[2]], [second[0], second[1], '{"name":'], ...records.slice(2)]);
  other.cache.replace(1, Object.entries(small), 'state-file');
  t.deepEqual(other.indexes.offerResult(), { taken: podGroups - 2, refused: 2 });
  t.is(other.decoded.length, 2);

  // The offer ends with the apply: a later change of the same key is decoded.
  const changed = small[first[0]].replace('"InstanceNo":1', '"InstanceNo":1 ');
  other.decoded.length = 0;
  other.indexes.offerDecoded([[first[0], changed.length, first[2]]]);
  other.cache.applyDelta(2, [['/lain/config/other', 'x']], []);
  other.cache.applyDelta(3, [[first[0], changed]], []);
  t.is(other.decoded.length, 1, 'not taken by the apply after the one it was offered to');
});

test('recordOf gives a record only for the value the index holds: not for another value, a bad one, or a key outside the pod groups', (t) => {
  const { indexes, cache } = counting();
  cache.replace(1, Object.entries(small), 'hub');
  const key = `${PG}hello/hello.web.web`;
  const record = indexes.recordOf(key, small[key]);
  t.truthy(record);
  t.deepEqual(record, [key, small[key].length, podGroupRecord(decodePodGroup(small[key]))]);
  t.is(indexes.recordOf(key, `${small[key]} `), undefined, 'another value of the key');
  t.is(indexes.recordOf(`${PG}nope/nope.web.web`, small[key]), undefined, 'a key not held');
  t.is(indexes.recordOf('/lain/config/domain', small['/lain/config/domain']), undefined, 'not a pod group');
  t.is(indexes.recordOf(PG, small[key]), undefined, 'the directory itself');
  cache.applyDelta(2, [[`${PG}bad/bad.web.web`, '{not json']], []);
  t.is(indexes.recordOf(`${PG}bad/bad.web.web`, '{not json'), undefined, 'a value that does not decode');
});

// ---------------------------------------------------------------------------
// The records in the state file
// ---------------------------------------------------------------------------

const someRecords = (n: number): DecodedRecord[] => Array.from({ length: n }, (_, i) => [`${PG}a${i}/a${i}.web.web`, 1000 + i * 70_000, `{"n":"${'r'.repeat(i * 11)}"}`]);

test('the encoder writes the decoded records as msgpackr would, whatever falls on a chunk\'s edge, and they load', (t) => {
  const msgpackr = new Packr({ useRecords: false });
  let cases = 0;
  for (const chunkBytes of [64, 71, 96, 200]) {
    for (const decoded of [undefined, { v: 1, podGroups: [] }, { v: 300, podGroups: someRecords(1) }, { v: 2 ** 20, podGroups: someRecords(6) }]) {
      for (const hubs of [[], ['ws://h1:9000']]) {
        const state: StateToSave = { rev: 7, savedAt: 9, entries: [['/lain/k', 'v'.repeat(40)]], ...(hubs.length ? { hubs } : {}), ...(decoded ? { decoded } : {}) };
        const chunks: Buffer[] = [];
        const steps = encodeChunks(state, chunkBytes);
        let r = steps.next();
        for (; !r.done; r = steps.next()) chunks.push(Buffer.from(r.value));
        const file = Buffer.concat(chunks);
        file.writeUInt32BE(r.value, 8);
        const what = `chunk ${chunkBytes}, ${decoded?.podGroups.length ?? '-'} records, ${hubs.length} hubs`;
        if (!file.subarray(12).equals(Buffer.from(msgpackr.pack(state)))) { t.fail(`${what}: not msgpackr's bytes`); return; }
        t.deepEqual(decodeState(file).decoded, decoded, what);
        cases++;
      }
    }
  }
  t.is(cases, 4 * 4 * 2);
  t.throws(() => encodeState({ rev: 1, savedAt: 1, entries: [], decoded: { v: -1, podGroups: [] } }), { message: /not a revision or a time/ });
  t.throws(() => encodeState({ rev: 1, savedAt: 1, entries: [], decoded: { v: 1, podGroups: [['k', 1.5, '{}']] } }), { message: /not a revision or a time/ });
});

test('malformed records are left out of a file whose values are whole, with a warning: its values are decoded instead', (t) => {
  const base = { rev: 5, savedAt: 1, entries: [['a', 'b']] };
  const malformed: unknown[] = [null, 7, [], { v: '1', podGroups: [] }, { podGroups: [] }, { v: 1 }, { v: 1, podGroups: {} },
    { v: 1, podGroups: [['k', 1]] }, { v: 1, podGroups: [['k', 1, '{}', 'x']] }, { v: 1, podGroups: [[1, 1, '{}']] },
    { v: 1, podGroups: [['k', '1', '{}']] }, { v: 1, podGroups: [['k', 1, {}]] }, { v: 1, podGroups: [['k', 1, '{}'], null] }];
  for (const decoded of malformed) {
    const s = decodeState(fileWith({ ...base, decoded }));
    t.is(s.decoded, undefined, JSON.stringify(decoded));
    t.true(s.decodedDropped, JSON.stringify(decoded));
    t.deepEqual(s.entries, base.entries);
  }
  const good = decodeState(fileWith({ ...base, decoded: { v: 1, podGroups: [['k', 1, '{}']] } }));
  t.deepEqual(good.decoded, { v: 1, podGroups: [['k', 1, '{}']] });
  t.is(good.decodedDropped, undefined);

  const dir = tempDir(t);
  writeFileSync(join(dir, 'state.bin'), fileWith({ ...base, decoded: { v: 1, podGroups: 'x' } }));
  const { persister, lines } = persisterIn(dir);
  t.is(persister.load()?.rev, 5, 'the state is served');
  t.like(lines[0], { level: 40, msg: 'state file: its decoded values are malformed; decoding the raw values instead', path: join(dir, 'state.bin') });
});

/** A persister whose records come from indexes over its own cache, as in agent/agent.ts. */
function persisterWithRecords(dir: string, sliceMs?: number) {
  const indexes = new Indexes();
  const source: DecodedSource = { version: POD_GROUP_RECORD_VERSION, recordOf: (k, v) => indexes.recordOf(k, v) };
  const p = persisterIn(dir, { decoded: source, ...(sliceMs !== undefined ? { sliceMs } : {}) });
  p.cache.onChange((changes) => indexes.apply(changes));
  return { ...p, indexes };
}

/** Every record of a file is the record of the value the file holds for its key. */
function recordsMatchValues(t: import('ava').ExecutionContext, file: ReturnType<typeof fileState>): void {
  const values = new Map(file.entries);
  const pgKeys = file.entries.map(([k]) => k).filter((k) => k.startsWith(PG) && !k.startsWith(`${PG}bad`));
  t.deepEqual(file.decoded?.podGroups.map(([k]) => k).sort(), pgKeys.sort(), 'one record per pod group the file holds');
  for (const [k, length, record] of file.decoded?.podGroups ?? []) {
    t.is(length, values.get(k)?.length ?? -1, k);
    t.deepEqual(podGroupFromRecord(record), decodePodGroup(values.get(k)!), k);
  }
}

test('a save writes the record of each pod group beside its value, in the decoder\'s version; none for a bad value', async (t) => {
  const { cache, persister } = persisterWithRecords(tempDir(t));
  cache.replace(1, [...Object.entries(small), [`${PG}bad/bad.web.web`, '{not json']], 'hub');
  await persister.saveNow();
  t.is(persister.lastSaveError, '');
  const file = fileState(persister.path);
  t.is(file.decoded?.v, POD_GROUP_RECORD_VERSION);
  recordsMatchValues(t, file);
});

test('pod groups changed, added and deleted while a save copies the state: each record is of the value the file holds', async (t) => {
  // sliceMs 0: the copy (and the making of the records) lets the event loop turn at every
  // step, so the changes below land in the middle of it; many pod groups make many steps.
  const { cache, persister } = persisterWithRecords(tempDir(t), 0);
  const template = small[`${PG}hello/hello.web.web`];
  const pg = (i: number, tag = '') => [`${PG}app${i}/app${i}.web.web`, template.replaceAll('hello', `app${i}${tag}`)] as [string, string];
  cache.replace(1, Array.from({ length: 300 }, (_, i) => pg(i)), 'hub');
  const saving = persister.saveNow();
  for (let step = 0; step < 40; step++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const i = (step * 37) % 300;
    cache.applyDelta(cache.revision + 1, [pg(i, `x${step}`), pg(1000 + step)], step % 3 === 0 ? [pg((i + 150) % 300)[0]] : []);
  }
  await saving;
  const file = fileState(persister.path);
  t.true(file.rev > 1, `the copy ended after some of the changes (at revision ${file.rev})`);
  recordsMatchValues(t, file);
});

test('an agent takes the records of its own version only: a file written by another decoder is served by decoding its values', async (t) => {
  const { indexes, cache } = counting();
  const entries = Object.entries(small);
  cache.replace(9, entries, 'hub');
  const podGroups = entries.map(([k, v]) => indexes.recordOf(k, v)).filter((r) => r !== undefined)
    // What another decoder might have made: records that read but are not this decoder's.
    .map(([k, n, record]) => [k, n, record.replaceAll(/"nodeName":"[^"]*"/g, '"nodeName":"elsewhere"')] as DecodedRecord);
  const answer = async (v: number) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'state.bin'), encodeState({ rev: 9, savedAt: 1, entries, decoded: { v, podGroups } }));
    const { log, lines } = capturingLogger();
    const deadHub = await freePort();
    const agent = await startAgent({ host: '127.0.0.1', port: 0, nodeIp: '127.0.0.1', hostname: 'node1', noauth: true, hubs: [`ws://127.0.0.1:${deadHub}`], stateDir: dir }, log);
    try {
      const loaded = lines.find((l) => l.msg.startsWith('loaded state file')) as unknown as { podGroupRecords: unknown };
      return { records: loaded.podGroupRecords, body: (await httpGet(`http://127.0.0.1:${agent.port}/v2/coreinfowatcher`)).body };
    } finally {
      await agent.stop();
    }
  };
  const other = await answer(POD_GROUP_RECORD_VERSION + 1);
  t.is(other.records, `version ${POD_GROUP_RECORD_VERSION + 1}, not ${POD_GROUP_RECORD_VERSION}: values decoded`);
  t.notRegex(other.body, /elsewhere/);
  t.regex(other.body, /"NodeName":"node1"/);
  // The same records in this decoder's version are taken as they are (which is why the version must change with the decoder).
  const own = await answer(POD_GROUP_RECORD_VERSION);
  t.deepEqual(own.records, { taken: podGroups.length, refused: 0 });
  t.regex(own.body, /"NodeName":"elsewhere"/);
});
