// Replays ../shared/golden/transcripts/watch-transcripts.txt — seven event streams recorded
// from the original lainlet while the etcd writes A..K of its header happened — against a hub
// and an agent on a real etcd, and compares every stream with the recording.
//
// The agent must send the same (event, data) sequence, heartbeats aside, except where API.md
// §11 says it deliberately differs; each such difference is written down below (AGENT_DIFFERS)
// with its reason. Ids need not match (gaps allowed): init is 1, later ids increase.
import test, { type ExecutionContext } from 'ava';
import { etcdClient } from '../testkit/etcd.js';
import { openStream, type EventStream, type SseEvent } from '../testkit/http.js';
import { waitFor } from '../testkit/procs.js';
import { readReference } from './helpers/reference.js';
import { fixtureKvs, startCluster, type Cluster } from './helpers/cluster.js';
import { agentAt, agentProgress, streamsCaughtUp } from './helpers/wait.js';

// ---------------------------------------------------------------------------
// The recording
// ---------------------------------------------------------------------------

interface RecordedStream {
  path: string;
  /** The header block exactly as the original sent it. */
  head: string;
  /** Every event, heartbeats included, in order. */
  events: SseEvent[];
}

const TRANSCRIPT = readReference('golden/transcripts/watch-transcripts.txt');

/** Frames are `id: N\nevent: NAME\n[data: LINE\n]\n`; the payloads are single lines. */
function parseFrames(body: string): SseEvent[] {
  return body
    .split('\n\n')
    .filter((frame) => frame.trim() !== '')
    .map((frame) => {
      const event: SseEvent = { id: -1, event: '', data: '' };
      const data: string[] = [];
      for (const line of frame.split('\n')) {
        const colon = line.indexOf(': ');
        const [field, value] = colon === -1 ? [line, ''] : [line.slice(0, colon), line.slice(colon + 2)];
        if (field === 'id') event.id = Number(value);
        else if (field === 'event') event.event = value;
        else if (field === 'data') data.push(value);
        else throw new Error(`unexpected line in transcript frame: ${JSON.stringify(line)}`);
      }
      event.data = data.join('\n');
      return event;
    });
}

function parseTranscript(text: string): RecordedStream[] {
  return text
    .split(/^======== GET /m)
    .slice(1)
    .map((section) => {
      const path = section.slice(0, section.indexOf('\n'));
      const headStart = section.indexOf('HTTP/1.1');
      const headEnd = section.indexOf('\r\n\r\n') + 4;
      return { path, head: section.slice(headStart, headEnd), events: parseFrames(section.slice(headEnd)) };
    });
}

const RECORDED = parseTranscript(TRANSCRIPT);

const P = {
  features: '/v2/configwatcher?target=features&watch=1&heartbeat=1',
  procs: '/v2/procwatcher?appname=hello&watch=true',
  containers: '/v2/containers?nodename=node3&watch=1',
  webprocs: '/v2/webrouter/webprocs?watch=1',
  nodes: '/v2/nodes?watch=yes',
  depends: '/v2/depends?watch=1',
  coreinfo: '/v2/coreinfowatcher?appname=console&watch=1',
} as const;

function recorded(path: string): RecordedStream {
  const stream = RECORDED.find((s) => s.path === path);
  if (!stream) throw new Error(`${path} is not in the transcript`);
  return stream;
}

// ---------------------------------------------------------------------------
// Where the agent deliberately differs from the recording (API.md §11)
// ---------------------------------------------------------------------------

interface AgentDiffers {
  path: string;
  step: string;
  /** Ids of the original's events that the agent must NOT send. */
  originalIdsNotSent: number[];
  why: string;
}

const AGENT_DIFFERS: AgentDiffers[] = [
  {
    path: P.procs,
    step: 'F (hello.worker.cron rewritten 3x with an identical value)',
    originalIdsNotSent: [2, 3],
    why:
      '§11 item 6 (stable order): the original built the procwatcher array in random Go map order, so identical ' +
      'rewrites produced `update`s whose only difference was the element order; the agent lists pod groups sorted ' +
      'by etcd key, so an unchanged state never produces an `update`',
  },
  {
    path: P.containers,
    step: 'F2 (redis-service.worker.redis on node3 rewritten 2x with an identical value)',
    originalIdsNotSent: [2, 3],
    why:
      '§11 item 6: the original\'s /v2/containers never suppressed: every matching etcd event became an `update`, ' +
      'even with identical data; the agent suppresses unchanged output like every other endpoint',
  },
];

/** procwatcher arrays come in random order from the original: compare them as sets. */
function asSet(path: string, data: string): string {
  if (!path.startsWith('/v2/procwatcher') || !data.startsWith('[')) return data;
  return JSON.stringify((JSON.parse(data) as unknown[]).map((x) => JSON.stringify(x)).sort());
}

/** What the agent must send on `path`, heartbeats aside: the recording minus AGENT_DIFFERS. */
function expectedEvents(path: string): SseEvent[] {
  const notSent = new Set(AGENT_DIFFERS.filter((d) => d.path === path).flatMap((d) => d.originalIdsNotSent));
  return recorded(path).events.filter((e) => e.event !== 'heartbeat' && !notSent.has(e.id));
}

// ---------------------------------------------------------------------------
// The writes A..K of the transcript's header
// ---------------------------------------------------------------------------

const KVS = fixtureKvs('cluster-small');
const PG = '/lain/deployd/pod_groups';
const HOSTNAME = 'node1';

/** The fixture's pod-group value with every ContainerIp blanked, the rest byte for byte unchanged. */
function blankContainerIps(key: string): string {
  const value = KVS[key];
  if (value === undefined) throw new Error(`${key} is not in the fixture`);
  const containers = (JSON.parse(value) as { Pods: Array<{ Containers: unknown[] }> }).Pods.flatMap((p) => p.Containers);
  let replaced = 0;
  const blanked = value.replace(/"ContainerIp":"[^"]*"/g, () => {
    replaced++;
    return '"ContainerIp":""';
  });
  if (replaced !== containers.length) throw new Error(`${key}: blanked ${replaced} ContainerIp for ${containers.length} containers`);
  return blanked;
}

function fixtureValue(key: string): string {
  const value = KVS[key];
  if (value === undefined) throw new Error(`${key} is not in the fixture`);
  return value;
}

interface Write { step: string; op: 'put' | 'del'; key: string; value?: string }

const CRON = `${PG}/hello/hello.worker.cron`;
const REDIS = `${PG}/redis-service/redis-service.worker.redis`;
const WRITES: Write[] = [
  { step: 'A', op: 'put', key: '/lain/config/features/graphite', value: 'True' },
  { step: 'B', op: 'put', key: '/lain/config/features/graphite', value: 'True' },
  { step: 'C', op: 'put', key: '/lain/config/domain', value: 'other.local' },
  { step: 'D', op: 'put', key: '/lain/config/features/statsd', value: 'True' },
  { step: 'E', op: 'del', key: '/lain/config/features/maintaining' },
  { step: 'F', op: 'put', key: CRON, value: fixtureValue(CRON) },
  { step: 'F', op: 'put', key: CRON, value: fixtureValue(CRON) },
  { step: 'F', op: 'put', key: CRON, value: fixtureValue(CRON) },
  { step: 'F2', op: 'put', key: REDIS, value: fixtureValue(REDIS) },
  { step: 'F2', op: 'put', key: REDIS, value: fixtureValue(REDIS) },
  { step: 'G', op: 'del', key: CRON },
  { step: 'H', op: 'del', key: '/lain/nodes/nodes/node3:192.168.77.23:22' },
  { step: 'I', op: 'put', key: '/lain/nodes/nodes/node9:1.2.3.4:22', value: 'garbage' },
  { step: 'J', op: 'del', key: '/lain/deployd/depends/pods/redis-service.portal.portal-redis' },
  ...['console/console.web.web', 'registry/registry.web.web', 'hello/hello.web.web'].map(
    (pg): Write => ({ step: 'K', op: 'put', key: `${PG}/${pg}`, value: blankContainerIps(`${PG}/${pg}`) }),
  ),
];

// ---------------------------------------------------------------------------
// The replay (once, before the tests that check its streams)
// ---------------------------------------------------------------------------

let cluster: Cluster | undefined;
const streams = new Map<string, EventStream>();
/** Whether the server had closed each stream by the end of the replay (before the client closed the rest). */
const endedByServer = new Map<string, boolean>();

test.before(async () => {
  cluster = await startCluster({ hubs: 1, agents: 1, kvs: KVS, agentArgs: () => ['-ip', '127.0.0.1', '-hostname', HOSTNAME] });
  const base = cluster.agents[0].base;
  for (const { path } of RECORDED) streams.set(path, await openStream(`${base}${path}`, { localAddress: '127.0.0.1', timeoutMs: 5000 }));
  for (const s of streams.values()) await s.waitForEvents(1, 5000);
  const { eventsSent: before } = await agentProgress(base);

  // The original's writes were 0.3-0.4 s apart; here each waits for the agent to have applied
  // the one before it (its /debug revision), which is what the gap stood for.
  const client = etcdClient(cluster.etcd);
  try {
    for (const w of WRITES) {
      const { header } = w.op === 'put' ? await client.put(w.key).value(w.value!) : await client.delete().key(w.key);
      await agentAt(base, header.revision);
    }
  } finally {
    client.close();
  }
  // The agent has applied the last write and so written every event it will for them: once
  // those have arrived, nothing late (or wrong) can follow. Then the server's close of webprocs
  // (after its error event) and heartbeats enough to show they repeat, both bounded.
  await streamsCaughtUp(base, streams.values(), before).catch(() => {});
  await streams.get(P.webprocs)!.waitForEnd(5000).catch(() => {});
  const features = streams.get(P.features)!;
  await waitFor(() => features.events.filter((e) => e.event === 'heartbeat').length >= 3, { message: '3 heartbeats' }).catch(() => {});
  for (const [path, s] of streams) {
    endedByServer.set(path, s.ended);
    s.close();
  }
});

test.after.always(async () => {
  for (const s of streams.values()) s.close();
  await cluster?.stop();
});

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

const HEARTBEAT_FRAME = 'id: 0\nevent: heartbeat\n\n';

function frame(e: SseEvent): string {
  return `id: ${e.id}\nevent: ${e.event}\n${e.data === '' ? '' : `data: ${e.data}\n`}\n`;
}

/** The common contract of every replayed stream: framing, ids, the (event, data) sequence. */
function checkStream(t: ExecutionContext, path: string): SseEvent[] {
  const s = streams.get(path)!;
  const rec = recorded(path);
  t.is(s.status, 200, `${path}: status`);
  // The recorded head is exactly these two headers: no Date, Content-Length or chunked encoding.
  t.deepEqual(
    Object.keys(s.headers).sort().map((name) => [name, s.headers[name]]),
    [['content-type', 'text/event-stream'], ['vary', 'Accept-Encoding']],
    `${path}: headers (recorded head: ${JSON.stringify(rec.head)})`,
  );

  const got = s.events.filter((e) => e.event !== 'heartbeat');
  const want = expectedEvents(path);
  t.deepEqual(
    got.map((e) => [e.event, asSet(path, e.data)]),
    want.map((e) => [e.event, asSet(path, e.data)]),
    `${path}: (event, data) sequence, heartbeats aside`,
  );

  // Bytes: the body is exactly the frames parsed from it, heartbeats interleaved only between frames.
  t.is(s.raw().split(HEARTBEAT_FRAME).join(''), got.map(frame).join(''), `${path}: raw framing`);

  // Ids: init is 1; data events increase strictly (gaps allowed); error events and heartbeats are 0.
  t.deepEqual([got[0]?.id, got[0]?.event], [1, 'init'], `${path}: init is id 1`);
  const dataEvents = got.filter((e) => e.event !== 'error');
  for (let i = 1; i < dataEvents.length; i++) {
    t.true(dataEvents[i].id > dataEvents[i - 1].id, `${path}: id ${dataEvents[i].id} after ${dataEvents[i - 1].id}`);
  }
  for (const e of got.filter((x) => x.event === 'error')) t.is(e.id, 0, `${path}: error events carry id 0`);
  for (const e of s.events.filter((x) => x.event === 'heartbeat')) t.deepEqual([e.id, e.data], [0, ''], `${path}: heartbeat frame`);
  if (!/[?&]heartbeat=[1-9]/.test(path)) t.false(s.events.some((e) => e.event === 'heartbeat'), `${path}: no heartbeats unless asked`);
  return got;
}

test('the recording parses into the seven streams of its header', (t) => {
  t.deepEqual(RECORDED.map((s) => s.path), Object.values(P));
  for (const s of RECORDED) {
    t.is(s.head, 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nVary: Accept-Encoding\r\n\r\n', s.path);
    t.deepEqual([s.events[0]?.id, s.events[0]?.event], [1, 'init'], s.path);
  }
});

test('configwatcher target=features: as recorded, byte for byte; B suppressed, C never reaches it; heartbeats', (t) => {
  const got = checkStream(t, P.features);
  t.deepEqual(got.map((e) => e.event), ['init', 'update', 'update', 'delete'], 'A update, B nothing, C nothing, D update, E delete');
  for (const [i, want] of expectedEvents(P.features).entries()) t.is(got[i]?.data, want.data, `event ${i}: bytes`);
  t.false(got.some((e) => e.data.includes('domain')), 'step C (/lain/config/domain) is outside target=features');
  const s = streams.get(P.features)!;
  const heartbeats = s.events.filter((e) => e.event === 'heartbeat');
  t.true(heartbeats.length >= 3, `heartbeat=1 repeats: got ${heartbeats.length}`);
  t.true(s.raw().includes(HEARTBEAT_FRAME), 'heartbeat frame is `id: 0\\nevent: heartbeat\\n\\n`, no data line');
  t.false(endedByServer.get(P.features), 'the server never ends a healthy stream');
});

test('procwatcher appname=hello: no update for identical rewrites (F); G delete and K update as recorded', (t) => {
  const got = checkStream(t, P.procs);
  const rec = recorded(P.procs).events;
  // The deviation is only legitimate if the original's F updates carried unchanged data (as a set).
  for (const id of AGENT_DIFFERS.find((d) => d.path === P.procs)!.originalIdsNotSent) {
    t.is(asSet(P.procs, rec.find((e) => e.id === id)!.data), asSet(P.procs, rec[0].data), `original id ${id} only reordered the init data`);
  }
  t.deepEqual(got.map((e) => e.event), ['init', 'delete', 'update']);
  // §11 item 6: stable order, pod groups sorted by etcd key (hello.web.web < hello.worker.cron). The
  // original's init happened to be in that order, so the agent's bytes equal it exactly.
  t.is(got[0]?.data, rec[0].data, 'init in etcd-key order: byte-identical to the recorded init');
  t.is(got[1]?.data, rec.find((e) => e.event === 'delete')!.data, 'G: bytes');
  t.is(got[2]?.data, rec[rec.length - 1].data, 'K (hello.web.web blanked): bytes');
  t.false(endedByServer.get(P.procs));
});

test('containers nodename=node3: identical rewrites (F2) suppressed; the K update byte for byte', (t) => {
  const got = checkStream(t, P.containers);
  const rec = recorded(P.containers).events;
  for (const id of AGENT_DIFFERS.find((d) => d.path === P.containers)!.originalIdsNotSent) {
    t.is(rec.find((e) => e.id === id)!.data, rec[0].data, `original id ${id} repeated the init data`);
  }
  t.deepEqual(got.map((e) => e.event), ['init', 'update']);
  t.is(got[0]?.data, rec[0].data, 'init: bytes');
  t.is(got[1]?.data, rec[rec.length - 1].data, 'K (hello instance 3 on node3 loses its IP): bytes');
  t.false(endedByServer.get(P.containers));
});

test('webprocs: update, update, then the lost-IP error event and the server closes the connection', (t) => {
  const got = checkStream(t, P.webprocs);
  const want = expectedEvents(P.webprocs);
  t.deepEqual(got.map((e) => e.event), ['init', 'update', 'update', 'error']);
  for (const [i, w] of want.entries()) t.is(got[i]?.data, w.data, `event ${i}: bytes`);
  t.deepEqual(got[3], { id: 0, event: 'error', data: 'over half of the containers lost their IPs' });
  t.true(streams.get(P.webprocs)!.raw().endsWith('id: 0\nevent: error\ndata: over half of the containers lost their IPs\n\n'));
  t.true(endedByServer.get(P.webprocs), 'the server closed the stream after the error event');
});

test('nodes: H delete as recorded; the undecodable value of I sends nothing', (t) => {
  const got = checkStream(t, P.nodes);
  t.deepEqual(got.map((e) => e.event), ['init', 'delete']);
  for (const [i, w] of expectedEvents(P.nodes).entries()) t.is(got[i]?.data, w.data, `event ${i}: bytes`);
  t.false(got.some((e) => e.data.includes('node9')), 'step I (node9 = "garbage") never shows');
  t.false(endedByServer.get(P.nodes));
});

test('depends: J delete with data {}', (t) => {
  const got = checkStream(t, P.depends);
  t.deepEqual(got.map((e) => [e.event, e.event === 'init' ? e.data === recorded(P.depends).events[0].data : e.data]), [
    ['init', true],
    ['delete', '{}'],
  ]);
  t.false(endedByServer.get(P.depends));
});

test('coreinfowatcher appname=console: one update when console.web.web loses its IP (K)', (t) => {
  const got = checkStream(t, P.coreinfo);
  t.deepEqual(got.map((e) => e.event), ['init', 'update']);
  for (const [i, w] of expectedEvents(P.coreinfo).entries()) t.is(got[i]?.data, w.data, `event ${i}: bytes`);
  t.false(endedByServer.get(P.coreinfo));
});
