// A real etcd (Debian's etcd-server) on free loopback ports, with its data in tmpfs when the
// machine has one: the benchmark measures lainlet, not the disk's fsync latency (a note in
// RESULTS.md says where the data lived).
import { closeSync, existsSync, openSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { freePorts } from './ports.js';
import { metricSum, metricValue, spawnProgram, waitFor, type Proc } from './procs.js';

export interface EtcdServer {
  endpoint: string;
  url: string;
  dataDir: string;
  onTmpfs: boolean;
  proc: Proc;
  client: Etcd3;
  metrics(): Promise<string>;
  watchLoad(): Promise<WatchLoad>;
  stop(): Promise<void>;
}

/** What etcd itself says about the watches it serves. */
export interface WatchLoad {
  /** etcd_debugging_mvcc_watcher_total: watchers (one per watch request). */
  watchers: number;
  /** etcd_debugging_mvcc_watch_stream_total: gRPC watch streams. */
  watchStreams: number;
  /** grpc Watch streams started minus handled: open gRPC Watch calls. */
  grpcWatchCalls: number;
}

// Large enough for a whole 10 MB cluster in a few transactions.
const MAX_REQUEST_BYTES = 32 * 1024 * 1024;
const MAX_TXN_OPS = 10_000;

/** Data dirs of etcds not yet stopped: removed when the benchmark exits, whatever happened. */
const liveDirs = new Set<string>();
process.on('exit', () => {
  for (const dir of liveDirs) { try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ } }
});

function envWithoutEtcd(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD')));
}

export async function startEtcd(): Promise<EtcdServer> {
  const onTmpfs = existsSync('/dev/shm') && isWritable('/dev/shm');
  const tempDir = await mkdtemp(path.join(onTmpfs ? '/dev/shm' : os.tmpdir(), 'lainlet-bench-etcd-'));
  liveDirs.add(tempDir);
  const dataDir = path.join(tempDir, 'data');
  let proc: Proc | undefined;
  let url = '';
  let endpoint = '';
  // A port can be taken between freePorts() and etcd's bind: try again on new ones.
  for (let attempt = 1; ; attempt++) {
    const [clientPort, peerPort] = await freePorts(2);
    endpoint = `127.0.0.1:${clientPort}`;
    url = `http://${endpoint}`;
    const peer = `http://127.0.0.1:${peerPort}`;
    proc = spawnProgram('etcd', 'etcd', [
      '--name=bench', `--data-dir=${dataDir}`,
      `--listen-client-urls=${url}`, `--advertise-client-urls=${url}`,
      `--listen-peer-urls=${peer}`, `--initial-advertise-peer-urls=${peer}`, `--initial-cluster=bench=${peer}`,
      `--max-txn-ops=${MAX_TXN_OPS}`, `--max-request-bytes=${MAX_REQUEST_BYTES}`,
      '--logger=zap', '--log-outputs=stderr', '--log-level=warn',
    ], { env: envWithoutEtcd() });
    const p = proc;
    try {
      await waitFor(async () => {
        if (!p.running) throw new Error(`etcd exited:\n${p.output()}`);
        const r = await fetch(`${url}/health`);
        return ((await r.json()) as { health?: string }).health === 'true';
      }, { timeoutMs: 20_000, message: 'etcd healthy' });
      break;
    } catch (e) {
      await p.kill();
      await rm(dataDir, { recursive: true, force: true });
      if (attempt < 3 && /address already in use/.test(p.output())) continue;
      await rm(tempDir, { recursive: true, force: true });
      liveDirs.delete(tempDir);
      throw e;
    }
  }
  const client = new Etcd3({ hosts: url, grpcOptions: { 'grpc.max_receive_message_length': -1 } });
  const metrics = async () => (await fetch(`${url}/metrics`)).text();
  let stopped: Promise<void> | undefined;
  return {
    endpoint, url, dataDir, onTmpfs, proc, client, metrics,
    async watchLoad() {
      const text = await metrics();
      const started = metricSum(text, 'grpc_server_started_total', ['grpc_method="Watch"']);
      const handled = metricSum(text, 'grpc_server_handled_total', ['grpc_method="Watch"']);
      return {
        watchers: metricValue(text, 'etcd_debugging_mvcc_watcher_total'),
        watchStreams: metricValue(text, 'etcd_debugging_mvcc_watch_stream_total'),
        grpcWatchCalls: (started || 0) - (handled || 0),
      };
    },
    stop() {
      stopped ??= (async () => {
        client.close();
        await proc.stop('SIGTERM', 10_000);
        await rm(tempDir, { recursive: true, force: true });
        liveDirs.delete(tempDir);
      })();
      return stopped;
    },
  };
}

function isWritable(dir: string): boolean {
  try {
    const probe = path.join(dir, `.lainlet-bench-${process.pid}`);
    closeSync(openSync(probe, 'w'));
    void rm(probe, { force: true });
    return true;
  } catch { return false; }
}

export async function currentRevision(client: Etcd3): Promise<number> {
  const res = await client.getAll().prefix('\u0000bench-revision-probe').limit(1).exec();
  return Number(res.header.revision);
}

/**
 * Writes every key, in transactions of at most MAX_TXN_OPS keys and about 8 MB each (etcd's
 * request limit); returns the revision of the last one.
 */
export async function putAll(client: Etcd3, kvs: Record<string, string>): Promise<number> {
  let rev = await currentRevision(client);
  let batch: Array<[string, string]> = [];
  let bytes = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const res = await client.kv.txn({
      success: batch.map(([key, value]) => ({ request_put: { key: Buffer.from(key), value: Buffer.from(value) } })),
    });
    rev = Number(res.header.revision);
    batch = [];
    bytes = 0;
  };
  for (const [k, v] of Object.entries(kvs)) {
    batch.push([k, v]);
    bytes += k.length + v.length;
    if (batch.length >= MAX_TXN_OPS || bytes >= 8 * 1024 * 1024) await flush();
  }
  await flush();
  return rev;
}

export async function putOne(client: Etcd3, key: string, value: string): Promise<number> {
  const res = await client.put(key).value(value).exec();
  return Number(res.header.revision);
}
