// Replays ../shared/golden/cluster-small.json — answers recorded from the original lainlet —
// against a hub and an agent on a real etcd, with the comparison rules of golden/README.md.
import test from 'ava';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeState } from '../agent/persist.js';
import { readReferenceJson } from './helpers/reference.js';
import { etcdClient } from '../testkit/etcd.js';
import { httpGet, openStream, type EventStream } from '../testkit/http.js';
import { freePorts } from '../testkit/ports.js';
import { startAgent, waitFor } from '../testkit/procs.js';
import { fixtureKvs, startCluster, type Cluster } from './helpers/cluster.js';
import { agentAt, agentProgress, streamsCaughtUp } from './helpers/wait.js';

interface Plain { path: string; from: string; method?: string; statusOnly?: boolean; status: number; body?: string }
interface Watch { path: string; status: number; events: Array<{ id: number; event: string; data: string }> }
interface Golden { hostname: string; plain: Plain[]; watches: Watch[]; after: Plain[] }
interface Mutation { op: 'put' | 'del'; key: string; value?: string; wait?: number }

const golden = readReferenceJson<Golden>('golden/cluster-small.json');
const fixture = readReferenceJson<{ watch: { paths: string[]; mutations: Mutation[] } }>('fixtures/cluster-small.json');

/** procwatcher and localspecquery arrays come in random order from the original: compare as sets. */
function normalise(path: string, body: string): string {
  if (!/^\/v2\/(procwatcher|localspecquery)/.test(path) || !body.startsWith('[')) return body;
  try {
    return JSON.stringify((JSON.parse(body) as unknown[]).map((x) => JSON.stringify(x)).sort());
  } catch {
    return body;
  }
}

/**
 * Where the agent deliberately answers differently from the recording (API.md §11), keyed by
 * "<label> <path> from <address>", with the answer the agent must give instead.
 */
const DEVIATIONS: Record<string, { status: number; body: string; why: string }> = {
  'after /appname?ip=172.20.0.11 from 127.0.0.1': {
    status: 500,
    body: 'unkown address 172.20.0.11',
    why: '§11 item 5: hello.web.web instance 1 moved from 172.20.0.11 to 172.20.0.99; the original never forgets the old IP, the agent\'s auth tables reflect the current state',
  },
};

let cluster: Cluster;
let base: string;
/** The agent's state dir: the state-file test starts another agent from a copy of its file. */
const stateDir = mkdtempSync(join(tmpdir(), 'lainlet-golden-state-'));

test.before(async () => {
  cluster = await startCluster({ hubs: 1, agents: 1, kvs: fixtureKvs('cluster-small'), agentArgs: () => ['-ip', '127.0.0.1', '-hostname', golden.hostname, '-state-dir', stateDir] });
  base = cluster.agents[0].base;
});

test.after.always(async () => {
  await cluster?.stop();
  rmSync(stateDir, { recursive: true, force: true });
});

async function check(t: import('ava').ExecutionContext, entries: Plain[], label: string, at = base) {
  let failures = 0;
  for (let e of entries) {
    const res = await httpGet(`${at}${e.path}`, { localAddress: e.from, method: e.method ?? 'GET' });
    const what = `${label} ${e.method ?? 'GET'} ${e.path} from ${e.from}`;
    const deviation = DEVIATIONS[`${label} ${e.path} from ${e.from}`];
    if (deviation) e = { ...e, status: deviation.status, body: deviation.body };
    if (res.status !== e.status) { failures++; t.is(res.status, e.status, what); continue; }
    if (e.statusOnly || e.body === undefined) continue;
    const got = normalise(e.path, res.body);
    const want = normalise(e.path, e.body);
    if (got !== want) { failures++; t.is(got, want, what); }
  }
  t.is(failures, 0);
}

test.serial('every plain request, from every source address, answers as the original', async (t) => {
  await check(t, golden.plain, 'plain');
});

test.serial('an agent started from the state file, its pod groups taken from the records saved beside their values (none decoded), answers every plain request as the original', async (t) => {
  t.timeout(60_000);
  // The file, once written: the agent's state came in one snapshot and nothing changes before
  // the next test, so its first file holds what the plain requests read. (Not "at the agent's
  // revision": progress frames move that revision on without a change, and so without a save.)
  const file = join(stateDir, 'state.bin');
  const podGroups = Object.keys(fixtureKvs('cluster-small')).filter((k) => k.startsWith('/lain/deployd/pod_groups/')).length;
  await waitFor(() => { try { return decodeState(readFileSync(file)).rev > 0; } catch { return false; } }, { timeoutMs: 20_000, message: 'the agent to write its state file' });
  t.is(decodeState(readFileSync(file)).decoded?.podGroups.length, podGroups, 'a record for every pod group');
  const dir = mkdtempSync(join(tmpdir(), 'lainlet-golden-restart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  copyFileSync(file, join(dir, 'state.bin'));
  const [port, closed] = await freePorts(2);
  const agent = startAgent(['-web', `127.0.0.1:${port}`, '-hub', `ws://127.0.0.1:${closed}`, '-ip', '127.0.0.1', '-hostname', golden.hostname, '-state-dir', dir]);
  t.teardown(() => agent.kill());
  const loaded = JSON.parse(await agent.waitForLine(/loaded state file/)) as { podGroupRecords: unknown };
  t.deepEqual(loaded.podGroupRecords, { taken: podGroups, refused: 0 });
  await agent.waitForLine(/agent listening/);
  await check(t, golden.plain, 'from the state file', `http://127.0.0.1:${port}`);
});

test.serial('event streams while keys change, then the after-state', async (t) => {
  const streams: EventStream[] = [];
  for (const path of fixture.watch.paths) streams.push(await openStream(`${base}${path}`, { localAddress: '127.0.0.1' }));
  // The recording waited 1 s, then 800 ms after each mutation (golden/README.md); here each step
  // waits for what it stands for: every init, then the agent applying each mutation before the next.
  for (const s of streams) await s.waitForEvents(1);
  const heartbeats = golden.watches.map((w, i) => (/heartbeat=\d/.test(w.path) ? streams[i].waitFor((e) => e.event === 'heartbeat') : undefined));
  const { eventsSent: before } = await agentProgress(base);
  const client = etcdClient(cluster.etcd);
  for (const m of fixture.watch.mutations) {
    const { header } = m.op === 'put' ? await client.put(m.key).value(m.value ?? '') : await client.delete().key(m.key);
    await agentAt(base, header.revision);
  }
  client.close();
  // The agent has applied the last mutation, so it has written every event it ever will for
  // them: once those have arrived, nothing late (or wrong) can follow.
  await streamsCaughtUp(base, streams, before);
  for (const h of heartbeats) await h;
  for (const [i, w] of golden.watches.entries()) {
    const s = streams[i];
    s.close();
    t.is(s.status, w.status, w.path);
    const events = s.events.filter((e) => e.event !== 'heartbeat');
    const want = w.events.filter((e) => e.event !== 'heartbeat');
    t.deepEqual(events.map((e) => [e.event, normalise(w.path, e.data)]), want.map((e) => [e.event, normalise(w.path, e.data)]), w.path);
    t.is(events[0]?.id, 1, `${w.path}: init is id 1`);
    for (let j = 1; j < events.length; j++) t.true(events[j].id > events[j - 1].id, `${w.path}: ids increase`);
    if (/heartbeat=\d/.test(w.path)) {
      t.true(s.events.some((e) => e.event === 'heartbeat' && e.id === 0 && e.data === ''), `${w.path}: heartbeats`);
    }
  }
  await check(t, golden.after, 'after');
});
