// A real deployment on loopback for integration tests: etcd, hubs and agents as separate
// processes (the built dist/ programs), on free ports.
import { readReferenceJson } from './reference.js';
import { etcdClient, putAll, startEtcd, type EtcdServer } from '../../testkit/etcd.js';
import { httpGet } from '../../testkit/http.js';
import { freePorts } from '../../testkit/ports.js';
import { startAgent, startHub, waitFor, type Proc } from '../../testkit/procs.js';

export interface RunningHub { proc: Proc; port: number; url: string; args: string[] }
export interface RunningAgent { proc: Proc; port: number; base: string; args: string[] }

export interface ClusterOptions {
  hubs?: number;
  agents?: number;
  kvs?: Record<string, string>;
  hubArgs?: string[];
  agentArgs?: (i: number) => string[];
  etcd?: EtcdServer;
}

export interface Cluster {
  etcd: EtcdServer;
  hubs: RunningHub[];
  agents: RunningAgent[];
  startHubAt(port: number, extra?: string[]): Promise<RunningHub>;
  stop(): Promise<void>;
}

export function fixtureKvs(name: 'cluster-small' | 'edge-cases'): Record<string, string> {
  const parsed = readReferenceJson<Record<string, unknown>>(`fixtures/${name}.json`);
  const kvs = (parsed.kvs ?? parsed) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(kvs).filter(([k, v]) => k.startsWith('/') && typeof v === 'string')) as Record<string, string>;
}

export async function hubHealthy(port: number): Promise<boolean> {
  try { return (await httpGet(`http://127.0.0.1:${port}/healthz`)).status === 200; } catch { return false; }
}

export async function agentSynced(base: string): Promise<boolean> {
  try { return (await httpGet(`${base}/v2/configwatcher?target=domain`)).status === 200; } catch { return false; }
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const etcd = opts.etcd ?? (await startEtcd());
  const procs: Proc[] = [];
  try {
    if (opts.kvs) {
      const client = etcdClient(etcd);
      await putAll(client, opts.kvs);
      client.close();
    }
    const nHubs = opts.hubs ?? 1;
    const nAgents = opts.agents ?? 1;
    const ports = await freePorts(nHubs + nAgents);
    const startHubAt = async (port: number, extra: string[] = []): Promise<RunningHub> => {
      const args = ['--etcd', etcd.endpoint, '--listen', `127.0.0.1:${port}`, '--progress-interval', '500', '--shutdown-spread', '500', ...(opts.hubArgs ?? []), ...extra];
      const proc = startHub(args);
      procs.push(proc);
      // 30 s: a clean-clone CI run on a slow host once saw a hub print nothing for 15 s while the
      // first test files all started their etcds and hubs at once.
      // (The hub's output is read when the wait fails, not when it starts: it is empty then.)
      await waitFor(() => hubHealthy(port), { timeoutMs: 30_000, message: `hub on ${port} to become healthy` })
        .catch((err: Error) => { throw new Error(`${err.message}; its output (running: ${proc.running}):\n${proc.output()}`); });
      return { proc, port, url: `ws://127.0.0.1:${port}`, args };
    };
    const hubs: RunningHub[] = [];
    for (let i = 0; i < nHubs; i++) hubs.push(await startHubAt(ports[i]));
    const agents: RunningAgent[] = [];
    for (let i = 0; i < nAgents; i++) {
      const port = ports[nHubs + i];
      // Short silence and backoff bounds keep failover tests quick and steady on a loaded machine.
      const args = ['-web', `127.0.0.1:${port}`, '-hub', hubs.map((h) => h.url).join(','), '-silence-timeout', '1500', '-reconnect-max', '2000', ...(opts.agentArgs?.(i) ?? ['-ip', '127.0.0.1', '-hostname', 'node1'])];
      const proc = startAgent(args);
      procs.push(proc);
      agents.push({ proc, port, base: `http://127.0.0.1:${port}`, args });
    }
    for (const a of agents) {
      await waitFor(() => agentSynced(a.base), { timeoutMs: 15_000, message: `agent on ${a.port} did not sync:\n${a.proc.output()}` });
    }
    return {
      etcd, hubs, agents, startHubAt,
      async stop() {
        await Promise.all(procs.map((p) => p.kill().catch(() => {})));
        if (!opts.etcd) await etcd.stop();
      },
    };
  } catch (err) {
    await Promise.all(procs.map((p) => p.kill().catch(() => {})));
    if (!opts.etcd) await etcd.stop();
    throw err;
  }
}
