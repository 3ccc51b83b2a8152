// ContainerIndex (agent/indexes/container-index.ts): containers under `<NodeName>/<Id>` and
// `<NodeIp>/<Id>`, derived from the pod groups; an update reports exactly the keys whose entry
// changed.
import test from 'ava';
import type { ChangedKey } from '../agent/indexes/changes.js';
import { ContainerIndex } from '../agent/indexes/container-index.js';
import type { ContainerInfo } from '../agent/indexes/entries.js';
import type { PodContainer, PodGroup } from '../agent/model/podgroup.js';

interface Spec {
  app?: string;
  proc?: string;
  appVersion?: string;
  /** Per pod (instance numbers 1, 2, …), its containers. */
  pods: Array<Array<Partial<PodContainer>>>;
  instanceNos?: number[];
}

function podGroup(spec: Spec): PodGroup {
  const app = spec.app ?? 'hello';
  return {
    name: spec.proc ?? `${app}.web.web`, namespace: app, annotation: '', dependencies: [], containerSpecs: [], streamPorts: [],
    appVersion: spec.appVersion ?? '1-abc',
    pods: spec.pods.map((containers, i) => ({
      instanceNo: spec.instanceNos?.[i] ?? i + 1,
      containers: containers.map((c) => ({
        id: 'c1', nodeName: 'node1', nodeIp: '192.168.77.21', containerIp: '172.20.0.11', containerPort: 80, procName: 'web', ...c,
      })),
    })),
  };
}

const sorted = (changed: ChangedKey[]) => changed.map((c) => `${c.key}${c.deleted ? ' (deleted)' : ''}`).sort();

test('a new pod group lists each container under its node name and its node IP', (t) => {
  const index = new ContainerIndex();
  const pg = podGroup({ pods: [[{ id: 'c1' }], [{ id: 'c2', nodeName: 'node2', nodeIp: '192.168.77.22', containerIp: '172.20.0.12' }]] });
  t.deepEqual(sorted(index.update('hello/hello.web.web', undefined, pg)), ['192.168.77.21/c1', '192.168.77.22/c2', 'node1/c1', 'node2/c2']);
  const expected: ContainerInfo = {
    app: 'hello', appVersion: '1-abc', proc: 'hello.web.web', nodeName: 'node2', nodeIp: '192.168.77.22', ip: '172.20.0.12', port: 80, instanceNo: 2,
  };
  t.deepEqual(index.entries.get('node2/c2'), { key: 'node2/c2', info: expected });
  t.deepEqual(index.entries.get('192.168.77.22/c2'), { key: '192.168.77.22/c2', info: expected });
  t.is(index.entries.size, 4);
});

test('the same pod group again reports nothing', (t) => {
  const index = new ContainerIndex();
  const pg = podGroup({ pods: [[{}]] });
  index.update('hello/hello.web.web', undefined, pg);
  t.deepEqual(index.update('hello/hello.web.web', pg, podGroup({ pods: [[{}]] })), []);
});

const BEFORE_INFO: ContainerInfo = {
  app: 'hello', appVersion: '1-abc', proc: 'hello.web.web', nodeName: 'node1', nodeIp: '192.168.77.21', ip: '172.20.0.11', port: 80, instanceNo: 1,
};

// Every field of a container's info, changed on its own, is a change of both its entries.
const FIELD_CHANGES: Array<[field: keyof ContainerInfo, after: Spec]> = [
  ['app', { app: 'other', proc: 'hello.web.web', pods: [[{}]] }],
  ['appVersion', { appVersion: '2-def', pods: [[{}]] }],
  ['proc', { proc: 'hello.web.web2', pods: [[{}]] }],
  ['ip', { pods: [[{ containerIp: '172.20.0.99' }]] }],
  ['port', { pods: [[{ containerPort: 8080 }]] }],
  ['instanceNo', { instanceNos: [7], pods: [[{}]] }],
];

for (const [field, after] of FIELD_CHANGES) {
  test(`a change of ${field} alone updates both of the container's entries`, (t) => {
    const index = new ContainerIndex();
    const before = podGroup({ pods: [[{}]] });
    index.update('hello/hello.web.web', undefined, before);
    const next = podGroup(after);
    t.deepEqual(sorted(index.update('hello/hello.web.web', before, next)), ['192.168.77.21/c1', 'node1/c1']);
    const info = index.entries.get('node1/c1')!.info;
    t.not(info[field], BEFORE_INFO[field], `the entry shows the new ${field}`);
    t.deepEqual(index.entries.get('192.168.77.21/c1')!.info, info);
  });
}

test('a container moving node: the old keys go, the new ones come, and the info says where it is', (t) => {
  const index = new ContainerIndex();
  const before = podGroup({ pods: [[{}]] });
  index.update('hello/hello.web.web', undefined, before);
  const renamed = podGroup({ pods: [[{ nodeName: 'node1b' }]] });
  t.deepEqual(sorted(index.update('hello/hello.web.web', before, renamed)), ['192.168.77.21/c1', 'node1/c1 (deleted)', 'node1b/c1']);
  t.is(index.entries.get('192.168.77.21/c1')!.info.nodeName, 'node1b');
  const readdressed = podGroup({ pods: [[{ nodeName: 'node1b', nodeIp: '192.168.77.99' }]] });
  t.deepEqual(sorted(index.update('hello/hello.web.web', renamed, readdressed)), ['192.168.77.21/c1 (deleted)', '192.168.77.99/c1', 'node1b/c1']);
  t.is(index.entries.get('node1b/c1')!.info.nodeIp, '192.168.77.99');
  t.is(index.entries.size, 2);
});

test('a deleted pod group takes its containers with it', (t) => {
  const index = new ContainerIndex();
  const pg = podGroup({ pods: [[{}]] });
  index.update('hello/hello.web.web', undefined, pg);
  t.deepEqual(sorted(index.update('hello/hello.web.web', pg, undefined)), ['192.168.77.21/c1 (deleted)', 'node1/c1 (deleted)']);
  t.is(index.entries.size, 0);
  t.deepEqual(index.update('hello/hello.web.web', undefined, undefined), []);
});

test('a container key two pod groups list is served from the later key, and survives the other\'s delete', (t) => {
  const index = new ContainerIndex();
  const hello = podGroup({ pods: [[{}]] });
  const copy = podGroup({ app: 'zcopy', pods: [[{}]] });
  index.update('hello/hello.web.web', undefined, hello);
  t.deepEqual(sorted(index.update('zcopy/hello.web.web', undefined, copy)), ['192.168.77.21/c1', 'node1/c1']);
  t.is(index.entries.get('node1/c1')!.info.app, 'zcopy');
  // The earlier key changing does not change what is served.
  t.deepEqual(index.update('hello/hello.web.web', hello, podGroup({ pods: [[{ containerPort: 81 }]] })), []);
  t.is(index.entries.get('node1/c1')!.info.app, 'zcopy');
  t.deepEqual(sorted(index.update('zcopy/hello.web.web', copy, undefined)), ['192.168.77.21/c1', 'node1/c1']);
  t.is(index.entries.get('node1/c1')!.info.app, 'hello');
  t.is(index.entries.get('node1/c1')!.info.port, 81);
});

test('a container key listed twice in one pod group keeps its last info', (t) => {
  const index = new ContainerIndex();
  index.update('hello/hello.web.web', undefined, podGroup({ pods: [[{ containerIp: '172.20.0.1' }], [{ containerIp: '172.20.0.2' }]] }));
  t.is(index.entries.get('node1/c1')!.info.ip, '172.20.0.2');
  t.is(index.entries.get('node1/c1')!.info.instanceNo, 2);
});
