// A real etcd (Debian's etcd-server) in a fresh temp dir on free loopback ports, for the tests
// and the benchmark, with helpers for writing to it through the v3 and v2 APIs.
import { closeSync, openSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { metricSum, metricValue } from './metrics.js';
import { freePorts } from './ports.js';
import { startProgram, waitFor, waitForExit, type Proc } from './procs.js';

export interface EtcdServer {
  /** "127.0.0.1:<client port>" */
  endpoint: string;
  /** "http://127.0.0.1:<client port>" */
  url: string;
  dataDir: string;
  /** The data dir is in tmpfs (StartEtcdOptions.dataOnTmpfs, and /dev/shm was writable). */
  onTmpfs: boolean;
  /** The etcd process running now (a new one after restart()). */
  readonly proc: Proc;
  /** A client shared by the callers of this property, closed by stop(). */
  readonly client: Etcd3;
  /** Close the client, SIGTERM, wait for the exit, remove the temp dir. Safe to call more than once. */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit; the data dir stays for restart(). */
  kill(): Promise<void>;
  /** SIGSTOP (pause(true)) or SIGCONT (pause(false)): a member that stops answering without closing anything. */
  pause(paused: boolean): void;
  /** Start again (stopping gracefully first if running) on the same ports and data dir; waits until healthy. */
  restart(): Promise<void>;
  /** The Prometheus text of GET /metrics. */
  metrics(): Promise<string>;
  /** etcd_debugging_mvcc_watcher_total: the watches etcd holds right now. */
  watcherCount(): Promise<number>;
  /** What etcd itself says about the watches it serves. */
  watchLoad(): Promise<WatchLoad>;
}

export interface WatchLoad {
  /** etcd_debugging_mvcc_watcher_total: watchers (one per watch request). */
  watchers: number;
  /** etcd_debugging_mvcc_watch_stream_total: gRPC watch streams. */
  watchStreams: number;
  /** grpc Watch streams started minus handled: open gRPC Watch calls. */
  grpcWatchCalls: number;
}

export interface StartEtcdOptions {
  /** Serve the v2 keys API (/v2/keys) as well. */
  v2?: boolean;
  /**
   * Keep the data in /dev/shm when it is writable, so that etcd's fsync does not dominate
   * latencies meant to be lainlet's (the benchmark). Tests keep it on disk, like production.
   */
  dataOnTmpfs?: boolean;
  /** etcd's --max-request-bytes (its default is 1.5 MiB). */
  maxRequestBytes?: number;
}

const MEMBER_NAME = 'lainlet';
/** A single-node etcd elects itself within about one election timeout (1 s); the rest is slack for loaded CI. */
const HEALTHY_WITHIN_MS = 20_000;
/** etcd flushes and closes its WAL on SIGTERM; this is far more than it needs. */
const GRACEFUL_EXIT_MS = 10_000;
/** How many times a first start is retried when another process took a port between freePorts() and etcd's bind. */
const PORT_RACE_RETRIES = 3;
/** etcd's default --max-txn-ops is 128; raised so putAll can write a realistic batch as one revision. */
const MAX_TXN_OPS = 10_000;
/** putAll's transactions stay under this many bytes of keys and values: etcd's request limit, as the benchmark raises it. */
const MAX_TXN_BYTES = 8 * 1024 * 1024;

/** Temp dirs of servers not yet stopped: removed when this process exits, whatever happened. */
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
  const { dir: tempDir, onTmpfs } = await makeTempDir(opts.dataOnTmpfs === true);
  try {
    for (let attempt = 1; ; attempt++) {
      const [clientPort, peerPort] = await freePorts(2);
      const server = new EtcdProcess(tempDir, onTmpfs, { name: MEMBER_NAME, dataDir: path.join(tempDir, 'data'), clientPort, peerPort }, opts);
      try {
        await server.start();
        return server;
      } catch (error) {
        if (attempt < PORT_RACE_RETRIES && /address already in use/.test(server.proc.output())) {
          await rm(server.dataDir, { recursive: true, force: true });
          continue;
        }
        throw error;
      }
    }
  } catch (error) {
    await removeTempDir(tempDir);
    throw error;
  }
}

/** A temp dir for etcd data (in /dev/shm when asked and writable), removed when this process exits. */
export async function makeTempDir(onTmpfsWanted: boolean): Promise<{ dir: string; onTmpfs: boolean }> {
  const onTmpfs = onTmpfsWanted && isWritable('/dev/shm');
  const dir = await mkdtemp(path.join(onTmpfs ? '/dev/shm' : os.tmpdir(), 'lainlet-etcd-'));
  liveTempDirs.add(dir);
  return { dir, onTmpfs };
}

export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  liveTempDirs.delete(dir);
}

/** How one etcd process is laid out: its name, data dir, URLs and the cluster it bootstraps or joins. */
export interface EtcdLayout {
  name: string;
  dataDir: string;
  clientPort: number;
  /** The port etcd listens on for its peers. */
  peerPort: number;
  /** The peer URL the others dial (default: the listening one; a cluster points it at a fault proxy). */
  advertisePeerUrl?: string;
  /** --initial-cluster (default: this member alone). */
  initialCluster?: string;
  /** 'existing' for a member added to a running cluster. */
  clusterState?: 'new' | 'existing';
  /** Extra flags (etcd reads the last of a repeated flag). */
  extraArgs?: string[];
}

/** One etcd process (a single server, or a member of a testkit/etcd-cluster.ts cluster). */
export class EtcdProcess implements EtcdServer {
  readonly endpoint: string;
  readonly url: string;
  readonly dataDir: string;
  /** The flags etcd is started with; a cluster may change the bootstrap ones before a restart. */
  args: string[];
  private current: Proc | undefined;
  private sharedClient: Etcd3 | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly tempDir: string,
    readonly onTmpfs: boolean,
    layout: EtcdLayout,
    opts: StartEtcdOptions,
  ) {
    this.endpoint = `127.0.0.1:${layout.clientPort}`;
    this.url = `http://${this.endpoint}`;
    this.dataDir = layout.dataDir;
    const peerUrl = `http://127.0.0.1:${layout.peerPort}`;
    const advertised = layout.advertisePeerUrl ?? peerUrl;
    this.args = [
      `--name=${layout.name}`,
      `--data-dir=${this.dataDir}`,
      `--listen-client-urls=${this.url}`,
      `--advertise-client-urls=${this.url}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${advertised}`,
      `--initial-cluster=${layout.initialCluster ?? `${layout.name}=${advertised}`}`,
      `--initial-cluster-state=${layout.clusterState ?? 'new'}`,
      `--max-txn-ops=${MAX_TXN_OPS}`,
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=warn',
      ...(opts.v2 ? ['--enable-v2=true'] : []),
      ...(opts.maxRequestBytes !== undefined ? [`--max-request-bytes=${opts.maxRequestBytes}`] : []),
      ...(layout.extraArgs ?? []),
    ];
  }

  get proc(): Proc {
    if (!this.current) throw new Error('etcd was never started');
    return this.current;
  }

  get client(): Etcd3 {
    if (this.stopping) throw new Error('client after stop()');
    this.sharedClient ??= etcdClient(this);
    return this.sharedClient;
  }

  async start(): Promise<void> {
    const proc = startProgram('etcd', 'etcd', this.args, { env: withoutEtcdSettings() });
    this.current = proc;
    try {
      await waitFor(
        async () => {
          if (proc.spawnError) throw new StartupFailure(`could not run etcd (is etcd-server installed?): ${proc.spawnError.message}`);
          if (!proc.running) {
            throw new StartupFailure(`etcd exited (code ${proc.proc.exitCode}, signal ${proc.proc.signalCode})`);
          }
          return await this.isHealthy();
        },
        { timeoutMs: HEALTHY_WITHIN_MS, message: `etcd at ${this.url} to report healthy` },
      );
    } catch (error) {
      await proc.kill();
      const reason = error instanceof StartupFailure ? error.message : String(error);
      throw new Error(`${reason}\n--- etcd's output ---\n${proc.output()}`);
    }
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.sharedClient?.close();
      await this.terminate();
      await removeTempDir(this.tempDir);
    })();
    return this.stopping;
  }

  async kill(): Promise<void> {
    const proc = this.current;
    if (!proc?.running) return;
    proc.proc.kill('SIGKILL');
    if (!(await waitForExit(proc.proc, GRACEFUL_EXIT_MS))) throw new Error(`etcd (pid ${proc.pid}) survived SIGKILL`);
  }

  pause(paused: boolean): void {
    if (this.current?.running) this.current.proc.kill(paused ? 'SIGSTOP' : 'SIGCONT');
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
    const count = metricValue(await this.metrics(), 'etcd_debugging_mvcc_watcher_total');
    if (Number.isNaN(count)) throw new Error(`etcd_debugging_mvcc_watcher_total missing from ${this.url}/metrics`);
    return count;
  }

  async watchLoad(): Promise<WatchLoad> {
    const text = await this.metrics();
    const started = metricSum(text, 'grpc_server_started_total', ['grpc_method="Watch"']);
    const handled = metricSum(text, 'grpc_server_handled_total', ['grpc_method="Watch"']);
    return {
      watchers: metricValue(text, 'etcd_debugging_mvcc_watcher_total'),
      watchStreams: metricValue(text, 'etcd_debugging_mvcc_watch_stream_total'),
      grpcWatchCalls: (started || 0) - (handled || 0),
    };
  }

  private async isHealthy(): Promise<boolean> {
    // etcd 3.4 answers {"health":"true"} once it has a leader and can serve.
    const response = await fetch(`${this.url}/health`);
    const body = (await response.json()) as { health?: string };
    return body.health === 'true';
  }

  /** SIGTERM (SIGKILL if that is not enough) and wait for the exit. */
  private async terminate(): Promise<void> {
    const proc = this.current;
    if (!proc?.running) return;
    proc.proc.kill('SIGTERM');
    proc.proc.kill('SIGCONT'); // a paused etcd acts on the SIGTERM only once it runs
    if (await waitForExit(proc.proc, GRACEFUL_EXIT_MS)) return;
    await this.kill();
  }
}

class StartupFailure extends Error {}

/** ETCD_* variables would override our flags (etcd reads its config from the environment too). */
function withoutEtcdSettings(): Record<string, undefined> {
  return Object.fromEntries(Object.keys(process.env).filter((name) => name.startsWith('ETCD')).map((name) => [name, undefined]));
}

function isWritable(dir: string): boolean {
  const probe = path.join(dir, `.lainlet-etcd-probe-${process.pid}`);
  try {
    closeSync(openSync(probe, 'w'));
    rmSync(probe, { force: true });
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// v3 helpers (etcd3 client)
// ---------------------------------------------------------------------------

/** A client for `server`; the caller closes it. */
export function etcdClient(server: EtcdServer): Etcd3 {
  // No limit on what a read may return: the benchmark reads back a whole 10 MB cluster.
  return new Etcd3({ hosts: server.url, grpcOptions: { 'grpc.max_receive_message_length': -1 } });
}

/** The store's current revision. */
export async function currentRevision(client: Etcd3): Promise<number> {
  const response = await client.kv.range({ key: Buffer.from('\0'), limit: 1, count_only: true });
  return Number(response.header.revision);
}

/**
 * Puts every key in transactions of at most MAX_TXN_OPS keys and MAX_TXN_BYTES, so a
 * batch under both is a single etcd revision. Returns the revision of the last write.
 */
export async function putAll(client: Etcd3, kvs: Record<string, string>): Promise<number> {
  let revision = await currentRevision(client);
  let batch: Array<[string, string]> = [];
  let bytes = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const response = await client.kv.txn({
      success: batch.map(([key, value]) => ({ request_put: { key: Buffer.from(key), value: Buffer.from(value) } })),
    });
    revision = Number(response.header.revision);
    batch = [];
    bytes = 0;
  };
  for (const [key, value] of Object.entries(kvs)) {
    batch.push([key, value]);
    bytes += key.length + value.length;
    if (batch.length >= MAX_TXN_OPS || bytes >= MAX_TXN_BYTES) await flush();
  }
  await flush();
  return revision;
}

/** Puts one key; returns the revision of the write. */
export async function putOne(client: Etcd3, key: string, value: string): Promise<number> {
  const response = await client.put(key).value(value).exec();
  return Number(response.header.revision);
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

/** quorum: a linearizable read (through raft) rather than the member's own copy. */
export function v2Get(server: EtcdServer, key: string, opts: { recursive?: boolean; quorum?: boolean } = {}): Promise<V2Response> {
  return v2Request('GET', v2KeyUrl(server, key, opts));
}

export function v2Delete(
  server: EtcdServer,
  key: string,
  opts: { dir?: boolean; recursive?: boolean } = {},
): Promise<V2Response> {
  return v2Request('DELETE', v2KeyUrl(server, key, opts));
}
