// AuthTableStore (agent/indexes/auth-tables.ts): container IP → app, portal IP → services and
// the super apps, kept current with every change (API.md §5, §11 item 5).
import test from 'ava';
import { AuthTableStore } from '../agent/indexes/auth-tables.js';
import type { DependsValue } from '../agent/model/depends.js';
import type { PodGroup } from '../agent/model/podgroup.js';

/** A pod group of `app` whose pods each have one container per IP listed. */
function podGroup(app: string, proc: string, pods: string[][]): PodGroup {
  return {
    name: `${app}.${proc}`, namespace: app, annotation: '', dependencies: [], containerSpecs: [], streamPorts: [], appVersion: '',
    pods: pods.map((ips, i) => ({
      instanceNo: i + 1,
      containers: ips.map((ip) => ({ id: `id-${ip}`, nodeName: 'node1', nodeIp: '192.168.77.21', containerIp: ip, containerPort: 80, procName: proc })),
    })),
  };
}

/** A depends value with the portal containers' IPs, per node and client app. */
function depends(nodes: Record<string, Record<string, string[]>>): DependsValue {
  return Object.entries(nodes).map(([node, apps]) => ({
    node,
    clients: Object.entries(apps).map(([app, ips]) => [app, {
      annotation: '', containers: ips.map((ip) => ({ id: `id-${ip}`, nodeIp: '192.168.77.21', containerIp: ip, containerPort: 6379 })),
    }] as const),
  }));
}

test('every container IP of a pod group maps to its app', (t) => {
  const auth = new AuthTableStore();
  auth.updatePodGroup('hello/hello.web.web', undefined, podGroup('hello', 'web.web', [['10.0.0.1', '10.0.0.2'], ['10.0.0.3']]));
  for (const ip of ['10.0.0.1', '10.0.0.2', '10.0.0.3']) t.is(auth.appOfContainerIp(ip), 'hello', ip);
  t.is(auth.appOfContainerIp('10.0.0.4'), undefined);
  t.is(auth.containerIpCount, 3);
});

test('a pod group\'s IPs are exactly those of its new value: moved IPs are forgotten', (t) => {
  const auth = new AuthTableStore();
  const before = podGroup('hello', 'web.web', [['10.0.0.1'], ['10.0.0.2']]);
  const after = podGroup('hello', 'web.web', [['10.0.0.9'], ['10.0.0.2']]);
  auth.updatePodGroup('hello/hello.web.web', undefined, before);
  auth.updatePodGroup('hello/hello.web.web', before, after);
  t.is(auth.appOfContainerIp('10.0.0.1'), undefined);
  t.is(auth.appOfContainerIp('10.0.0.9'), 'hello');
  t.is(auth.appOfContainerIp('10.0.0.2'), 'hello');
  auth.updatePodGroup('hello/hello.web.web', after, undefined);
  t.is(auth.appOfContainerIp('10.0.0.9'), undefined);
  t.is(auth.appOfContainerIp('10.0.0.2'), undefined);
  t.is(auth.containerIpCount, 0);
});

test('an IP two pod groups list maps to the later key, and to the other once that one lets go', (t) => {
  const auth = new AuthTableStore();
  const stale = podGroup('stale', 'worker.worker', [['10.0.0.1']]);
  const hello = podGroup('hello', 'web.web', [['10.0.0.1']]);
  auth.updatePodGroup('stale/stale.worker.worker', undefined, stale);
  auth.updatePodGroup('hello/hello.web.web', undefined, hello);
  t.is(auth.appOfContainerIp('10.0.0.1'), 'stale');
  auth.updatePodGroup('stale/stale.worker.worker', stale, undefined);
  t.is(auth.appOfContainerIp('10.0.0.1'), 'hello');
});

test('portal IPs map to the services of their depends keys, the first key\'s first', (t) => {
  const auth = new AuthTableStore();
  t.deepEqual(auth.servicesOfPortalIp('10.0.1.1'), []);
  const value = depends({ node1: { hello: ['10.0.1.1'], world: ['10.0.1.2'] }, node2: { hello: ['10.0.1.3'] } });
  auth.updatePortal('redis.portal.b', 'redis', undefined, value);
  for (const ip of ['10.0.1.1', '10.0.1.2', '10.0.1.3']) t.deepEqual(auth.servicesOfPortalIp(ip), ['redis'], ip);
  t.is(auth.portalIpCount, 3);
  auth.updatePortal('zk.portal.a', 'zk', undefined, depends({ node1: { x: ['10.0.1.1'] } }));
  auth.updatePortal('mysql.portal.c', 'mysql', undefined, depends({ node1: { x: ['10.0.1.1'] } }));
  // Authorization takes the first as the IP's app (mysql.portal.c is first in key order) and
  // checks the others for membership.
  const services = auth.servicesOfPortalIp('10.0.1.1');
  t.is(services[0], 'mysql');
  t.deepEqual([...services].sort(), ['mysql', 'redis', 'zk']);
  t.deepEqual(auth.servicesOfPortalIp('10.0.1.2'), ['redis']);
});

test('a portal IP is forgotten with its depends key or when the key\'s value drops it', (t) => {
  const auth = new AuthTableStore();
  const before = depends({ node1: { hello: ['10.0.1.1', '10.0.1.2'] } });
  const after = depends({ node1: { hello: ['10.0.1.2'] } });
  auth.updatePortal('redis.portal.p', 'redis', undefined, before);
  auth.updatePortal('redis.portal.p', 'redis', before, after);
  t.deepEqual(auth.servicesOfPortalIp('10.0.1.1'), []);
  t.deepEqual(auth.servicesOfPortalIp('10.0.1.2'), ['redis']);
  auth.updatePortal('redis.portal.p', 'redis', after, undefined);
  t.deepEqual(auth.servicesOfPortalIp('10.0.1.2'), []);
  t.is(auth.portalIpCount, 0);
});

test('super apps match by exact name', (t) => {
  const auth = new AuthTableStore();
  auth.addSuperApp('console');
  auth.addSuperApp('webrouter');
  t.true(auth.isSuperApp('console'));
  t.false(auth.isSuperApp('con'));
  t.is(auth.superAppCount, 2);
  auth.removeSuperApp('console');
  t.false(auth.isSuperApp('console'));
  t.true(auth.isSuperApp('webrouter'));
  t.is(auth.superAppCount, 1);
});
