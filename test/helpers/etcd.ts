import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { freePorts } from './ports.js';
import { killWithTestProcess, waitFor, waitForExit } from './procs.js';

export interface EtcdServer {
  /** "127.0.0.1:<client port>" */
  endpoint: string;
  /** "http://127.0.0.1:<client port>" */
  url: string;
  dataDir: string;
  logFile: string;
  /** SIGTERM, wait for the exit, remove the temp dir. Safe to call more than once. */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit; the data dir stays for restart(). */
  kill(): Promise<void>;
  /** Start again (stopping gracefully first if running) on the same ports and data dir; waits until healthy. */
  restart(): Promise<void>;
  /** The Prometheus text of GET /metrics. */
  metrics(): Promise<string>;
  /** etcd_debugging_mvcc_watcher_total: the watches etcd holds right now. */
  watcherCount(): Promise<number>;
}

export interface StartEtcdOptions {
  /** Serve the v2 keys API (/v2/keys) as well. */
  v2?: boolean;
}

const MEMBER_NAME = 'lainlet-test';
/** A single-node etcd elects itself within about one election timeout (1 s); the rest is slack for loaded CI. */
const HEALTHY_WITHIN_MS = 20_000;
/** etcd flushes and closes its WAL on SIGTERM; this is far more than it needs. */
const GRACEFUL_EXIT_MS = 10_000;
/** How many times a first start is retried when another process took a port between freePorts() and etcd's bind. */
const PORT_RACE_RETRIES = 3;
/** etcd's default --max-txn-ops is 128; raised so putAll can write a realistic batch as one revision. */
const MAX_TXN_OPS = 10_000;

/** Temp dirs of servers not yet stopped: removed when the test process exits. */
const liveTempDirs = new Set<string>();
// Registered after procs.ts's handler (imported above), so etcd is already SIGKILLed.
process.on('exit', () => {
  for (const dir of liveTempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort: a dying etcd may still be writing into it
    }
  }
});

/** Starts a real etcd in a fresh temp dir on free loopback ports and waits until it is healthy. */
export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdServer> {
  const tempDir = await mkdtemp(path.join(os.tmpdir(), 'lainlet-etcd-'));
  liveTempDirs.add(tempDir);
  try {
    for (let attempt = 1; ; attempt++) {
      const [clientPort, peerPort] = await freePorts(2);
      const server = new EtcdProcess(tempDir, clientPort, peerPort, opts);
      try {
        await server.start();
        return server;
      } catch (error) {
        const log = await server.logTail();
        if (attempt < PORT_RACE_RETRIES && /address already in use/.test(log)) {
          await rm(server.dataDir, { recursive: true, force: true });
          continue;
        }
        throw error;
      }
    }
  } catch (error) {
    await rm(tempDir, { recursive: true, force: true });
    liveTempDirs.delete(tempDir);
    throw error;
  }
}

class EtcdProcess implements EtcdServer {
  readonly endpoint: string;
  readonly url: string;
  readonly dataDir: string;
  readonly logFile: string;
  private readonly args: string[];
  private child: ChildProcess | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly tempDir: string,
    clientPort: number,
    peerPort: number,
    opts: StartEtcdOptions,
  ) {
    this.endpoint = `127.0.0.1:${clientPort}`;
    this.url = `http://${this.endpoint}`;
    this.dataDir = path.join(tempDir, 'data');
    this.logFile = path.join(tempDir, 'etcd.log');
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    this.args = [
      `--name=${MEMBER_NAME}`,
      `--data-dir=${this.dataDir}`,
      `--listen-client-urls=${this.url}`,
      `--advertise-client-urls=${this.url}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=${MEMBER_NAME}=${peerUrl}`,
      `--max-txn-ops=${MAX_TXN_OPS}`,
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=warn',
      ...(opts.v2 ? ['--enable-v2=true'] : []),
    ];
  }

  async start(): Promise<void> {
    const logFd = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn('etcd', this.args, { env: envWithoutEtcdSettings(), stdio: ['ignore', logFd, logFd] });
    } finally {
      closeSync(logFd);
    }
    this.child = child;
    killWithTestProcess(child);

    let spawnError: Error | undefined;
    child.once('error', (error) => (spawnError = error));
    try {
      await waitFor(
        async () => {
          if (spawnError) throw new StartupFailure(`could not run etcd (is etcd-server installed?): ${spawnError.message}`);
          if (child.exitCode !== null || child.signalCode !== null) {
            throw new StartupFailure(`etcd exited (code ${child.exitCode}, signal ${child.signalCode})`);
          }
          return await this.isHealthy();
        },
        { timeoutMs: HEALTHY_WITHIN_MS, message: `etcd at ${this.url} to report healthy` },
      );
    } catch (error) {
      if (child.pid !== undefined && isRunning(child)) {
        child.kill('SIGKILL');
        await waitForExit(child, GRACEFUL_EXIT_MS);
      }
      const reason = error instanceof StartupFailure ? error.message : String(error);
      throw new Error(`${reason}\n--- tail of ${this.logFile} ---\n${await this.logTail()}`);
    }
  }

  /** The last lines etcd logged (for error messages). */
  async logTail(lines = 30): Promise<string> {
    const log = await readFile(this.logFile, 'utf8').catch(() => '');
    return log.trimEnd().split('\n').slice(-lines).join('\n');
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.terminate();
      await rm(this.tempDir, { recursive: true, force: true });
      liveTempDirs.delete(this.tempDir);
    })();
    return this.stopping;
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !isRunning(child)) return;
    child.kill('SIGKILL');
    if (!(await waitForExit(child, GRACEFUL_EXIT_MS))) throw new Error(`etcd (pid ${child.pid}) survived SIGKILL`);
  }

  async restart(): Promise<void> {
    if (this.stopping) throw new Error('restart() after stop(): the data dir is gone');
    await this.terminate();
    await this.start();
  }

  async metrics(): Promise<string> {
    const response = await fetch(`${this.url}/metrics`);
    if (!response.ok) throw new Error(`GET ${this.url}/metrics: ${response.status}`);
    return response.text();
  }

  async watcherCount(): Promise<number> {
    const match = /^etcd_debugging_mvcc_watcher_total (\S+)$/m.exec(await this.metrics());
    if (!match) throw new Error(`etcd_debugging_mvcc_watcher_total missing from ${this.url}/metrics`);
    return Number(match[1]);
  }

  private async isHealthy(): Promise<boolean> {
    // etcd 3.4 answers {"health":"true"} once it has a leader and can serve.
    const response = await fetch(`${this.url}/health`);
    const body = (await response.json()) as { health?: string };
    return body.health === 'true';
  }

  /** SIGTERM (SIGKILL if that is not enough) and wait for the exit. */
  private async terminate(): Promise<void> {
    const child = this.child;
    if (!child || !isRunning(child)) return;
    child.kill('SIGTERM');
    if (await waitForExit(child, GRACEFUL_EXIT_MS)) return;
    await this.kill();
  }
}

class StartupFailure extends Error {}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** ETCD_* variables would override our flags (etcd reads its config from the environment too). */
function envWithoutEtcdSettings(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('ETCD')));
}

// ---------------------------------------------------------------------------
// v3 helpers (etcd3 client)
// ---------------------------------------------------------------------------

/** A client for `server`; the caller closes it. */
export function etcdClient(server: EtcdServer): Etcd3 {
  return new Etcd3({ hosts: server.url });
}

/** The store's current revision. */
export async function currentRevision(client: Etcd3): Promise<number> {
  const response = await client.kv.range({ key: Buffer.from('\0'), limit: 1, count_only: true });
  return Number(response.header.revision);
}

/**
 * Puts every key in one transaction per MAX_TXN_OPS keys, so a batch of up to
 * that many keys is a single etcd revision. Returns the revision of the last write.
 */
export async function putAll(client: Etcd3, kvs: Record<string, string>): Promise<number> {
  const entries = Object.entries(kvs);
  let revision = await currentRevision(client);
  for (let start = 0; start < entries.length; start += MAX_TXN_OPS) {
    const response = await client.kv.txn({
      success: entries.slice(start, start + MAX_TXN_OPS).map(([key, value]) => ({
        request_put: { key: Buffer.from(key), value: Buffer.from(value) },
      })),
    });
    revision = Number(response.header.revision);
  }
  return revision;
}

/**
 * Compacts `server`'s history up to `revision` (default: the current revision),
 * waiting until the compaction is physically applied. Returns that revision.
 */
export async function compact(server: EtcdServer, revision?: number): Promise<number> {
  const client = etcdClient(server);
  try {
    const target = revision ?? (await currentRevision(client));
    await client.kv.compact({ revision: target, physical: true });
    return target;
  } finally {
    client.close();
  }
}

// ---------------------------------------------------------------------------
// v2 keys API helpers (needs startEtcd({ v2: true }))
// ---------------------------------------------------------------------------

export interface V2Node {
  key?: string;
  value?: string;
  dir?: boolean;
  nodes?: V2Node[];
  createdIndex?: number;
  modifiedIndex?: number;
}

export interface V2Response {
  action: string;
  node: V2Node;
  prevNode?: V2Node;
}

function v2KeyUrl(server: EtcdServer, key: string, query: Record<string, boolean | undefined> = {}): string {
  const encodedKey = key.replace(/^\/+/, '').split('/').map(encodeURIComponent).join('/');
  const params = new URLSearchParams();
  for (const [name, enabled] of Object.entries(query)) if (enabled) params.set(name, 'true');
  const search = params.toString() === '' ? '' : `?${params.toString()}`;
  return `${server.url}/v2/keys/${encodedKey}${search}`;
}

async function v2Request(method: string, url: string, body?: URLSearchParams): Promise<V2Response> {
  const response = await fetch(url, { method, body });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${url}: ${response.status} ${text}`);
  return JSON.parse(text) as V2Response;
}

export function v2Put(server: EtcdServer, key: string, value: string): Promise<V2Response> {
  return v2Request('PUT', v2KeyUrl(server, key), new URLSearchParams({ value }));
}

export function v2Get(server: EtcdServer, key: string, opts: { recursive?: boolean } = {}): Promise<V2Response> {
  return v2Request('GET', v2KeyUrl(server, key, opts));
}

export function v2Delete(
  server: EtcdServer,
  key: string,
  opts: { dir?: boolean; recursive?: boolean } = {},
): Promise<V2Response> {
  return v2Request('DELETE', v2KeyUrl(server, key, opts));
}
