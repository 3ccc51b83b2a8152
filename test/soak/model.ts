// What the soak writes, and what every /v2 view of it must be.
//
// The key universe covers the four ranges the API reads, with values shaped like deployd's
// (built from the vendored fixture). The writer is the only writer under them, so the model
// (key → value after every committed operation) is etcd's history; the views here are the
// API.md §4 definitions, computed independently of the agent's code, compared as canonical
// JSON (map order is the golden tests' business, not the soak's).
import { createHash } from 'node:crypto';
import { readReferenceJson } from '../helpers/reference.js';
import type { Rng } from './prng.js';

export const CONFIG = '/lain/config/';
export const PODS = '/lain/deployd/pod_groups/';
export const DEPENDS = '/lain/deployd/depends/pods/';
export const NODES = '/lain/nodes/nodes/';
export const KEPT_RANGES = [CONFIG, PODS, DEPENDS, NODES] as const;
/** The writer's op counter: every transaction puts it and compares it (outside the kept ranges). */
export const MARKER_KEY = '/lain/soak-writer/op';
/** Keys under /lain that the hubs must ignore (deployd writes such keys too). */
const NOISE_KEYS = ['/lain/deployd/depends/specs/soak.portal.portal-x', '/lain/networkd/soak', '/lain/nodes/etcd-members/node1:192.168.77.21:22'];

export type SubOp = { type: 'put'; key: string; value: string } | { type: 'del'; key: string } | { type: 'delprefix'; prefix: string };
export interface Op { id: number; kind: string; subs: SubOp[] }

export type State = Map<string, string>;

// ---------------------------------------------------------------------------
// The key universe
// ---------------------------------------------------------------------------

const CONFIG_KEYS = ['soak/a', 'soak/ab', 'soak/b', 'soak/c/d', 'soak/grp/g0', 'soak/grp/g1', 'soak/grp/g2', 'soakx', 'domain', 'vips/10.0.0.1'];
const CONFIG_GROUP = 'soak/grp/';
/** The anchor web proc is never deleted and always has live pods: webprocs never answers 500. */
const ANCHOR = 'anchor/anchor.web.web';
const APPS = ['alpha', 'alpha-two', 'beta', 'gamma'];
const PROCS = ['web.web', 'worker.w', 'web.admin'];
const PORTALS = ['svc.portal.portal-a', 'svc.portal.portal-b', 'svcx.portal.portal-a'];
const NODE_NAMES = ['node1', 'node2', 'node3', 'node10'];
const NODE_IPS: Record<string, string> = { node1: '192.168.77.21', node2: '192.168.77.22', node3: '192.168.77.23', node10: '192.168.77.30' };

function podGroupKeys(): string[] {
  const keys = [PODS + ANCHOR];
  for (const app of APPS) for (const proc of PROCS) keys.push(`${PODS}${app}/${app}.${proc}`);
  return keys;
}
const POD_KEYS = podGroupKeys();
const DEPENDS_KEYS = PORTALS.map((p) => DEPENDS + p);
const NODE_KEYS = NODE_NAMES.map((n) => `${NODES}${n}:${NODE_IPS[n]}:22`);

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

interface Json { [k: string]: any } // eslint-disable-line @typescript-eslint/no-explicit-any

let templates: { pod: Json; shared: Json } | undefined;
function template(): { pod: Json; shared: Json } {
  if (!templates) {
    const kvs = readReferenceJson<{ kvs: Record<string, string> }>('fixtures/cluster-small.json').kvs;
    const pod = JSON.parse(kvs['/lain/deployd/pod_groups/console/console.web.web']) as Json;
    const depends = JSON.parse(kvs['/lain/deployd/depends/pods/redis-service.portal.portal-redis']) as Json;
    const firstNode = Object.values(depends)[0] as Json;
    templates = { pod, shared: Object.values(firstNode)[0] as Json };
  }
  return templates;
}
const clone = <T>(v: T): T => structuredClone(v);

const ODD_TEXT = ['plain', ' leading space', '<a&b>', 'é中文😀', 'line\u2028sep', 'tab\tq"uote', ''];

function token(rng: Rng): string {
  return rng.bool(0.15) ? `${rng.pick(ODD_TEXT)}-${rng.hex(4)}` : rng.hex(6);
}

function configValue(rng: Rng): string {
  switch (rng.int(0, 3)) {
    case 0: return `v-${token(rng)}`;
    case 1: return ` {"app": "webrouter", "ports": [{"src": "${rng.int(1, 9999)}"}], "t": "${rng.hex(4)}"}`;
    case 2: return `${rng.pick(ODD_TEXT)}${rng.hex(3)}`;
    default: return String(rng.int(0, 1_000_000));
  }
}

function nodeValue(key: string, rng: Rng): string {
  const [name, ip] = key.slice(NODES.length).split(':');
  const obj: Json = { docker_device: rng.pick(['', '/dev/sdb']), ip, name, ssh_port: rng.bool() ? '22' : 22, soak: token(rng) };
  return (rng.bool(0.5) ? ' ' : '') + JSON.stringify(obj);
}

function annotation(rng: Rng, web: boolean, portal = false): string {
  const parts = [`"mountpoint": ${web ? `["x${rng.int(0, 9)}.lain.local", "x.lain"]` : '[]'}`, `"https_only": ${!web}`];
  if (portal) parts.push('"service_name": "svc"');
  parts.push(`"soak": ${JSON.stringify(token(rng))}`);
  return `{${parts.join(', ')}}`;
}

function containerIp(rng: Rng): string {
  return `172.20.${rng.int(0, 3)}.${rng.int(2, 250)}`;
}

function podGroupValue(key: string, rng: Rng, minInstances = 0): string {
  const rel = key.slice(PODS.length);
  const [app, name] = rel.split('/') as [string, string];
  const short = name.split('.').pop()!;
  const web = name.split('.').slice(-2, -1)[0] === 'web';
  const t = template().pod;
  const pg = clone(t);
  const version = rng.int(1, 999);
  const release = `${rng.int(1500000000, 1600000000)}-${rng.hex(8)}`;
  const expose = rng.pick([0, 80, 8080, 9000]);
  const spec = pg.Spec;
  spec.Name = spec.Pod.Name = name;
  spec.Namespace = spec.Pod.Namespace = app;
  spec.Version = spec.Pod.Version = version;
  const c = spec.Pod.Containers[0];
  c.Image = `registry.lain.local/${app}:release-${release}`;
  c.Env = rng.bool(0.1) ? null : [`SOAK=${rng.hex(4)}`, 'TZ=Asia/Shanghai', `LAIN_APPNAME=${app}`, `LAIN_APP_RELEASE_VERSION=${release}`, `LAIN_PROCNAME=${short}`, 'LAIN_DOMAIN=lain.local'];
  c.Command = rng.bool(0.3) ? null : ['./run', `-n${rng.int(0, 9)}`];
  c.Volumes = rng.bool(0.3) ? null : ['/lain/logs'];
  c.CpuLimit = rng.int(0, 4);
  c.MemoryLimit = rng.int(1, 8) * 67108864;
  c.Expose = expose;
  spec.Pod.Annotation = annotation(rng, web);
  spec.Pod.Dependencies = rng.bool(0.3) ? [{ PodName: rng.pick(PORTALS), Policy: rng.int(0, 1) }] : [];
  const n = rng.int(minInstances, 3);
  spec.NumInstances = n;
  const podTemplate = t.Pods[0];
  pg.Pods = [];
  pg.PrevState = [];
  for (let i = 1; i <= n; i++) {
    const pod = clone(podTemplate);
    pod.InstanceNo = i;
    const node = rng.pick(NODE_NAMES);
    const ip = containerIp(rng);
    const id = rng.hex(64);
    const ct = pod.Containers[0];
    ct.Id = id;
    ct.Runtime.Id = id;
    ct.Runtime.Config.Env = ['PATH=/usr/bin:/bin', ...(c.Env ?? []), `DEPLOYD_POD_INSTANCE_NO=${i}`, `DEPLOYD_POD_NAME=${name}`, `DEPLOYD_POD_NAMESPACE=${app}`];
    ct.NodeName = node;
    ct.NodeIp = NODE_IPS[node];
    ct.ContainerIp = ip;
    ct.ContainerPort = expose;
    pg.Pods.push(pod);
    pg.PrevState.push({ NodeName: node, IPs: [ip] });
  }
  return JSON.stringify(pg);
}

function dependsValue(key: string, rng: Rng): string {
  const portal = key.slice(DEPENDS.length);
  const value: Json = {};
  for (const node of NODE_NAMES.slice(0, rng.int(1, 3))) {
    const clients: Json = {};
    for (const client of APPS.slice(0, rng.int(0, 2))) {
      const shared = clone(template().shared);
      shared.RefCount = rng.int(1, 3);
      shared.Spec.Name = `${portal}-${node}-${client}`;
      shared.Spec.Namespace = portal;
      shared.Spec.Annotation = annotation(rng, false, true);
      const ct = shared.Pod.Containers[0];
      ct.Id = rng.hex(64);
      ct.NodeName = node;
      ct.NodeIp = NODE_IPS[node];
      ct.ContainerIp = containerIp(rng);
      ct.ContainerPort = rng.pick([6379, 3306, 0]);
      clients[client] = shared;
    }
    value[node] = clients;
  }
  return JSON.stringify(value);
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

function valueFor(key: string, rng: Rng): string {
  if (key.startsWith(CONFIG)) return configValue(rng);
  if (key === PODS + ANCHOR) return podGroupValue(key, rng, 1);
  if (key.startsWith(PODS)) return podGroupValue(key, rng);
  if (key.startsWith(DEPENDS)) return dependsValue(key, rng);
  if (key.startsWith(NODES)) return nodeValue(key, rng);
  return `noise-${rng.hex(6)}`;
}

const OP_WEIGHTS = {
  'put-config': 14, 'del-config': 4, 'del-config-group': 2,
  'put-pod': 16, 'rewrite-pod': 3, 'del-pod': 4, 'del-app': 2,
  'put-depends': 5, 'del-depends': 2,
  'put-node': 4, 'del-node': 2,
  txn: 14, noise: 3,
} as const;

function sub(kind: string, state: State, rng: Rng): SubOp {
  const existing = (keys: string[]) => keys.filter((k) => state.has(k));
  const pickOr = (keys: string[], fallback: string[]) => rng.pick(keys.length ? keys : fallback);
  switch (kind) {
    case 'put-config': { const key = CONFIG + rng.pick(CONFIG_KEYS); return { type: 'put', key, value: valueFor(key, rng) }; }
    case 'del-config': return { type: 'del', key: pickOr(existing(CONFIG_KEYS.map((k) => CONFIG + k)), [CONFIG + 'soak/a']) };
    case 'del-config-group': return { type: 'delprefix', prefix: CONFIG + CONFIG_GROUP };
    case 'put-pod': { const key = rng.pick(POD_KEYS); return { type: 'put', key, value: valueFor(key, rng) }; }
    case 'rewrite-pod': { const key = pickOr(existing(POD_KEYS), [PODS + ANCHOR]); return state.has(key) ? { type: 'put', key, value: state.get(key)! } : { type: 'put', key, value: valueFor(key, rng) }; }
    case 'del-pod': return { type: 'del', key: pickOr(existing(POD_KEYS.filter((k) => k !== PODS + ANCHOR)), [POD_KEYS[1]]) };
    case 'del-app': return { type: 'delprefix', prefix: `${PODS}${rng.pick(APPS)}/` };
    case 'put-depends': { const key = rng.pick(DEPENDS_KEYS); return { type: 'put', key, value: valueFor(key, rng) }; }
    case 'del-depends': return { type: 'del', key: pickOr(existing(DEPENDS_KEYS), DEPENDS_KEYS) };
    case 'put-node': { const key = rng.pick(NODE_KEYS); return { type: 'put', key, value: valueFor(key, rng) }; }
    case 'del-node': return { type: 'del', key: pickOr(existing(NODE_KEYS), NODE_KEYS) };
    default: { const key = rng.pick(NOISE_KEYS); return { type: 'put', key, value: valueFor(key, rng) }; }
  }
}

function touches(s: SubOp, key: string): boolean {
  return s.type === 'delprefix' ? key.startsWith(s.prefix) : s.key === key;
}

function overlaps(a: SubOp, b: SubOp): boolean {
  if (a.type === 'delprefix' && b.type === 'delprefix') return a.prefix.startsWith(b.prefix) || b.prefix.startsWith(a.prefix);
  if (a.type === 'delprefix') return touches(a, (b as { key: string }).key);
  if (b.type === 'delprefix') return touches(b, a.key);
  return a.key === b.key;
}

/** The next operation, a function of the state and the writer's PRNG only. */
export function nextOp(id: number, state: State, rng: Rng): Op {
  const kind = rng.weighted(OP_WEIGHTS);
  if (kind !== 'txn') return { id, kind, subs: [sub(kind, state, rng)] };
  const subs: SubOp[] = [];
  const n = rng.int(2, 5);
  for (let i = 0; i < n * 3 && subs.length < n; i++) {
    let k = rng.weighted(OP_WEIGHTS);
    if (k === 'txn') k = 'put-pod';
    const s = sub(k, state, rng);
    if (!subs.some((o) => overlaps(o, s))) subs.push(s);
  }
  return { id, kind, subs };
}

/** The initial state, written before any hub starts. */
export function seedState(rng: Rng): State {
  const state: State = new Map();
  for (const k of CONFIG_KEYS) if (rng.bool(0.7)) state.set(CONFIG + k, valueFor(CONFIG + k, rng));
  for (const k of POD_KEYS) if (k === PODS + ANCHOR || rng.bool(0.6)) state.set(k, valueFor(k, rng));
  for (const k of DEPENDS_KEYS) if (rng.bool(0.6)) state.set(k, valueFor(k, rng));
  for (const k of NODE_KEYS) if (rng.bool(0.7)) state.set(k, valueFor(k, rng));
  return state;
}

export function isKept(key: string): boolean {
  return KEPT_RANGES.some((r) => key.startsWith(r));
}

/** Applies a committed op to `state`; returns the kept ranges it touched. */
export function applyOp(state: State, op: Op): Set<string> {
  const touched = new Set<string>();
  const mark = (key: string) => { for (const r of KEPT_RANGES) if (key.startsWith(r)) touched.add(r); };
  for (const s of op.subs) {
    if (s.type === 'put') { if (isKept(s.key)) { state.set(s.key, s.value); mark(s.key); } }
    else if (s.type === 'del') { if (state.delete(s.key)) mark(s.key); }
    else for (const k of [...state.keys()]) if (k.startsWith(s.prefix)) { state.delete(k); mark(k); }
  }
  return touched;
}

// ---------------------------------------------------------------------------
// Views (API.md §4), as plain JSON values
// ---------------------------------------------------------------------------

const parsedCache = new Map<string, Json>();
function parsed(value: string): Json {
  let v = parsedCache.get(value);
  if (!v) {
    v = JSON.parse(value) as Json;
    if (parsedCache.size > 1000) parsedCache.clear();
    parsedCache.set(value, v);
  }
  return v;
}

function under(state: State, range: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [k, v] of state) if (k.startsWith(range)) out.push([k.slice(range.length), v]);
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** API.md §4: `*` → everything; an exact key → that entry; otherwise every key starting with it. */
function lookup(entries: Array<[string, string]>, key: string): Array<[string, string]> {
  if (key === '*') return entries;
  const exact = entries.filter(([k]) => k === key);
  return exact.length ? exact : entries.filter(([k]) => k.startsWith(key));
}

const appKey = (appname: string) => (appname === '*' ? '*' : appname.endsWith('/') ? appname : appname + '/');
const podGroups = (state: State, appname: string) => lookup(under(state, PODS), appKey(appname)).map(([, v]) => parsed(v));
const specEnvVersion = (env: string[] | null): string => {
  for (const e of env ?? []) {
    if (!e.startsWith('LAIN_APP_RELEASE_VERSION=')) continue;
    const parts = e.split('=');
    if (parts.length === 2) return parts[1];
  }
  return '';
};

export type ViewName = 'configwatcher' | 'coreinfowatcher' | 'webprocs' | 'proxywatcher' | 'appswatcher' | 'depends' | 'nodes' | 'containers';

export interface ViewSpec {
  /** A short name for reports. */
  name: string;
  view: ViewName;
  /** The request path and query (without watch). */
  path: string;
  /** The kept range whose changes can change this view. */
  range: string;
  compute(state: State): unknown;
}

function configView(target: string) {
  return (state: State) => Object.fromEntries(lookup(under(state, CONFIG), target));
}

function coreinfoView(appname: string) {
  return (state: State) => {
    const out: Json = {};
    for (const pg of podGroups(state, appname)) {
      const spec = pg.Spec;
      const deps = (spec.Pod.Dependencies ?? []).map((d: Json) => ({ PodName: d.PodName, Policy: d.Policy }));
      out[spec.Name] = {
        PodInfos: (pg.Pods ?? []).map((pod: Json) => ({
          Annotation: spec.Pod.Annotation,
          ContainerInfos: (pod.Containers ?? []).map((c: Json, j: number) => {
            const cs = spec.Pod.Containers[j] ?? {};
            return { Command: cs.Command ?? null, ContainerId: c.Id, ContainerIp: c.ContainerIp, Cpu: cs.CpuLimit ?? 0, Env: cs.Env ?? null, Expose: cs.Expose ?? 0, Image: cs.Image ?? '', Memory: cs.MemoryLimit ?? 0, NodeIp: c.NodeIp, NodeName: c.NodeName, Volumes: cs.Volumes ?? null };
          }),
          Dependencies: deps,
          InstanceNo: pod.InstanceNo,
        })),
      };
    }
    return out;
  };
}

function isWebProc(name: string): boolean {
  const parts = name.split('.');
  return parts.length >= 3 && parts[parts.length - 2] === 'web';
}

function webprocsView(state: State) {
  const out: Json = {};
  for (const pg of podGroups(state, '*')) {
    const spec = pg.Spec;
    if (!isWebProc(spec.Name)) continue;
    out[spec.Name] = {
      PodInfos: (pg.Pods ?? []).map((pod: Json) => ({
        Annotation: spec.Pod.Annotation,
        ContainerInfos: (pod.Containers ?? []).map((c: Json, j: number) => ({ ContainerIp: c.ContainerIp, Expose: spec.Pod.Containers[j]?.Expose ?? 0 })),
      })),
    };
  }
  return out;
}

function proxyView(appname: string) {
  return (state: State) => {
    const out: Json = {};
    for (const pg of podGroups(state, appname)) {
      const containers: Json[] = [];
      for (const pod of pg.Pods ?? []) (pod.Containers ?? []).forEach((c: Json, j: number) => containers.push({ container_ip: c.ContainerIp, container_port: pg.Spec.Pod.Containers[j]?.Expose ?? 0 }));
      out[pg.Spec.Name] = { containers };
    }
    return out;
  };
}

function appsView(state: State) {
  const out: Json = {};
  for (const pg of podGroups(state, '*')) out[pg.Spec.Namespace] = { Appname: pg.Spec.Namespace };
  return out;
}

function dependsView(state: State) {
  const out: Json = {};
  for (const [portal, v] of under(state, DEPENDS)) {
    const nodes: Json = {};
    for (const [node, clients] of Object.entries(parsed(v))) {
      const apps: Json = {};
      for (const [app, shared] of Object.entries(clients as Json)) {
        const s = shared as Json;
        apps[app] = { Annotation: s.Spec.Annotation, Containers: (s.Pod.Containers ?? []).map((c: Json) => ({ ContainerID: c.Id, NodeIP: c.NodeIp, IP: c.ContainerIp, Port: c.ContainerPort })) };
      }
      nodes[node] = apps;
    }
    out[portal] = nodes;
  }
  return out;
}

function nodesView(state: State) {
  return Object.fromEntries(under(state, NODES).map(([k, v]) => [k, JSON.parse(v)]));
}

function containersView(nodename: string) {
  const prefix = nodename + '/';
  return (state: State) => {
    const out: Json = {};
    for (const pg of podGroups(state, '*')) {
      const spec = pg.Spec;
      for (const pod of pg.Pods ?? []) {
        for (const c of pod.Containers ?? []) {
          const info = { app: spec.Namespace, app_version: specEnvVersion(spec.Pod.Containers[0]?.Env ?? null), proc: spec.Name, nodename: c.NodeName, nodeip: c.NodeIp, ip: c.ContainerIp, port: c.ContainerPort, instanceNo: pod.InstanceNo };
          for (const node of [c.NodeName, c.NodeIp]) if (`${node}/`.startsWith(prefix)) out[`${node}/${c.Id}`] = info;
        }
      }
    }
    return out;
  };
}

/** The views the soak watches on every agent and compares at the end. */
export const VIEWS: ViewSpec[] = [
  { name: 'config:soak', view: 'configwatcher', path: '/v2/configwatcher?target=soak', range: CONFIG, compute: configView('soak') },
  { name: 'config:soak/a', view: 'configwatcher', path: '/v2/configwatcher?target=soak/a', range: CONFIG, compute: configView('soak/a') },
  { name: 'config:*', view: 'configwatcher', path: '/v2/configwatcher', range: CONFIG, compute: configView('*') },
  { name: 'coreinfo:alpha', view: 'coreinfowatcher', path: '/v2/coreinfowatcher?appname=alpha', range: PODS, compute: coreinfoView('alpha') },
  { name: 'coreinfo:*', view: 'coreinfowatcher', path: '/v2/coreinfowatcher', range: PODS, compute: coreinfoView('*') },
  { name: 'webprocs', view: 'webprocs', path: '/v2/webrouter/webprocs', range: PODS, compute: webprocsView },
  { name: 'proxy:beta', view: 'proxywatcher', path: '/v2/proxywatcher?appname=beta', range: PODS, compute: proxyView('beta') },
  { name: 'apps', view: 'appswatcher', path: '/v2/appswatcher', range: PODS, compute: appsView },
  { name: 'depends', view: 'depends', path: '/v2/depends', range: DEPENDS, compute: dependsView },
  { name: 'nodes', view: 'nodes', path: '/v2/nodes', range: NODES, compute: nodesView },
  { name: 'containers:node1', view: 'containers', path: '/v2/containers?nodename=node1', range: PODS, compute: containersView('node1') },
];

/** Further GETs compared between every agent and a fresh reference agent at the end. */
export const REFERENCE_PATHS = [
  ...VIEWS.map((v) => v.path),
  '/v2/procwatcher?appname=alpha', '/v2/procwatcher?appname=*', '/v2/coreinfowatcher?appname=alpha-two',
  '/v2/proxywatcher', '/v2/streamrouter/streamprocs', '/v2/streamrouter/ports', '/v2/rebellion/localprocs',
  '/v2/backupspec', '/v2/depends?target=svc', '/v2/nodes?name=node1', '/v2/containers', '/v2/containers?nodename=192.168.77.22',
  '/v2/localspecquery?nodeip=node2', '/v2/configwatcher?target=soak/grp', '/appname?ip=172.20.1.7',
];

// ---------------------------------------------------------------------------
// Canonical form
// ---------------------------------------------------------------------------

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((v as Json)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** A short fingerprint of a JSON value, independent of map order. */
export function fingerprint(v: unknown): string {
  return createHash('sha1').update(canonical(v)).digest('base64').slice(0, 16);
}

/** The fingerprint of a response body (JSON), or undefined when it is not JSON. */
export function bodyFingerprint(body: string): string | undefined {
  try { return fingerprint(JSON.parse(body)); } catch { return undefined; }
}

/** Top-level keys whose values differ between two JSON objects (for reports): `extra:k` (only in `have`), `missing:k` (only in `want`), `changed:k`. */
export function diffKeys(want: unknown, have: unknown): string[] {
  if (typeof want !== 'object' || typeof have !== 'object' || !want || !have || Array.isArray(want) || Array.isArray(have)) return ['(whole value)'];
  const keys = new Set([...Object.keys(want), ...Object.keys(have)]);
  const out: string[] = [];
  for (const k of keys) {
    const a = (want as Json)[k];
    const b = (have as Json)[k];
    if (a === undefined) out.push(`extra:${k}`);
    else if (b === undefined) out.push(`missing:${k}`);
    else if (canonical(a) !== canonical(b)) out.push(`changed:${k}`);
  }
  return out.sort();
}
