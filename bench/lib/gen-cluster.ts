// Generates a LARGE cluster from the shapes of ../shared/fixtures/cluster-small.json: its pod
// groups are cloned under new app names, with new container ids and container IPs, spread over
// `nodes` nodes, until there are at least `minPodGroups` pod groups and `minBytes` of values.
// Everything else (config, depends, the node template) comes from the fixture. The values stay
// exactly in deployd's Go-encoder shape, so the agent decodes them as it would real ones.
//
//   node dist/bench/lib/gen-cluster.js [out.json]     writes {"kvs": {...}} (a --seed file)
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readFixture } from './fixtures.js';

export interface GenOptions {
  minPodGroups?: number;
  minBytes?: number;
  nodes?: number;
}

export interface GeneratedCluster {
  kvs: Record<string, string>;
  podGroups: number;
  apps: string[];
  /** Bytes of keys + values. */
  bytes: number;
  containers: number;
  nodes: number;
  /** An app with a web proc, for /v2/coreinfowatcher?appname=. */
  sampleApp: string;
}

const PG_PREFIX = '/lain/deployd/pod_groups/';
const NODE_PREFIX = '/lain/nodes/nodes/';

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const hex64 = (seed: string) => createHash('sha256').update(seed).digest('hex');

export function nodeIp(n: number): string {
  return `192.168.${77 + Math.floor((n - 1) / 200)}.${21 + ((n - 1) % 200)}`;
}

export function generateCluster(opts: GenOptions = {}): GeneratedCluster {
  const minPodGroups = opts.minPodGroups ?? 1000;
  const minBytes = opts.minBytes ?? 10 * 1024 * 1024;
  const nodeCount = opts.nodes ?? 100;
  const small = readFixture('cluster-small');
  const kvs: Record<string, string> = {};
  const templates: Array<{ app: string; name: string; value: string }> = [];
  let templateNode = '';
  for (const [k, v] of Object.entries(small)) {
    if (k.startsWith(PG_PREFIX)) {
      const [app, name] = k.slice(PG_PREFIX.length).split('/') as [string, string];
      templates.push({ app, name, value: v });
    } else if (k.startsWith(NODE_PREFIX)) {
      if (k.includes('node1:')) templateNode = v;
    } else {
      kvs[k] = v;
    }
  }
  // Nodes: node1..nodeN, values shaped like the fixture's node1 (leading space and all).
  for (let n = 1; n <= nodeCount; n++) {
    const value = templateNode.replace(/\bnode1\b/g, `node${n}`).replace(/\b192\.168\.77\.21\b/g, nodeIp(n));
    kvs[`${NODE_PREFIX}node${n}:${nodeIp(n)}:22`] = value;
  }

  let ipCounter = 256;
  const nextIp = () => { const k = ipCounter++; return `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`; };
  let bytes = Object.entries(kvs).reduce((s, [k, v]) => s + k.length + v.length, 0);
  let podGroups = 0;
  let containers = 0;
  const apps = new Set<string>();
  let sampleApp = '';
  for (let clone = 0; podGroups < minPodGroups || bytes < minBytes; clone++) {
    const suffix = `-g${String(clone + 1).padStart(4, '0')}`;
    for (const t of templates) {
      const app = t.app + suffix;
      const name = t.name.replace(new RegExp(`^${escapeRe(t.app)}\\b`), app);
      let value = t.value.replace(new RegExp(`\\b${escapeRe(t.app)}\\b`, 'g'), app);
      // Container (and image/swarm) ids: new ones per clone; the 12-char hostnames follow.
      const ids = new Map<string, string>();
      value = value.replace(/\b[0-9a-f]{64}\b/g, (old) => {
        let id = ids.get(old);
        if (!id) ids.set(old, (id = hex64(`${clone}:${old}`)));
        return id;
      });
      for (const [old, id] of ids) value = value.split(old.slice(0, 12)).join(id.slice(0, 12));
      // Container IPs (the fixture's 172.x addresses): fresh ones, consistent within the value.
      const ips = new Map<string, string>();
      value = value.replace(/\b172\.\d+\.\d+\.\d+\b/g, (old) => {
        let ip = ips.get(old);
        if (!ip) ips.set(old, (ip = nextIp()));
        return ip;
      });
      // Nodes: the fixture's node1..3 become three of the generated nodes.
      const base = (clone * 3) % nodeCount;
      const nodeOf = (x: number) => ((base + x - 1) % nodeCount) + 1;
      value = value
        .replace(/\bnode([1-3])\b/g, (_m, x: string) => `node${nodeOf(Number(x))}`)
        .replace(/\b192\.168\.77\.(2[1-3])\b/g, (_m, last: string) => nodeIp(nodeOf(Number(last) - 20)));
      const key = `${PG_PREFIX}${app}/${name}`;
      kvs[key] = value;
      bytes += key.length + value.length;
      podGroups++;
      containers += (value.match(/"ContainerIp":/g) ?? []).length;
      apps.add(app);
      if (!sampleApp && t.app === 'hello') sampleApp = app;
    }
  }
  return { kvs, podGroups, apps: [...apps], bytes, containers, nodes: nodeCount, sampleApp: sampleApp || [...apps][0] };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = process.argv[2] ?? 'cluster-large.json';
  const c = generateCluster();
  writeFileSync(out, JSON.stringify({ about: 'generated by bench/lib/gen-cluster.ts from cluster-small.json', kvs: c.kvs }));
  process.stdout.write(`${out}: ${c.podGroups} pod groups, ${c.containers} containers, ${c.nodes} nodes, ${(c.bytes / 1024 / 1024).toFixed(1)} MB\n`);
}
