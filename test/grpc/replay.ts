// Replays golden/grpc-cluster-small.json (GRPC.md §11.3) against a real etcd, hub and agent (the
// built dist/ programs) and writes what the agent answered to the JSON file named by argv[2];
// test/grpc-golden.test.ts compares. Run inside a network namespace that has the recording's
// container addresses on lo (the test does: unshare --net), so calls can come from them.
//
// Synchronised on events, not on the recording's pauses: every stream has its first reply (or
// its end) before the first mutation; each mutation is applied by the agent (its revision) before
// the next; a sentinel stream on the local connection, changed last, has its reply before the
// streams are cancelled — replies of one connection arrive in the order the agent sent them.
import { writeFileSync } from 'node:fs';
import { readReferenceJson } from '../helpers/reference.js';
import { fixtureKvs, startCluster } from '../helpers/cluster.js';
import { etcdClient } from '../../testkit/etcd.js';
import { freePort } from '../../testkit/ports.js';
import { httpGet } from '../../testkit/http.js';
import { waitFor } from '../../testkit/procs.js';
import { LainletClient, relayFrom, type Msg, type UnaryResult, type WatchStream } from './client.js';

export interface GoldenCall { rpc: string; from: string; request: Msg; reply?: Msg; error?: { code: string; code_number: number; message: string }; unordered?: string[]; note?: string }
export interface GoldenStream { rpc: string; from: string; request: Msg; replies: Array<{ after_mutation: number; reply: Msg }>; end: unknown }
export interface GoldenMutation { op: 'put' | 'del' | 'delete'; key: string; value?: string }
export interface GrpcGolden {
  setup: { hostname: string; source_addresses: Record<string, string> };
  calls: GoldenCall[];
  watches: { mutations: GoldenMutation[]; streams: GoldenStream[] };
  after: GoldenCall[];
  crashes: Array<{ setup?: string; call: GoldenCall & { replies?: unknown[] } }>;
  wire: Array<{ rpc: string; request: Msg; reply_hex: string; note?: string }>;
}

export interface ReplayResult {
  calls: UnaryResult[];
  watches: Array<{ replies: Msg[]; end?: { code: number; message: string } }>;
  after: UnaryResult[];
  /** The calls that crashed the original (no setup), answered by the agent. */
  crashes: Array<UnaryResult | { replies: Msg[]; end?: { code: number; message: string } }>;
  /** The `wire` calls' reply bytes, hex (or the error). */
  wire: Array<string | { code: number; message: string }>;
}

export const SENTINEL_KEY = '/lain/config/zz-grpc-replay-sentinel';

async function main(): Promise<void> {
  const out = process.argv[2];
  if (!out) throw new Error('usage: replay.ts <output.json>');
  const golden = readReferenceJson<GrpcGolden>('golden/grpc-cluster-small.json');
  const grpcPort = await freePort();
  const cluster = await startCluster({
    hubs: 1, agents: 1, kvs: fixtureKvs('cluster-small'),
    agentArgs: () => ['-ip', '127.0.0.1', '-hostname', golden.setup.hostname, '-grpc.addr', `127.0.0.1:${grpcPort}`],
  });
  const relays: Array<{ close(): void }> = [];
  const clients = new Map<string, LainletClient>();
  const clientFrom = async (from: string): Promise<LainletClient> => {
    let c = clients.get(from);
    if (!c) {
      let address = `127.0.0.1:${grpcPort}`;
      if (from !== '127.0.0.1') {
        const relay = await relayFrom(from, '127.0.0.1', grpcPort);
        relays.push(relay);
        address = relay.address;
      }
      clients.set(from, (c = new LainletClient(address)));
    }
    return c;
  };
  const etcd = etcdClient(cluster.etcd);
  try {
    const local = await clientFrom('127.0.0.1');
    await waitFor(async () => 'reply' in (await local.call('/message.Config/Get', { Target: 'domain' })), { timeoutMs: 15_000, message: 'gRPC answers' });
    const agentRevision = async () => (JSON.parse((await httpGet(`${cluster.agents[0].base}/debug`)).body) as { revision: number }).revision;

    const replayCalls = async (calls: GoldenCall[]) => {
      const results: UnaryResult[] = [];
      for (const c of calls) results.push(await (await clientFrom(c.from)).call(c.rpc, c.request));
      return results;
    };
    const calls = await replayCalls(golden.calls);
    const wire: ReplayResult['wire'] = [];
    for (const w of golden.wire) {
      const bytes = await local.raw(w.rpc, w.request);
      wire.push(Buffer.isBuffer(bytes) ? bytes.toString('hex') : bytes);
    }

    const streams: WatchStream[] = [];
    for (const s of golden.watches.streams) {
      const w = (await clientFrom(s.from)).watch(s.rpc, s.request);
      streams.push(w);
      await w.replyCount(1);
    }
    const sentinel = local.watch('/message.Config/Watch', { Target: SENTINEL_KEY.slice('/lain/config/'.length) });
    await sentinel.replyCount(1);
    const apply = async (m: GoldenMutation) => {
      const res = m.op === 'put' ? await etcd.put(m.key).value(m.value ?? '') : await etcd.delete().key(m.key);
      const rev = Number(res.header.revision);
      await waitFor(async () => (await agentRevision()) >= rev, { timeoutMs: 15_000, message: `agent applies ${m.op} ${m.key} (revision ${rev})` });
    };
    for (const m of golden.watches.mutations) await apply(m);
    await apply({ op: 'put', key: SENTINEL_KEY, value: 'done' });
    await sentinel.replyCount(2);
    for (const w of [...streams, sentinel]) w.cancel();
    for (const w of [...streams, sentinel]) await w.ended();
    const watches = streams.map((w) => ({ replies: w.replies, end: w.end }));
    await etcd.delete().key(SENTINEL_KEY);

    const after = await replayCalls(golden.after);

    const crashes: ReplayResult['crashes'] = [];
    for (const { setup, call } of golden.crashes) {
      if (setup) continue;
      const client = await clientFrom(call.from);
      if (call.rpc.endsWith('/Watch')) {
        const w = client.watch(call.rpc, call.request);
        await w.replyCount(1);
        w.cancel();
        await w.ended();
        crashes.push({ replies: w.replies, end: w.end });
      } else {
        crashes.push(await client.call(call.rpc, call.request));
      }
    }
    const result: ReplayResult = { calls, wire, watches, after, crashes };
    writeFileSync(out, JSON.stringify(result));
  } finally {
    etcd.close();
    for (const c of clients.values()) c.close();
    for (const r of relays) r.close();
    await cluster.stop();
  }
}

main().then(() => process.exit(0), (err: Error) => {
  process.stderr.write(`replay failed: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
