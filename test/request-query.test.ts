// Go's Request.FormValue (as of Go 1.10) over a raw query, as agent/api/endpoints/request.ts reads
// it on every request; and the answer cache's bound, per-entry bytes and sweeps (agent/api/answers.ts).
import test from 'ava';
import { parseQuery, requestFromUrl } from '../agent/api/endpoints/request.js';
import { createEndpoints } from '../agent/api/endpoints/index.js';
import { AnswerCache } from '../agent/api/answers.js';
import type { Endpoint } from '../agent/api/types.js';
import { Cache } from '../agent/cache.js';
import { Indexes } from '../agent/indexes/index.js';
import { StreamHub } from '../agent/streams.js';
import { readReferenceJson } from './helpers/reference.js';

test('pairs split on "&" and ";"; empty pairs are skipped; the first value of a name wins', (t) => {
  t.deepEqual([...parseQuery('a=1&b=2;c=3')], [['a', '1'], ['b', '2'], ['c', '3']]);
  t.deepEqual([...parseQuery('&&a=1;;&a=2&')], [['a', '1']]);
  t.deepEqual([...parseQuery('')], []);
  t.deepEqual([...parseQuery(';')], []);
  t.deepEqual([...parseQuery('x')], [['x', '']]);
  t.deepEqual([...parseQuery('x=&y==1')], [['x', ''], ['y', '=1']]);
});

test('"+" is a space, %XX is decoded, a pair with a bad escape is dropped', (t) => {
  t.deepEqual([...parseQuery('a=b+c&%61%3d=%26&bad=%zz&bad=ok&c%=1')], [['a', 'b c'], ['a=', '&'], ['bad', 'ok']]);
  t.deepEqual([...parseQuery('t=%C3%A9%FF')], [['t', 'é\uFFFD']]);
});

test('requestFromUrl: route path without one trailing slash, FormValue semantics, the peer normalised', (t) => {
  const req = requestFromUrl('/v2/procwatcher/?appname=hello;appname=x', '::ffff:10.0.0.1');
  t.is(req.path, '/v2/procwatcher');
  t.is(req.query('appname'), 'hello');
  t.is(req.query('none'), '');
  t.is(req.remoteIp, '10.0.0.1');
});

function endpoint(path: string): Endpoint {
  return { path, watchable: true, index: 'config', resolve: () => ({ scope: '' }), render: (scope) => ({ status: 200, body: `${path}:${scope}` }) };
}

test('answer cache: one render per (endpoint, scope, generation); bounded; the bytes of an entry encoded once', (t) => {
  let gen = 1;
  const cache = new AnswerCache(() => gen, 3, 0);
  const a = endpoint('/a');
  const b = endpoint('/b');
  t.is(cache.get(a, 'x').body, '/a:x');
  t.is(cache.get(b, 'x').body, '/b:x', 'same scope, another endpoint: its own answer');
  t.is(cache.get(a, 'x').body, '/a:x');
  t.is(cache.renders, 2);
  t.is(cache.hits, 1);
  const entry = cache.entry(a, 'x');
  t.is(cache.encodedBody(entry), cache.encodedBody(cache.entry(a, 'x')), 'the same Buffer');
  t.is(cache.encodedBody(entry).toString(), '/a:x');
  gen = 2;
  t.not(cache.entry(a, 'x'), entry, 'a new generation renders again');
  t.is(cache.renders, 3);
  cache.get(a, 'y');
  t.is(cache.renders, 4);
  // Three entries held (a:x, b:x, a:y): a fourth clears the map first.
  cache.get(b, 'z');
  t.is(cache.renders, 5);
  cache.get(b, 'z');
  t.is(cache.renders, 5, 'the new one is kept');
  cache.get(a, 'x');
  t.is(cache.renders, 6, 'the old ones were dropped');
});

test('answer cache sweep: an answer asked for since the last sweep is kept; one not asked for during a whole period is dropped', (t) => {
  const cache = new AnswerCache(() => 1, 10, 0);
  const a = endpoint('/a');
  const first = cache.entry(a, 'x');
  cache.entry(a, 'y');
  cache.sweep(); // both were asked for since they were rendered
  t.is(cache.held, 2);
  t.is(cache.dropped, 0);
  t.is(cache.entry(a, 'x'), first, 'asked for again: the same entry, not a render');
  cache.sweep(); // x was asked for in this period, y was not
  t.is(cache.held, 1);
  t.is(cache.dropped, 1);
  t.is(cache.entry(a, 'x'), first);
  t.is(cache.renders, 2);
  cache.entry(a, 'y');
  t.is(cache.renders, 3, 'the dropped answer is rendered again when asked for');
  cache.sweep();
  cache.sweep();
  t.is(cache.held, 0, 'nothing asked for during a period: nothing held');
});

test('answer cache sweep timer: one per cache, not holding the process, cleared at close (a stopped agent is not kept alive by it)', (t) => {
  const timerOf = (c: AnswerCache) => (c as unknown as { sweeper?: NodeJS.Timeout & { _destroyed: boolean } }).sweeper;
  const cache = new AnswerCache(() => 1);
  const timer = timerOf(cache);
  t.truthy(timer, 'the sweep timer runs');
  t.false(timer!.hasRef(), 'it does not keep the process alive');
  t.false(timer!._destroyed);
  cache.close();
  t.true(timer!._destroyed, 'close clears it');
  t.is(timerOf(new AnswerCache(() => 1, 10, 0)), undefined, 'sweepMs 0: no timer at all');
});

test('answer cache sweep: an answer whose index has moved on is dropped even if it was asked for; others are kept', (t) => {
  const gens = { config: 1, podgroups: 1, containers: 1, depends: 1, nodes: 1 };
  const cache = new AnswerCache((index) => gens[index], 10, 0);
  const onConfig = endpoint('/c');
  const onPods: Endpoint = { ...endpoint('/p'), index: 'podgroups' };
  const kept = cache.entry(onConfig, 'x');
  cache.entry(onPods, 'x');
  gens.podgroups = 2;
  cache.sweep();
  t.is(cache.held, 1);
  t.is(cache.dropped, 1);
  t.is(cache.entry(onConfig, 'x'), kept);
  t.is(cache.get(onPods, 'x').body, '/p:x');
  t.is(cache.renders, 3);
});

test('answer cache sweep: every endpoint\'s dropped answer is rendered again into the same bytes (cluster-small)', (t) => {
  const indexes = new Indexes();
  const state = new Cache();
  state.onChange((changes) => indexes.apply(changes));
  state.replace(1, Object.entries(readReferenceJson<{ kvs: Record<string, string> }>('fixtures/cluster-small.json').kvs), 'hub');
  const endpoints = createEndpoints({ indexes, nodeIp: '192.168.77.21', hostname: 'node1', noauth: true });
  const cache = new AnswerCache((index) => indexes.generation(index), 10_000, 0);
  const before = endpoints.map((e) => cache.encodedBody(cache.entry(e, '')));
  t.is(cache.renders, endpoints.length);
  cache.sweep();
  cache.sweep();
  t.is(cache.held, 0);
  t.is(cache.dropped, endpoints.length);
  const after = endpoints.map((e) => cache.encodedBody(cache.entry(e, '')));
  t.is(cache.renders, 2 * endpoints.length);
  for (let i = 0; i < endpoints.length; i++) {
    t.not(after[i], before[i], `${endpoints[i].path}: a new render`);
    t.true(after[i].equals(before[i]), `${endpoints[i].path}: the same bytes`);
  }
});

test('answer cache sweep: a stream whose answer was dropped still gets the next change, rendered as a fresh agent renders it', (t) => {
  const kvs = readReferenceJson<{ kvs: Record<string, string> }>('fixtures/cluster-small.json').kvs;
  const indexes = new Indexes();
  const cache = new AnswerCache((index) => indexes.generation(index), 10_000, 0);
  const streams = new StreamHub(cache, 1 << 30);
  const state = new Cache();
  state.onChange((changes) => streams.changed(indexes.apply(changes)));
  state.replace(1, Object.entries(kvs), 'hub');
  const endpoints = createEndpoints({ indexes, nodeIp: '192.168.77.21', hostname: 'node1', noauth: true });
  const coreinfo = endpoints.find((e) => e.path === '/v2/coreinfowatcher')!;
  const events: Array<{ body: string; event: string }> = [];
  const sub = streams.subscribe(coreinfo, '', (answer, event) => events.push({ body: answer.body, event }));
  cache.sweep();
  cache.sweep();
  t.is(cache.held, 0, 'the stream\'s answer is no longer held by the cache');
  // A pod group's container moves to another IP.
  const key = Object.keys(kvs).find((k) => k.startsWith('/lain/deployd/pod_groups/') && kvs[k].includes('"ContainerIp":"'))!;
  const changed = kvs[key].replace(/"ContainerIp":"[^"]*"/, '"ContainerIp":"10.99.99.99"');
  state.applyDelta(2, [[key, changed]], []);
  t.is(events.length, 1);
  t.is(events[0].event, 'update');
  t.true(events[0].body.includes('"ContainerIp":"10.99.99.99"'));
  // What an agent that never swept renders for the same state.
  const fresh = new Indexes();
  fresh.apply({ puts: Object.entries({ ...kvs, [key]: changed }), dels: [] });
  const freshCoreinfo = createEndpoints({ indexes: fresh, nodeIp: '192.168.77.21', hostname: 'node1', noauth: true }).find((e) => e.path === '/v2/coreinfowatcher')!;
  t.is(events[0].body, freshCoreinfo.render('').body);
  sub.close();
});
