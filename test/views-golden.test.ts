// Every non-watch answer the original lainlet gave for fixtures/cluster-small.json
// (golden/cluster-small.json "plain"), then again after the fixture's watch mutations ("after"),
// replayed against the endpoint views: same status, same bytes.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { referencePath } from './helpers/reference.js';
import { createEndpoints, requestFromUrl } from '../agent/api/endpoints/index.js';
import type { Answer, Endpoint } from '../agent/api/types.js';
import { Cache } from '../agent/cache.js';
import { Indexes } from '../agent/indexes/index.js';

const SHARED = referencePath('.').replace(/\/$/, '');

interface Fixture {
  kvs: Record<string, string>;
  watch: { mutations: Array<{ op: 'put' | 'del'; key: string; value?: string }> };
}
interface GoldenAnswer { path: string; from: string; method?: string; statusOnly?: boolean; status: number; body: string }
interface Golden { hostname: string; plain: GoldenAnswer[]; after: GoldenAnswer[] }

const fixture = JSON.parse(readFileSync(`${SHARED}/fixtures/cluster-small.json`, 'utf8')) as Fixture;
const golden = JSON.parse(readFileSync(`${SHARED}/golden/cluster-small.json`, 'utf8')) as Golden;

// As recorded: `-ip 127.0.0.1`, hostname node1, auth on.
const NODE_IP = '127.0.0.1';

function loadedIndexes(): Indexes {
  const indexes = new Indexes();
  const cache = new Cache();
  cache.onChange((changes) => indexes.apply(changes));
  cache.replace(1, Object.entries(fixture.kvs), 'hub');
  return indexes;
}

function mutatedIndexes(): Indexes {
  const indexes = loadedIndexes();
  for (const m of fixture.watch.mutations) {
    indexes.apply(m.op === 'put' ? { puts: [[m.key, m.value!]], dels: [] } : { puts: [], dels: [m.key] });
  }
  return indexes;
}

/** Go's GetBool for `watch`: anything but "", "0" and "false" starts a stream (the HTTP layer's job). */
function isWatch(path: string): boolean {
  const value = requestFromUrl(path, NODE_IP).query('watch');
  return value !== '' && value !== '0' && value !== 'false';
}

function ask(endpoints: Endpoint[], path: string, from: string): Answer | undefined {
  const req = requestFromUrl(path, from);
  const endpoint = endpoints.find((e) => e.path === req.path);
  if (!endpoint) return undefined;
  const resolved = endpoint.resolve(req);
  return 'scope' in resolved ? endpoint.render(resolved.scope) : resolved;
}

/** The original emits these arrays in Go map order (random): compare them as sets (golden/README.md). */
function isUnordered(path: string): boolean {
  const route = requestFromUrl(path, NODE_IP).path;
  return route === '/v2/procwatcher' || route === '/v2/localspecquery';
}

function canonical(path: string, answer: { status: number; body: string }): string {
  if (answer.status !== 200 || !isUnordered(path)) return answer.body;
  const items = (JSON.parse(answer.body) as unknown[]).map((item) => JSON.stringify(item));
  return '[' + items.sort().join(',') + ']';
}

function replay(group: 'plain' | 'after', entries: GoldenAnswer[], endpoints: () => Endpoint[]): void {
  entries.forEach((entry, i) => {
    if (entry.method && entry.method !== 'GET') return; // method routing: the HTTP layer's
    if (isWatch(entry.path)) return; // event streams: the HTTP layer's
    test(`${group} #${i} ${entry.path} from ${entry.from}`, (t) => {
      const answer = ask(endpoints(), entry.path, entry.from);
      if (answer === undefined) {
        // Unknown routes are the HTTP layer's 404s; anything else must have an endpoint.
        t.is(entry.status, 404, `no endpoint serves ${entry.path}`);
        return;
      }
      const expected = DEVIATIONS.get(`${group} ${entry.path}`) ?? entry;
      t.is(answer.status, expected.status);
      if (!entry.statusOnly) t.is(canonical(entry.path, answer), canonical(entry.path, expected));
    });
  });
}

/**
 * Where the agent deliberately differs from the recording (API.md §11). After the mutations,
 * hello.web.web's instance 1 moved from 172.20.0.11 to 172.20.0.99; the original never forgot
 * the old IP, the agent's auth table reflects the current state (§11 item 5).
 */
const DEVIATIONS = new Map<string, { status: number; body: string }>([
  ['after /appname?ip=172.20.0.11', { status: 500, body: 'unkown address 172.20.0.11' }],
]);

let before: Endpoint[] | undefined;
let after: Endpoint[] | undefined;
const endpointsOf = (indexes: Indexes) => createEndpoints({ indexes, nodeIp: NODE_IP, hostname: golden.hostname, noauth: false });

replay('plain', golden.plain, () => (before ??= endpointsOf(loadedIndexes())));
replay('after', golden.after, () => (after ??= endpointsOf(mutatedIndexes())));

test('the deviation from the recording is the moved IP only: its new IP maps to hello', (t) => {
  const endpoints = endpointsOf(mutatedIndexes());
  t.deepEqual(ask(endpoints, '/appname?ip=172.20.0.99', NODE_IP), { status: 200, body: '{"appname":"hello"}' });
});

test('procwatcher lists pod groups in etcd key order', (t) => {
  const endpoints = endpointsOf(loadedIndexes());
  const answer = ask(endpoints, '/v2/procwatcher?appname=hello', NODE_IP)!;
  const procNames = (JSON.parse(answer.body) as Array<{ proc: Array<{ ProcName: string }> }>).map((pg) => pg.proc[0].ProcName);
  // hello/hello.web.web sorts before hello/hello.worker.cron.
  t.deepEqual(procNames, ['web', 'cron']);
});

test('localspecquery lists its strings sorted', (t) => {
  const endpoints = endpointsOf(loadedIndexes());
  const answer = ask(endpoints, '/v2/localspecquery?nodeip=192.168.77.21', NODE_IP)!;
  const specs = JSON.parse(answer.body) as string[];
  t.true(specs.length > 1);
  t.deepEqual(specs, [...specs].sort());
});

test('localspecwatcher answers exactly what localspecquery answers', (t) => {
  const endpoints = endpointsOf(loadedIndexes());
  for (const node of ['192.168.77.21', 'node2', '']) {
    t.deepEqual(
      ask(endpoints, `/v2/localspecwatcher?nodeip=${node}`, NODE_IP),
      ask(endpoints, `/v2/localspecquery?nodeip=${node}`, NODE_IP),
    );
  }
  t.false(endpoints.find((e) => e.path === '/v2/localspecquery')!.watchable);
  t.true(endpoints.find((e) => e.path === '/v2/localspecwatcher')!.watchable);
});
