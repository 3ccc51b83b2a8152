// Pins Go-compatible JSON (API.md §6) and the app-name rules of authorization (API.md §5, §11
// item 5) at the places a review found unguarded: a string whose only special character is `&`
// (or `<`, `>`) still leaves the fast path and is escaped; map keys outside the BMP sort by their
// UTF-8 bytes; and an app whose name is a prefix of another's (hello / helloworld) never gets
// the other's rights — neither its data, nor its super status and with it the secret config.
import test from 'ava';
import { createEndpoints, requestFromUrl } from '../agent/api/endpoints/index.js';
import type { Answer, Endpoint } from '../agent/api/types.js';
import { Cache } from '../agent/cache.js';
import { Indexes } from '../agent/indexes/index.js';
import { compareUtf8, encodeGeneric, encodeString } from '../shared/gojson.js';

const NODE_IP = '192.168.77.21';

function endpointsWith(kvs: Array<[string, string]>): Endpoint[] {
  const indexes = new Indexes({ logger: { warn: () => {} } });
  const cache = new Cache();
  cache.onChange((changes) => indexes.apply(changes));
  cache.replace(1, kvs, 'hub');
  return createEndpoints({ indexes, nodeIp: NODE_IP, hostname: 'node1', noauth: false });
}

function ask(endpoints: Endpoint[], path: string, from: string): Answer {
  const req = requestFromUrl(path, from);
  const endpoint = endpoints.find((e) => e.path === req.path);
  if (!endpoint) throw new Error(`no endpoint for ${path}`);
  const resolved = endpoint.resolve(req);
  return 'scope' in resolved ? endpoint.render(resolved.scope) : resolved;
}

// ---- 3. `&`, `<`, `>` on their own ------------------------------------------------------------

test('a string whose only special character is & is escaped as Go does (\\u0026)', (t) => {
  t.is(encodeString('&'), '"\\u0026"');
  t.is(encodeString('a&b'), '"a\\u0026b"');
  t.is(encodeString('AT&T && co'), '"AT\\u0026T \\u0026\\u0026 co"');
  t.is(encodeGeneric({ 'q&a': ['&'] }), '{"q\\u0026a":["\\u0026"]}');
});

test('a string whose only special character is < or > is escaped as Go does', (t) => {
  t.is(encodeString('<'), '"\\u003c"');
  t.is(encodeString('>'), '"\\u003e"');
  t.is(encodeString('a<b'), '"a\\u003cb"');
  t.is(encodeString('a>b'), '"a\\u003eb"');
  t.is(encodeGeneric({ '<k>': '>v<' }), '{"\\u003ck\\u003e":"\\u003ev\\u003c"}');
});

test('configwatcher escapes a lone & < > in config keys and values', (t) => {
  const endpoints = endpointsWith([
    ['/lain/config/q&a', 'fish&chips'],
    ['/lain/config/q<', 'a<b'],
    ['/lain/config/q>', 'a>b'],
  ]);
  t.deepEqual(ask(endpoints, '/v2/configwatcher?target=q', '10.9.9.9'), {
    status: 200,
    body: '{"q\\u0026a":"fish\\u0026chips","q\\u003c":"a\\u003cb","q\\u003e":"a\\u003eb"}',
  });
});

// ---- 4. byte-wise key order outside the BMP ----------------------------------------------------

// UTF-8 (Go) order: U+E000 (EE 80 80) < U+FFFD (EF BF BD) < U+1F600 (F0 9F 98 80).
// UTF-16 (JS) order puts U+1F600 (D83D DE00) first.
const BYTEWISE = ['a', '\u00e9', '\uE000', '\uFFFD', '\u{1F600}', '\u{10FFFF}'];

test('keys with characters outside the BMP sort byte-wise (UTF-8 order), not by UTF-16 units', (t) => {
  const shuffled = ['\u{1F600}', '\uFFFD', 'a', '\u{10FFFF}', '\uE000', '\u00e9'];
  t.deepEqual([...shuffled].sort(compareUtf8), BYTEWISE);
  t.true(compareUtf8('\u{1F600}', '\uFFFD') > 0);
  t.true(compareUtf8('\u{1F600}', '\uE000') > 0);
  t.true(compareUtf8('\uE000', '\uFFFD') < 0);
  t.true(compareUtf8('x\u{1F600}y', 'x\uFFFDz') > 0, 'the first differing character decides');
  t.true(compareUtf8('\u{1F600}', '\u{1F601}') < 0);
  // Same order as comparing the UTF-8 bytes, over a mix of BMP and astral characters.
  const chars = ['a', '~', '\u00ff', '\u07ff', '\u0800', '\ud7ff', '\ue000', '\uffee', '\uffff', '\u{10000}', '\u{1F600}', '\u{10FFFF}'];
  const words = chars.flatMap((x) => chars.map((y) => x + y));
  const byBytes = [...words].sort((x, y) => Buffer.compare(Buffer.from(x, 'utf8'), Buffer.from(y, 'utf8')));
  t.deepEqual([...words].sort(compareUtf8), byBytes);
});

test('Go maps (encodeGeneric of an object) write astral keys after U+E000-U+FFFF', (t) => {
  const expected = '{' + BYTEWISE.map((k, i) => `"${k}":${i}`).join(',') + '}';
  const obj: Record<string, number> = {};
  for (const k of ['\u{1F600}', '\uFFFD', 'a', '\u{10FFFF}', '\uE000', '\u00e9']) obj[k] = BYTEWISE.indexOf(k);
  t.is(encodeGeneric(obj), expected);
});

test('API answers list astral keys after U+E000-U+FFFF keys (configwatcher keys, node values)', (t) => {
  const endpoints = endpointsWith([
    ['/lain/config/k\u{1F600}', '1'],
    ['/lain/config/k\uFFFD', '2'],
    ['/lain/config/k\uE000', '3'],
    ['/lain/nodes/nodes/node1:192.168.77.21:22', JSON.stringify({ '\u{1F600}': 1, '\uFFFD': 2, '\uE000': 3 })],
  ]);
  t.is(ask(endpoints, '/v2/configwatcher?target=k', '10.9.9.9').body, '{"k\uE000":"3","k\uFFFD":"2","k\u{1F600}":"1"}');
  t.is(ask(endpoints, '/v2/nodes', NODE_IP).body, '{"node1:192.168.77.21:22":{"\uE000":3,"\uFFFD":2,"\u{1F600}":1}}');
});

// ---- 5. an app name that is a prefix of another ----------------------------------------------

const HELLO_IP = '172.20.0.11';
const HELLOWORLD_IP = '172.20.0.21';
/** The portal container of service "hello". */
const PORTAL_IP = '172.20.0.31';

function podGroup(app: string, proc: string, ip: string): [string, string] {
  const name = `${app}.${proc}`;
  return [`/lain/deployd/pod_groups/${app}/${name}`, JSON.stringify({
    Spec: { Name: name, Namespace: app, Pod: { Containers: [{ Image: `${app}:1`, Expose: 80 }], Annotation: '{}', Dependencies: [] } },
    Pods: [{ InstanceNo: 1, Containers: [{ Id: `${app}-c1`, NodeName: 'node1', NodeIp: NODE_IP, ContainerIp: ip, ContainerPort: 80, Runtime: { Config: { Env: [`LAIN_PROCNAME=${proc.split('.')[1]}`] } } }] }],
  })];
}

const PODS: Array<[string, string]> = [
  podGroup('hello', 'web.web', HELLO_IP),
  podGroup('helloworld', 'web.web', HELLOWORLD_IP),
  ['/lain/deployd/depends/pods/hello.portal.portal-hello', JSON.stringify({
    node1: { client: { Spec: { Annotation: '{"service_name": "hello"}' }, Pod: { Containers: [{ Id: 'p1', NodeIp: NODE_IP, ContainerIp: PORTAL_IP, ContainerPort: 80 }] } } },
  })],
  ['/lain/config/vip', '10.0.0.1'],
  ['/lain/config/domain', 'lain.local'],
];

const appsOf = (a: Answer) => Object.keys(JSON.parse(a.body) as object);

test('an app whose name is a prefix of another app cannot read that app, nor be read by it', (t) => {
  const endpoints = endpointsWith(PODS);
  t.deepEqual(ask(endpoints, '/v2/coreinfowatcher?appname=helloworld', HELLO_IP), { status: 400, body: 'authorize failed, no permission' });
  t.deepEqual(ask(endpoints, '/v2/procwatcher?appname=helloworld', HELLO_IP), { status: 400, body: 'authorize failed, no permission' });
  t.deepEqual(ask(endpoints, '/v2/coreinfowatcher?appname=hello', HELLOWORLD_IP), { status: 400, body: 'authorize failed, no permission' });
  t.deepEqual(ask(endpoints, '/v2/proxywatcher?appname=hello', HELLOWORLD_IP), { status: 400, body: 'authorize failed, no permission' });
  // The portal of service "hello" may read hello, not helloworld.
  t.is(ask(endpoints, '/v2/coreinfowatcher?appname=hello', PORTAL_IP).status, 200);
  t.deepEqual(ask(endpoints, '/v2/coreinfowatcher?appname=helloworld', PORTAL_IP), { status: 400, body: 'authorize failed, no permission' });
});

test("an app's own scope (asked for, or the fallback for *) does not take in an app its name is a prefix of", (t) => {
  const endpoints = endpointsWith(PODS);
  for (const path of ['/v2/coreinfowatcher?appname=hello', '/v2/coreinfowatcher', '/v2/coreinfowatcher?appname=*', '/v2/proxywatcher?appname=hello', '/v2/proxywatcher']) {
    const a = ask(endpoints, path, HELLO_IP);
    t.is(a.status, 200, path);
    t.deepEqual(appsOf(a), ['hello.web.web'], path);
  }
  const procs = ask(endpoints, '/v2/procwatcher?appname=hello', HELLO_IP);
  t.is(procs.status, 200);
  t.is((JSON.parse(procs.body) as unknown[]).length, 1, 'one pod group: hello.web.web only');
  t.true(procs.body.includes(HELLO_IP) && !procs.body.includes(HELLOWORLD_IP));
  // The portal's fallback is its service, exactly.
  t.deepEqual(appsOf(ask(endpoints, '/v2/coreinfowatcher', PORTAL_IP)), ['hello.web.web']);
  // A local caller asking for hello gets hello only as well.
  t.deepEqual(appsOf(ask(endpoints, '/v2/coreinfowatcher?appname=hello', NODE_IP)), ['hello.web.web']);
});

test('an app whose name is a prefix of a super app is not super: no secret config, no super-only endpoint', (t) => {
  const endpoints = endpointsWith([...PODS, ['/lain/config/super_apps/helloworld', '{}']]);
  t.deepEqual(ask(endpoints, '/v2/configwatcher?target=vip', HELLOWORLD_IP), { status: 200, body: '{"vip":"10.0.0.1"}' });
  t.deepEqual(ask(endpoints, '/v2/configwatcher?target=vip', HELLO_IP), { status: 400, body: 'authorize failed, super required' });
  t.deepEqual(ask(endpoints, '/v2/configwatcher', HELLO_IP), { status: 400, body: 'authorize failed, super required' });
  t.deepEqual(ask(endpoints, '/v2/appswatcher', HELLO_IP), { status: 400, body: 'authorize failed, super required' });
  // Non-secret config stays readable by anyone.
  t.deepEqual(ask(endpoints, '/v2/configwatcher?target=domain', HELLO_IP), { status: 200, body: '{"domain":"lain.local"}' });
  // And hello may not read helloworld's data either (helloworld's rights are not hello's).
  t.is(ask(endpoints, '/v2/coreinfowatcher?appname=helloworld', HELLO_IP).status, 400);
});

test('an app whose name a super app is a prefix of is not super: no secret config, no super-only endpoint', (t) => {
  const endpoints = endpointsWith([...PODS, ['/lain/config/super_apps/hello', '{}']]);
  t.deepEqual(ask(endpoints, '/v2/configwatcher?target=vip', HELLO_IP), { status: 200, body: '{"vip":"10.0.0.1"}' });
  t.deepEqual(ask(endpoints, '/v2/configwatcher?target=vip', HELLOWORLD_IP), { status: 400, body: 'authorize failed, super required' });
  t.deepEqual(ask(endpoints, '/v2/configwatcher?target=vips', HELLOWORLD_IP), { status: 400, body: 'authorize failed, super required' });
  t.deepEqual(ask(endpoints, '/v2/appswatcher', HELLOWORLD_IP), { status: 400, body: 'authorize failed, super required' });
  // A super hello reads everything, helloworld included.
  t.is(ask(endpoints, '/v2/coreinfowatcher?appname=helloworld', HELLO_IP).status, 200);
  t.is(ask(endpoints, '/v2/coreinfowatcher?appname=hello', HELLOWORLD_IP).status, 400);
});
