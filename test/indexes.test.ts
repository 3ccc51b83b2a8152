// The indexes: incremental updates, delete semantics (API.md §11 item 1), bad values (item 2)
// and the authorization tables (item 5).
import test from 'ava';
import { Cache } from '../agent/cache.js';
import { Indexes, type IndexChanges, type IndexesOptions } from '../agent/indexes/index.js';
import { decodeDepends } from '../agent/model/depends.js';
import { decodePodGroup } from '../agent/model/podgroup.js';
import { readReference } from './helpers/reference.js';

const cluster = JSON.parse(readReference('fixtures/cluster-small.json')) as {
  kvs: Record<string, string>;
  watch: { mutations: Array<{ op: string; key: string; value?: string }> };
};
const edge = JSON.parse(readReference('fixtures/edge-cases.json')) as Record<string, string>;
const PG = '/lain/deployd/pod_groups/';
const HELLO_WEB = `${PG}hello/hello.web.web`;
const HELLO_WEB_MOVED = cluster.watch.mutations.find((m) => m.key === HELLO_WEB)!.value!;

/**
 * Indexes fed as the agent feeds them (agent/agent.ts): every change of a Cache goes to apply(),
 * so a snapshot reaches the indexes as its difference from the cache. `reports` collects what
 * each apply() returned; `decoded` names every pod group decoded.
 */
function counting(options: IndexesOptions = {}) {
  const decoded: string[] = [];
  const indexes = new Indexes({
    ...options,
    decoders: { podGroup: (raw) => { decoded.push(decodePodGroup(raw).name); return decodePodGroup(raw); } },
  });
  const cache = new Cache();
  const reports: IndexChanges[] = [];
  cache.onChange((changes) => reports.push(indexes.apply(changes)));
  return { indexes, decoded, cache, reports };
}

function loaded(options: IndexesOptions = {}) {
  const c = counting(options);
  c.cache.replace(1, Object.entries(cluster.kvs), 'hub');
  c.decoded.length = 0;
  c.reports.length = 0;
  return c;
}

function keysOf(changes: IndexChanges, index: keyof IndexChanges): string[] {
  return (changes[index] ?? []).map((c) => `${c.key}${c.deleted ? ' (deleted)' : ''}`).sort();
}

// ---- incremental updates ----

test('a pod-group change decodes that one value and reports only the keys it touched', (t) => {
  const { indexes, decoded } = loaded();
  const generations = { ...indexes.stats().generations };
  const changes = indexes.apply({ puts: [[HELLO_WEB, HELLO_WEB_MOVED]], dels: [] });
  t.deepEqual(decoded, ['hello.web.web']);
  t.deepEqual(Object.keys(changes).sort(), ['containers', 'podgroups']);
  t.deepEqual(keysOf(changes, 'podgroups'), ['hello/hello.web.web']);
  // Instance 1 changed its IP; its container is listed under its node name and its node IP.
  const id = '1f1ae8881a56201d7c206c6492b15f849542fa01d20a631c3d9225acd48e60e7';
  t.deepEqual(keysOf(changes, 'containers'), [`192.168.77.21/${id}`, `node1/${id}`]);
  const after = indexes.stats().generations;
  t.is(after.podgroups, generations.podgroups + 1);
  t.is(after.containers, generations.containers + 1);
  t.is(after.config, generations.config);
  t.is(after.nodes, generations.nodes);
});

test('rewriting a value unchanged decodes nothing and changes nothing', (t) => {
  const { indexes, decoded } = loaded();
  const generations = indexes.stats().generations;
  t.deepEqual(indexes.apply({ puts: [[HELLO_WEB, cluster.kvs[HELLO_WEB]], ['/lain/config/domain', 'lain.local']], dels: [] }), {});
  t.deepEqual(decoded, []);
  t.deepEqual(indexes.stats().generations, generations);
});

test('a config change decodes no pod group', (t) => {
  const { indexes, decoded } = loaded();
  const changes = indexes.apply({ puts: [['/lain/config/domain', 'example.com']], dels: [] });
  t.deepEqual(decoded, []);
  t.deepEqual(changes, { config: [{ key: 'domain', deleted: false }] });
  t.is(indexes.config.get('domain')!.raw, 'example.com');
});

test('one change in a large cluster decodes one value', (t) => {
  const { indexes, decoded, cache } = counting();
  const template = cluster.kvs[`${PG}tcp-echo/tcp-echo.worker.echo`];
  const big: Array<[string, string]> = [];
  const ids = decodePodGroup(template).pods.flatMap((p) => p.containers.map((c) => c.id));
  for (let i = 0; i < 2000; i++) {
    // Every app gets its own container ids (container keys are `<node>/<id>`).
    let value = template.replaceAll('tcp-echo', `app${i}`);
    for (const id of ids) value = value.replaceAll(id, id.slice(0, 58) + String(i).padStart(6, '0'));
    big.push([`${PG}app${i}/app${i}.worker.echo`, value]);
  }
  cache.replace(1, big, 'hub');
  t.is(decoded.length, 2000);
  t.is(indexes.podGroups.size, 2000);
  decoded.length = 0;
  const changes = indexes.apply({ puts: [[`${PG}app7/app7.worker.echo`, big[7][1].replace('"InstanceNo":1', '"InstanceNo":9')]], dels: [] });
  t.deepEqual(decoded, ['app7.worker.echo']);
  t.deepEqual(keysOf(changes, 'podgroups'), ['app7/app7.worker.echo']);
  t.is(changes.containers!.length, 2); // one container, under its two keys
});

test('a new snapshot reaches the indexes as its difference from what was held', (t) => {
  const { cache, decoded, reports } = loaded();
  const snapshot = Object.entries(cluster.kvs).filter(([k]) => k !== '/lain/config/vip');
  snapshot.push(['/lain/config/domain', 'other.local']);
  cache.replace(2, snapshot, 'hub');
  t.deepEqual(decoded, []);
  t.is(reports.length, 1);
  t.deepEqual(keysOf(reports[0], 'config'), ['domain', 'vip (deleted)']);
  t.deepEqual(Object.keys(reports[0]), ['config']);
});

// ---- API.md §11 item 1: deletes are by key ----

test('deleting a key never removes keys that merely share its string prefix', (t) => {
  const { indexes } = loaded();
  const changes = indexes.apply({ puts: [], dels: ['/lain/config/vip'] });
  t.deepEqual(changes, { config: [{ key: 'vip', deleted: true }] });
  t.deepEqual(indexes.config.lookup('vips/').length, 3);
});

test('a delete removes exactly that key, never keys sharing a string prefix', (t) => {
  const { indexes } = loaded();
  const hello = cluster.kvs[HELLO_WEB];
  indexes.apply({
    puts: [[`${PG}hello-world/hello-world.web.web`, hello], [`${PG}hello/hello.web.webx`, hello]],
    dels: [],
  });
  let changes = indexes.apply({ puts: [], dels: [`${PG}hello/hello.web.web`] });
  t.deepEqual(keysOf(changes, 'podgroups'), ['hello/hello.web.web (deleted)']);
  t.truthy(indexes.podGroups.get('hello/hello.web.webx'));
  t.truthy(indexes.podGroups.get('hello-world/hello-world.web.web'));
  // A directory key is not an entry: the hub expands directory deletes into their keys.
  changes = indexes.apply({ puts: [], dels: [`${PG}hello`] });
  t.deepEqual(changes, {});
  t.truthy(indexes.podGroups.get('hello/hello.worker.cron'));
});

// ---- API.md §11 item 2: one bad value harms only itself ----

test('a bad value keeps the previous good one served, is listed in stats and logged once', (t) => {
  const warnings: object[] = [];
  const { indexes } = loaded({ logger: { warn: (obj) => warnings.push(obj) } });
  const before = indexes.podGroups.get('hello/hello.web.web')!;
  const bad = '{"Spec": "should be an object", "Pods": []}';
  t.deepEqual(indexes.apply({ puts: [[HELLO_WEB, bad]], dels: [] }), {});
  t.deepEqual(indexes.apply({ puts: [[HELLO_WEB, bad]], dels: [] }), {});
  t.is(indexes.podGroups.get('hello/hello.web.web'), before);
  t.is(warnings.length, 1);
  t.deepEqual(indexes.stats().badValues.map(({ key, servingPrevious }) => ({ key, servingPrevious })), [{ key: HELLO_WEB, servingPrevious: true }]);
  t.regex(indexes.stats().badValues[0].error, /Spec/);

  // A good value replaces it and clears the report.
  indexes.apply({ puts: [[HELLO_WEB, HELLO_WEB_MOVED]], dels: [] });
  t.deepEqual(indexes.stats().badValues, []);
  t.is(indexes.podGroups.get('hello/hello.web.web')!.pg.pods[0].containers[0].containerIp, '172.20.0.99');

  // A bad value for a new key is not served at all; deleting the key forgets the report.
  indexes.apply({ puts: [[`${PG}broken/broken.web.web`, 'not json']], dels: [] });
  t.is(indexes.podGroups.get('broken/broken.web.web'), undefined);
  t.is(indexes.stats().badValues[0].servingPrevious, false);
  indexes.apply({ puts: [], dels: [`${PG}broken/broken.web.web`] });
  t.deepEqual(indexes.stats().badValues, []);
});

test('decoding follows Go: case-insensitive keys, null is the zero value, wrong types name the field', (t) => {
  const lower = decodePodGroup(edge[`${PG}lowercase/lowercase.worker.worker`]);
  t.is(lower.namespace, 'lowercase');
  t.is(lower.pods[0].instanceNo, 1);
  t.is(lower.pods[0].containers[0].containerIp, '172.20.1.111');
  t.is(lower.pods[0].containers[0].procName, 'worker');

  const empty = decodePodGroup('null');
  t.deepEqual([empty.name, empty.pods, empty.containerSpecs], ['', [], []]);
  t.deepEqual(decodePodGroup('{"Pods": null}').pods, []);

  t.throws(() => decodePodGroup('{"Pods": [{"InstanceNo": "1"}]}'), { message: /Pods\[0\]\.InstanceNo/ });
  t.throws(() => decodePodGroup('{"Pods": [{"InstanceNo": 1.5}]}'), { message: /InstanceNo/ });
  t.throws(() => decodePodGroup('[1]'));
  t.throws(() => decodePodGroup('{"Spec": {"Pod": {"Containers": [{"Env": [1]}]}}}'), { message: /Env\[0\]/ });
});

test('node values: objects and null are kept, anything else is reported', (t) => {
  const { indexes } = loaded();
  indexes.apply({
    puts: [
      ['/lain/nodes/nodes/a:1:22', 'null'],
      ['/lain/nodes/nodes/b:1:22', '["x"]'],
      ['/lain/nodes/nodes/c:1:22', ''],
      ['/lain/nodes/nodes/d:1:22', ' {"z": -0.0, "a": 1e400}'],
    ],
    dels: [],
  });
  t.is(indexes.nodes.get('a:1:22')!.json, 'null');
  t.deepEqual(indexes.stats().badValues.map((b) => b.key).sort(),
    ['/lain/nodes/nodes/b:1:22', '/lain/nodes/nodes/c:1:22', '/lain/nodes/nodes/d:1:22']);
});

// ---- API.md §11 item 5: the auth tables reflect the current state ----

test('an IP that left a pod group no longer maps to its app', (t) => {
  const { indexes } = loaded();
  t.is(indexes.appOfContainerIp('172.20.0.11'), 'hello');
  indexes.apply({ puts: [[HELLO_WEB, HELLO_WEB_MOVED]], dels: [] });
  t.is(indexes.appOfContainerIp('172.20.0.11'), undefined);
  t.is(indexes.appOfContainerIp('172.20.0.99'), 'hello');
  indexes.apply({ puts: [], dels: [`${PG}hello/hello.worker.cron`] });
  t.is(indexes.appOfContainerIp('172.20.0.14'), undefined);
});

test('an IP listed by two pod groups maps to the later key, whatever the write order', (t) => {
  const stale = edge[`${PG}stale/stale.worker.worker`];
  for (const order of ['stale first', 'hello first'] as const) {
    const indexes = new Indexes();
    const puts: Array<[string, string]> = [[`${PG}stale/stale.worker.worker`, stale], [HELLO_WEB, cluster.kvs[HELLO_WEB]]];
    indexes.apply({ puts: order === 'stale first' ? puts : puts.reverse(), dels: [] });
    t.is(indexes.appOfContainerIp('172.20.0.11'), 'stale', order);
    indexes.apply({ puts: [], dels: [`${PG}stale/stale.worker.worker`] });
    t.is(indexes.appOfContainerIp('172.20.0.11'), 'hello', order);
  }
});

test('a container key listed by two pod groups is served from the later key and survives the other\'s delete', (t) => {
  const indexes = new Indexes();
  const hello = cluster.kvs[HELLO_WEB];
  const copy = hello.replaceAll('"Namespace":"hello"', '"Namespace":"zcopy"');
  const key = 'node1/1f1ae8881a56201d7c206c6492b15f849542fa01d20a631c3d9225acd48e60e7';
  indexes.apply({ puts: [[HELLO_WEB, hello], [`${PG}zcopy/hello.web.web`, copy]], dels: [] });
  t.is(indexes.containers.get(key)!.info.app, 'zcopy');
  const changes = indexes.apply({ puts: [], dels: [`${PG}zcopy/hello.web.web`] });
  t.is(indexes.containers.get(key)!.info.app, 'hello');
  t.true(changes.containers!.some((c) => c.key === key && !c.deleted));
  indexes.apply({ puts: [], dels: [HELLO_WEB] });
  t.is(indexes.containers.size, 0);
});

test('portal IPs map to the service of their depends key, and are forgotten with it', (t) => {
  const { indexes } = loaded();
  const portal = '/lain/deployd/depends/pods/redis-service.portal.portal-redis';
  t.deepEqual(indexes.servicesOfPortalIp('172.20.0.32'), ['redis-service']);
  indexes.apply({ puts: [[portal, '{"node2": {}}']], dels: [] });
  t.deepEqual(indexes.servicesOfPortalIp('172.20.0.32'), []);
  indexes.apply({ puts: [[portal, cluster.kvs[portal]]], dels: [] });
  indexes.apply({ puts: [], dels: [portal] });
  t.deepEqual(indexes.servicesOfPortalIp('172.20.0.32'), []);
});

test('super apps are the super_apps config keys, by exact name', (t) => {
  const { indexes } = loaded();
  t.true(indexes.isSuperApp('console'));
  t.false(indexes.isSuperApp('con'));
  t.false(indexes.isSuperApp('entry'));
  indexes.apply({ puts: [['/lain/config/super_apps/entry', '{}']], dels: [] });
  t.true(indexes.isSuperApp('entry'));
  indexes.apply({ puts: [], dels: ['/lain/config/super_apps/entry', '/lain/config/super_apps/console'] });
  t.false(indexes.isSuperApp('entry'));
  t.false(indexes.isSuperApp('console'));
  t.true(indexes.isSuperApp('webrouter'));
});

test('the etcd prefix is configurable, with or without its trailing slash', (t) => {
  for (const prefix of ['/other', '/other/', '/other//']) {
    const indexes = new Indexes({ prefix });
    indexes.apply({ puts: [['/other/config/domain', 'x'], ['/lain/config/vip', 'y'], ['/otherconfig/vip', 'z']], dels: [] });
    t.deepEqual(indexes.config.keys(), ['domain'], prefix);
  }
  const byDefault = new Indexes();
  byDefault.apply({ puts: [['/other/config/domain', 'x'], ['/lain/config/vip', 'y']], dels: [] });
  t.deepEqual(byDefault.config.keys(), ['vip']);
});

test('a key equal to an index\'s directory is no entry, and keys outside every index are ignored', (t) => {
  const indexes = new Indexes();
  const roots = ['/lain/config/', '/lain/deployd/pod_groups/', '/lain/deployd/depends/pods/', '/lain/nodes/nodes/'];
  t.deepEqual(indexes.apply({ puts: [...roots.map((r): [string, string] => [r, 'null']), ['/lain/other/x', '1'], ['/lain/config', 'x']], dels: [] }), {});
  t.deepEqual(indexes.stats().keys, { config: 0, podgroups: 0, containers: 0, depends: 0, nodes: 0 });
  t.deepEqual(indexes.stats().badValues, []);
});

test('deleting keys that are not held reports nothing', (t) => {
  const { indexes } = loaded();
  const generations = indexes.stats().generations;
  t.deepEqual(indexes.apply({
    puts: [],
    dels: ['/lain/config/nosuch', `${PG}nosuch/nosuch.web.web`, '/lain/deployd/depends/pods/nosuch.portal.x', '/lain/nodes/nodes/nosuch:1:22', '/lain/other/x'],
  }), {});
  t.deepEqual(indexes.stats().generations, generations);
});

test('a change reports every key it touched in every index, and the next change only its own', (t) => {
  const { indexes } = loaded();
  const portal = '/lain/deployd/depends/pods/redis-service.portal.portal-redis';
  const node = Object.keys(cluster.kvs).find((k) => k.startsWith('/lain/nodes/nodes/'))!;
  const nodeKey = node.slice('/lain/nodes/nodes/'.length);
  const changes = indexes.apply({
    puts: [['/lain/config/a', '1'], ['/lain/config/b', '2'], [node, '{"changed": true}']],
    dels: ['/lain/config/vip', portal],
  });
  t.deepEqual(changes, {
    config: [{ key: 'vip', deleted: true }, { key: 'a', deleted: false }, { key: 'b', deleted: false }],
    depends: [{ key: 'redis-service.portal.portal-redis', deleted: true }],
    nodes: [{ key: nodeKey, deleted: false }],
  });
  t.is(indexes.nodes.get(nodeKey)!.json, '{"changed":true}');
  t.is(indexes.generation('config'), indexes.stats().generations.config);
  const generation = indexes.generation('depends');
  t.deepEqual(indexes.apply({ puts: [[portal, cluster.kvs[portal]]], dels: [] }), { depends: [{ key: 'redis-service.portal.portal-redis', deleted: false }] });
  t.is(indexes.generation('depends'), generation + 1);
  t.deepEqual(indexes.apply({ puts: [], dels: [node] }), { nodes: [{ key: nodeKey, deleted: true }] });
  t.is(indexes.nodes.get(nodeKey), undefined);
});

test('the previous good value written again clears a bad value\'s report', (t) => {
  const warnings: Array<{ obj: object; msg: string }> = [];
  const { indexes } = loaded({ logger: { warn: (obj, msg) => warnings.push({ obj, msg }) } });
  t.deepEqual(indexes.apply({ puts: [[HELLO_WEB, 'not json']], dels: [] }), {});
  t.is(warnings.length, 1);
  t.like(warnings[0], { obj: { key: HELLO_WEB, servingPrevious: true }, msg: 'undecodable value ignored' });
  t.is(typeof (warnings[0].obj as { error: unknown }).error, 'string');
  t.deepEqual(indexes.apply({ puts: [[HELLO_WEB, cluster.kvs[HELLO_WEB]]], dels: [] }), {});
  t.deepEqual(indexes.stats().badValues, []);
  // Reported again when it comes back: the report was forgotten.
  indexes.apply({ puts: [[HELLO_WEB, 'not json']], dels: [] });
  t.is(warnings.length, 2);
  t.like(warnings[1], { obj: { servingPrevious: true } });
  indexes.apply({ puts: [[`${PG}new/new.web.web`, 'not json']], dels: [] });
  t.like(warnings[2], { obj: { key: `${PG}new/new.web.web`, servingPrevious: false } });
});

test('stats count entries per index', (t) => {
  const { indexes } = loaded();
  const keys = Object.keys(cluster.kvs);
  const under = (prefix: string) => keys.filter((k) => k.startsWith(prefix));
  const containers = under(PG).flatMap((k) => decodePodGroup(cluster.kvs[k]).pods.flatMap((p) => p.containers));
  const stats = indexes.stats();
  t.deepEqual(stats.keys, {
    config: under('/lain/config/').length,
    podgroups: under(PG).length,
    containers: 2 * containers.length, // under the node name and under the node IP
    depends: under('/lain/deployd/depends/pods/').length,
    nodes: under('/lain/nodes/nodes/').length,
  });
  t.is(stats.superApps, under('/lain/config/super_apps/').length);
  t.is(stats.containerIps, new Set(containers.map((c) => c.containerIp)).size);
  const portalIps = under('/lain/deployd/depends/pods/').flatMap((k) => decodeDepends(cluster.kvs[k])
    .flatMap((node) => node.clients.flatMap(([, pod]) => pod.containers.map((c) => c.containerIp))));
  t.true(portalIps.length > 0);
  t.is(stats.portalIps, new Set(portalIps).size);
});

test('a fresh Indexes is at generation 0 of every index, and a change moves only its own', (t) => {
  const { indexes, cache } = counting();
  const names = ['config', 'podgroups', 'containers', 'depends', 'nodes'] as const;
  for (const name of names) t.is(indexes.generation(name), 0, name);
  cache.replace(1, [['/lain/config/vip', '10.0.0.1']], 'hub');
  t.is(indexes.generation('config'), 1);
  for (const name of names.slice(1)) t.is(indexes.generation(name), 0, name);
});

test('deleting a config key outside super_apps/ leaves the super apps alone, even one of the same name', (t) => {
  const { indexes, cache } = counting();
  // "not_supers/" is as long as "super_apps/": a delete that forgot the directory check would
  // strip it to "console" and take console's super status away.
  cache.replace(1, [['/lain/config/super_apps/console', '{}'], ['/lain/config/not_supers/console', '{}']], 'hub');
  t.true(indexes.isSuperApp('console'));
  cache.applyDelta(2, [], ['/lain/config/not_supers/console']);
  t.true(indexes.isSuperApp('console'));
  cache.applyDelta(3, [], ['/lain/config/super_apps/console']);
  t.false(indexes.isSuperApp('console'));
});
