// Starting the project's real programs (dist/hub/main.js, dist/agent/main.js) for a measurement.
import { readFileSync } from 'node:fs';
import { httpGet } from '../../testkit/http.js';
import { AGENT_SCRIPT, HUB_SCRIPT } from '../../testkit/paths.js';
import { freePort } from '../../testkit/ports.js';
import { startNodeProgram as spawnNode, waitFor, type Proc, type ProcOptions as SpawnOptions } from '../../testkit/procs.js';

export interface HubProc { proc: Proc; port: number; url: string; args: string[] }
export interface AgentProc { proc: Proc; port: number; base: string }

export async function hubHealthy(port: number): Promise<boolean> {
  try { return (await httpGet(`http://127.0.0.1:${port}/healthz`, 2000)).status === 200; } catch { return false; }
}

/** Starts a hub; waits until /healthz says it has loaded the store (unless wait is false). */
export async function startHub(args: string[], opts: { port?: number; wait?: boolean; timeoutMs?: number; spawn?: SpawnOptions } = {}): Promise<HubProc> {
  const port = opts.port ?? (await freePort());
  const all = ['--listen', `127.0.0.1:${port}`, ...args];
  const proc = spawnNode('hub', HUB_SCRIPT, all, opts.spawn);
  const hub = { proc, port, url: `ws://127.0.0.1:${port}`, args: all };
  if (opts.wait !== false) {
    await waitFor(async () => {
      if (!proc.running) throw new Error(`hub exited:\n${proc.output()}`);
      return hubHealthy(port);
    }, { timeoutMs: opts.timeoutMs ?? 20_000, message: `hub on ${port} to load its store` });
  }
  return hub;
}

export async function hubMetrics(port: number): Promise<string> {
  return (await httpGet(`http://127.0.0.1:${port}/metrics`)).body;
}

/** Starts a real agent process serving HTTP on a free port, -noauth, as node1 / 127.0.0.1. */
/**
 * The node options of the installed `lainlet-agent` command, read from its shebang (the first
 * line of dist/agent/main.js, which systemd starts): e.g. --max-semi-space-size=2, the agent's
 * young generation, which decides its RSS and how long its scavenges pause a change's path.
 */
export function deployedNodeArgs(): string[] {
  const shebang = readFileSync(AGENT_SCRIPT, 'utf8').split('\n', 1)[0];
  const m = /^#!.*\bnode\b(.*)$/.exec(shebang);
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
}

export async function startAgent(hubs: string[], extra: string[] = [], opts: { port?: number; spawn?: SpawnOptions } = {}): Promise<AgentProc> {
  const port = opts.port ?? (await freePort());
  const proc = spawnNode('agent', AGENT_SCRIPT, ['-web', `127.0.0.1:${port}`, '-hub', hubs.join(','), '-ip', '127.0.0.1', '-hostname', 'node1', '-noauth', ...extra], opts.spawn);
  return { proc, port, base: `http://127.0.0.1:${port}` };
}

/** Waits until the agent answers `path` with 200 (it answers 503 until it has a state). */
export async function waitSynced(agent: AgentProc, path = '/v2/configwatcher?target=domain', timeoutMs = 30_000): Promise<void> {
  await waitFor(async () => {
    if (!agent.proc.running) throw new Error(`agent exited:\n${agent.proc.output()}`);
    return (await httpGet(agent.base + path, 5000)).status === 200;
  }, { timeoutMs, message: `agent on ${agent.port} to sync` });
}
