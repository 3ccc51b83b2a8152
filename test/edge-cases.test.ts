// fixtures/edge-cases.json loaded on top of cluster-small (API.md §12), breaking keys included,
// checked against the original's raw transcripts wherever the agent behaves the same, and
// against API.md §11 where it deliberately behaves better.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { referencePath } from './helpers/reference.js';
import { createEndpoints, requestFromUrl } from '../agent/api/endpoints/index.js';
import type { Answer, Endpoint } from '../agent/api/types.js';
import { Cache } from '../agent/cache.js';
import { Indexes } from '../agent/indexes/index.js';
import { encodeGeneric } from '../shared/gojson.js';

const SHARED = referencePath('.').replace(/\/$/, '');
const cluster = JSON.parse(readFileSync(`${SHARED}/fixtures/cluster-small.json`, 'utf8')) as { kvs: Record<string, string> };
const edgeFile = JSON.parse(readFileSync(`${SHARED}/fixtures/edge-cases.json`, 'utf8')) as Record<string, unknown>;
const goldenSmall = JSON.parse(readFileSync(`${SHARED}/golden/cluster-small.json`, 'utf8')) as {
  plain: Array<{ path: string; from: string; status: number; body: string }>;
};
// A space-separated list in the fixture.
const BREAKING_KEYS = (edgeFile._breaking_keys as string).split(/\s+/).filter(Boolean);
const EDGE_KVS = Object.entries(edgeFile).filter((kv): kv is [string, string] => !kv[0].startsWith('_'));
const FLOATINST = '/lain/deployd/pod_groups/floatinst/floatinst.worker.worker';

// The transcripts were recorded with -ip=192.168.77.21 and hostname node1; "local" requests come from the node IP.
const NODE_IP = '192.168.77.21';
const HOSTNAME = 'node1';

interface Warning { obj: object; msg: string }

function state(withEdge: boolean): { indexes: Indexes; endpoints: Endpoint[]; warnings: Warning[] } {
  const warnings: Warning[] = [];
  const indexes = new Indexes({ logger: { warn: (obj, msg) => warnings.push({ obj, msg }) } });
  const cache = new Cache();
  cache.onChange((changes) => indexes.apply(changes));
  cache.replace(1, [...Object.entries(cluster.kvs), ...(withEdge ? EDGE_KVS : [])], 'hub');
  return { indexes, endpoints: createEndpoints({ indexes, nodeIp: NODE_IP, hostname: HOSTNAME, noauth: false }), warnings };
}

const full = state(true);
const small = state(false);

function ask(endpoints: Endpoint[], path: string, from = NODE_IP): Answer {
  const req = requestFromUrl(path, from);
  const endpoint = endpoints.find((e) => e.path === req.path);
  if (!endpoint) throw new Error(`no endpoint for ${path}`);
  const resolved = endpoint.resolve(req);
  return 'scope' in resolved ? endpoint.render(resolved.scope) : resolved;
}

interface Exchange {
  title: string;
  from: string;
  path: string;
  status: number;
  contentType: string;
  body: string;
  /** False when the transcript shows only the start of the body. */
  complete: boolean;
}

/** The `### … GET <path>` sections of a raw HTTP transcript. */
function parseTranscript(file: string): Exchange[] {
  const text = readFileSync(`${SHARED}/golden/transcripts/${file}`, 'utf8');
  return text.split(/\n(?=### )/).filter((s) => s.startsWith('### ')).map((section) => {
    const [title, ...rest] = section.split('\n');
    const request = /(?:\(from (\S+)\) )?GET (\S+)/.exec(title)!;
    // Header lines end in CRLF as sent (except the elided Date), the annotations in LF.
    const [headers, ...bodyParts] = rest.join('\n').split(/\r?\n\r?\n/);
    const body = bodyParts.join('\n\n').split(/\n\n(?=# )/)[0].replace(/\n+$/, '');
    const length = /Content-Length: (\d+)/.exec(headers);
    return {
      title: title.slice(4),
      from: request[1] ?? NODE_IP,
      path: request[2],
      status: Number(/^HTTP\/1\.1 (\d+)/.exec(headers)![1]),
      contentType: /Content-Type: ([^\r\n]+)/.exec(headers)?.[1] ?? '',
      body,
      complete: length ? Number(length[1]) === Buffer.byteLength(body) : isJson(body),
    };
  });
}

function isJson(text: string): boolean {
  try { JSON.parse(text); return true; } catch { return false; }
}

function isWatch(path: string): boolean {
  const watch = requestFromUrl(path, NODE_IP).query('watch');
  return watch !== '' && watch !== '0' && watch !== 'false';
}

/** localspecquery's strings are in random order in the recordings: compare them as sets. */
function canonical(path: string, body: string): string {
  if (requestFromUrl(path, NODE_IP).path !== '/v2/localspecquery' || !isJson(body)) return body;
  return encodeGeneric((JSON.parse(body) as string[]).sort());
}

/**
 * floatinst (`"InstanceNo": 1.0`) poisoned the original's whole pod-group load, so the
 * recordings were made without it. The agent decodes it leniently (API.md §11 item 2 allows
 * either) and serves it like any app: remove its members before comparing with the recording.
 * encodeGeneric writes every object with its keys sorted, as Go writes a map; the structs in
 * these answers list their fields in that order too, so the bytes stay comparable.
 */
function withoutFloatinst(body: string): string {
  if (!body.includes('floatinst') || !isJson(body)) return body;
  const value = JSON.parse(body) as unknown;
  const mentions = (v: unknown) => encodeGeneric(v).includes('floatinst');
  if (Array.isArray(value)) return encodeGeneric(value.filter((item) => !mentions(item)));
  const kept = Object.entries(value as Record<string, unknown>).filter(([k, v]) => !k.includes('floatinst') && !mentions(v));
  return encodeGeneric(Object.fromEntries(kept));
}

function compareWithRecording(t: import('ava').ExecutionContext, answer: Answer, recorded: Exchange): void {
  t.is(answer.status, recorded.status);
  const ours = canonical(recorded.path, withoutFloatinst(answer.body));
  const theirs = canonical(recorded.path, recorded.body);
  if (recorded.complete) t.is(ours, theirs);
  else t.true(ours.startsWith(theirs), `answer does not start with the recorded ${theirs.length} characters`);
}

// ---- the original's answers, where the agent behaves the same ----

const isPanicPage = (e: Exchange) => e.status === 500 && e.contentType.startsWith('text/html');

for (const recorded of parseTranscript('edge-cases.get-from-local-ip.txt')) {
  if (isPanicPage(recorded)) continue; // API.md §11 item 4: see the "no panic" tests below
  test(`edge transcript: ${recorded.title}`, (t) => {
    compareWithRecording(t, ask(full.endpoints, recorded.path, recorded.from), recorded);
  });
}

const authTranscript = parseTranscript('auth-by-source-ip.txt');
const EDGE_PART_STARTS = authTranscript.findIndex((e) => e.title.startsWith("app 'con'"));

/** API.md §11 item 5: super apps match by exact name; `con` is not super because `console` is. */
const AUTH_DEVIATIONS = new Map<string, Answer>([
  ["app 'con' (prefix of super app console) asks for secret config  (from 172.20.1.81) GET /v2/configwatcher?target=vips",
    { status: 400, body: 'authorize failed, super required' }],
  ["app 'con' asks nodes  (from 172.20.1.81) GET /v2/nodes?name=node1", { status: 400, body: 'authorize failed, super required' }],
]);

authTranscript.forEach((recorded, i) => {
  if (isWatch(recorded.path)) return; // event streams: the HTTP layer's
  const loaded = i < EDGE_PART_STARTS ? small : full;
  test(`auth transcript: ${recorded.title}`, (t) => {
    const answer = ask(loaded.endpoints, recorded.path, recorded.from);
    const deviation = AUTH_DEVIATIONS.get(recorded.title);
    if (deviation) t.deepEqual(answer, deviation);
    else compareWithRecording(t, answer, recorded);
  });
});

test('every deviation from the auth transcript names a recorded request', (t) => {
  for (const title of AUTH_DEVIATIONS.keys()) t.true(authTranscript.some((e) => e.title === title), title);
});

// ---- API.md §11: where the agent deliberately differs ----

test('§11.2: the breaking keys blank nothing: other apps keep their data', (t) => {
  for (const path of ['/v2/procwatcher?appname=hello', '/v2/coreinfowatcher?appname=hello', '/v2/depends?target=redis-service']) {
    const recorded = goldenSmall.plain.find((e) => e.path === path && e.from === '127.0.0.1')!;
    const answer = ask(full.endpoints, path);
    t.is(answer.status, recorded.status, path);
    t.is(canonical(path, answer.body), canonical(path, recorded.body), path);
  }
  // Portal IPs still map although depends/pods/broken.portal.portal-x does not decode.
  t.deepEqual(ask(full.endpoints, '/appname?ip=172.20.0.32'), { status: 200, body: '{"appname":"redis-service"}' });
});

test('§11.2: where the original blanked a whole watcher, the agent serves every good value', (t) => {
  for (const recorded of parseTranscript('edge-cases-breaking.get-from-local-ip.txt')) {
    const route = requestFromUrl(recorded.path, NODE_IP).path;
    if (route === '/debug' || !recorded.path.startsWith('/')) continue;
    if (recorded.title.startsWith('HEAD') || recorded.title.startsWith('POST')) continue;
    const answer = ask(full.endpoints, recorded.path);
    if (route === '/v2/nodes' || route === '/v2/configwatcher') {
      compareWithRecording(t, answer, recorded); // not affected in the original either
    } else {
      t.is(answer.status, 200, recorded.path);
      t.notDeepEqual(answer.body, recorded.body, `${recorded.path} is blank as in the original`);
    }
  }
});

test('§11.2: undecodable values are listed in stats with their error, logged once, and only they', (t) => {
  const expectedBad = [
    ...BREAKING_KEYS.filter((k) => k !== FLOATINST),
    '/lain/nodes/nodes/node6:192.168.77.26:22',
    '/lain/nodes/nodes/node7:192.168.77.27:22',
    '/lain/nodes/nodes/node9:192.168.77.29:22',
  ].sort();
  const bad = full.indexes.stats().badValues;
  t.deepEqual(bad.map((b) => b.key).sort(), expectedBad);
  for (const b of bad) {
    t.true(b.error.length > 0);
    t.false(b.servingPrevious);
  }
  t.deepEqual(full.warnings.map((w) => (w.obj as { key: string }).key).sort(), expectedBad);
  // Writing the same bad values again logs nothing new.
  const warned = full.warnings.length;
  const changes = full.indexes.apply({ puts: EDGE_KVS.filter(([k]) => expectedBad.includes(k)), dels: [] });
  t.deepEqual(changes, {});
  t.is(full.warnings.length, warned);
});

test('§11.2: a wrongly typed value names the field', (t) => {
  const wrongtype = full.indexes.stats().badValues.find((b) => b.key.includes('wrongtype'))!;
  t.regex(wrongtype.error, /Spec/);
});

test('§11.2: floatinst ("InstanceNo": 1.0) is decoded leniently and served as an int', (t) => {
  t.deepEqual(ask(full.endpoints, '/v2/procwatcher?appname=floatinst'), {
    status: 200, body: '[{"proc":[{"InstanceNo":1,"IP":"172.20.1.121","Port":0,"ProcName":"worker"}]}]',
  });
});

test('§11.4: procwatcher reports a pod without containers as having no IP', (t) => {
  const answer = ask(full.endpoints, '/v2/procwatcher?appname=pending');
  t.is(answer.status, 200);
  const [group] = JSON.parse(answer.body) as Array<{ proc: unknown[] }>;
  t.deepEqual(group.proc[1], { InstanceNo: 2, IP: '', Port: 0, ProcName: '' });
  t.deepEqual(group.proc[0], { InstanceNo: 1, IP: '172.20.1.1', Port: 8080, ProcName: 'web' });
});

test('§11.4: streamprocs gives a pod without containers no host and counts it dead', (t) => {
  const answer = ask(full.endpoints, '/v2/streamrouter/streamprocs?appname=stream-pending');
  t.is(answer.status, 200);
  const procs = (JSON.parse(answer.body) as Record<string, Array<{ Upstreams: unknown[] }>>)['stream-pending'];
  t.deepEqual(procs[0].Upstreams, [{ Host: '172.20.1.51', InstanceNo: 1 }, { Host: '', InstanceNo: 2 }]);

  // All apps: 4 of 5 stream pods have an IP, so it answers; the other apps read as recorded.
  const all = ask(full.endpoints, '/v2/streamrouter/streamprocs');
  t.is(all.status, 200);
  const byApp = JSON.parse(all.body) as Record<string, unknown>;
  const recordedOdd = parseTranscript('edge-cases.get-from-local-ip.txt').find((e) => e.path.endsWith('appname=stream-odd'))!;
  const recordedEcho = goldenSmall.plain.find((e) => e.path === '/v2/streamrouter/streamprocs' && e.from === '127.0.0.1')!;
  t.deepEqual(byApp['stream-odd'], (JSON.parse(recordedOdd.body) as Record<string, unknown>)['stream-odd']);
  t.deepEqual(byApp['tcp-echo'], (JSON.parse(recordedEcho.body) as Record<string, unknown>)['tcp-echo']);
  t.deepEqual(Object.keys(byApp), ['stream-odd', 'stream-pending', 'tcp-echo']);

  // A scope without any stream proc still gets the guard's error, as in the original.
  t.deepEqual(ask(full.endpoints, '/v2/streamrouter/streamprocs?appname=lostip'),
    { status: 500, body: 'over half of the containers lost their IPs' });
});

test('§11.5: `con` is not a super app although it prefixes `console`, but reads its own data', (t) => {
  t.false(full.indexes.isSuperApp('con'));
  t.deepEqual(ask(full.endpoints, '/v2/configwatcher?target=vips', '172.20.1.81'), { status: 400, body: 'authorize failed, super required' });
  t.deepEqual(ask(full.endpoints, '/appname', '172.20.1.81'), { status: 400, body: 'authorize failed, super required' });
  t.is(ask(full.endpoints, '/v2/procwatcher?appname=con', '172.20.1.81').status, 200);
  // console itself is super.
  t.is(ask(full.endpoints, '/v2/configwatcher?target=vips', '172.20.0.4').status, 200);
});

test('§11.5: an IP listed by two pod groups maps to the later key; when that one goes, back to the other', (t) => {
  const { indexes, endpoints } = state(true);
  t.deepEqual(ask(endpoints, '/appname?ip=172.20.0.11'), { status: 200, body: '{"appname":"stale"}' });
  indexes.apply({ puts: [], dels: ['/lain/deployd/pod_groups/stale/stale.worker.worker'] });
  t.deepEqual(ask(endpoints, '/appname?ip=172.20.0.11'), { status: 200, body: '{"appname":"hello"}' });
  t.is(ask(endpoints, '/v2/procwatcher?appname=hello', '172.20.0.11').status, 200);
});

test('§5: a portal container fronting two services may read both, and no client of them', (t) => {
  const { indexes, endpoints } = state(false);
  const redisPortal = '/lain/deployd/depends/pods/redis-service.portal.portal-redis';
  // A second portal key listing the same portal containers: 172.20.0.32 now fronts two services.
  indexes.apply({ puts: [['/lain/deployd/depends/pods/webrouter.portal.portal-x', cluster.kvs[redisPortal]]], dels: [] });
  t.deepEqual(indexes.servicesOfPortalIp('172.20.0.32'), ['redis-service', 'webrouter']);
  t.deepEqual(ask(endpoints, '/appname?ip=172.20.0.32'), { status: 200, body: '{"appname":"redis-service"}' });
  t.is(ask(endpoints, '/v2/procwatcher?appname=redis-service', '172.20.0.32').status, 200);
  t.is(ask(endpoints, '/v2/procwatcher?appname=webrouter', '172.20.0.32').status, 200);
  t.deepEqual(ask(endpoints, '/v2/procwatcher?appname=hello', '172.20.0.32'), { status: 400, body: 'authorize failed, no permission' });
  // Portal IPs are never super, even when fronting a super app.
  t.deepEqual(ask(endpoints, '/v2/nodes', '172.20.0.32'), { status: 400, body: 'authorize failed, super required' });
});

test('-noauth: every check passes; /appname still looks the address up', (t) => {
  const indexes = small.indexes;
  const endpoints = createEndpoints({ indexes, nodeIp: NODE_IP, hostname: HOSTNAME, noauth: true });
  t.is(ask(endpoints, '/v2/nodes', '10.9.9.9').status, 200);
  t.is(ask(endpoints, '/v2/configwatcher', '10.9.9.9').status, 200);
  t.is(ask(endpoints, '/v2/procwatcher?appname=*', '10.9.9.9').body, '[]'); // lainlet looks up "*/"
  t.is(ask(endpoints, '/v2/coreinfowatcher', '10.9.9.9').body, ask(small.endpoints, '/v2/coreinfowatcher').body);
  t.deepEqual(ask(endpoints, '/appname', '10.9.9.9'), { status: 500, body: 'unkown address 10.9.9.9' });
});

test('IPv4-mapped and IPv6 loopback callers are local', (t) => {
  t.is(ask(small.endpoints, '/v2/nodes', '::ffff:127.0.0.1').status, 200);
  t.is(ask(small.endpoints, '/v2/nodes', '::1').status, 200);
  t.is(ask(small.endpoints, `/v2/nodes`, `::ffff:${NODE_IP}`).status, 200);
  t.is(ask(small.endpoints, '/v2/procwatcher?appname=hello', '::ffff:172.20.0.11').status, 200);
});

test('IPv4-mapped callers are their IPv4 address for every check: container, super app, portal', (t) => {
  const { endpoints } = state(false);
  t.is(ask(endpoints, '/v2/procwatcher?appname=hello', '::ffff:172.20.0.11').status, 200, 'pass: own app');
  t.is(ask(endpoints, '/v2/procwatcher?appname=*', '::ffff:172.20.0.11').status, 400, 'pass: not every app');
  t.is(ask(endpoints, '/v2/procwatcher?appname=redis-service', '::ffff:172.20.0.32').status, 200, 'pass: the portal\'s service');
  t.deepEqual(ask(endpoints, '/appname?ip=::ffff:172.20.0.11:80'), { status: 200, body: '{"appname":"hello"}' }, 'an asked-for address in the mapped form, with a port');
});

test('localspecquery without a node and without -ip is "empty key"', (t) => {
  const endpoints = createEndpoints({ indexes: small.indexes, nodeIp: '', hostname: HOSTNAME, noauth: false });
  t.deepEqual(ask(endpoints, '/v2/localspecquery', '127.0.0.1'), { status: 500, body: 'empty key' });
  t.is(ask(endpoints, '/v2/localspecquery?nodeip=node1', '127.0.0.1').status, 200);
});

// ---- API.md §12 cases not covered by a recording ----

test('§12 orphan: listed by appswatcher, but appname=orphan finds nothing', (t) => {
  t.true((JSON.parse(ask(full.endpoints, '/v2/appswatcher').body) as { orphan?: unknown }).orphan !== undefined);
  t.deepEqual(ask(full.endpoints, '/v2/procwatcher?appname=orphan'), { status: 200, body: '[]' });
  t.deepEqual(ask(full.endpoints, '/v2/coreinfowatcher?appname=orphan'), { status: 200, body: '{}' });
  // It is a pod group with containers all the same: /v2/containers lists it.
  t.true(ask(full.endpoints, '/v2/containers?nodename=node3').body.includes('"proc":"orphan.worker.worker"'));
});

test('§12 secret by prefix: vipx, sslcert/…, dns_ip_backup need a super caller', (t) => {
  for (const target of ['vipx', 'sslcert/example.com', 'dns_ip_backup']) {
    t.deepEqual(ask(full.endpoints, `/v2/configwatcher?target=${encodeURIComponent(target)}`, '172.20.0.12'),
      { status: 400, body: 'authorize failed, super required' }, target);
    const local = ask(full.endpoints, `/v2/configwatcher?target=${encodeURIComponent(target)}`);
    t.is(local.status, 200);
    t.deepEqual(JSON.parse(local.body), { [target]: edgeFile[`/lain/config/${target}`] });
  }
});

test('§12 legacy (2-part name) is no web proc but proxywatcher lists it', (t) => {
  t.false(ask(full.endpoints, '/v2/webrouter/webprocs').body.includes('legacy'));
  t.true(ask(full.endpoints, '/v2/proxywatcher').body.includes('"legacy.web"'));
});

test('§12 lostip: the ratio guard is global over the scope', (t) => {
  t.is(ask(full.endpoints, '/v2/webrouter/webprocs?appname=lostip').status, 500);
  // Over all apps most web pods have an IP, so lostip is served with its empty IPs.
  const all = ask(full.endpoints, '/v2/webrouter/webprocs');
  t.is(all.status, 200);
  t.true(all.body.includes('"lostip.web.web"'));
});
