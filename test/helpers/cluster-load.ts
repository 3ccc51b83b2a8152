// A hub (real process) on a three-member etcd cluster with an agent behind it and a writer
// committing transactions the whole time: the setting of test/etcd-cluster*.test.ts, in which
// a test breaks one member at a time and then checks that the agent equals etcd, that the
// agent's stream saw every counter value in order, and what the hub says about its member.
import { writeFileSync } from 'node:fs';
import type { ExecutionContext } from 'ava';
import { Etcd3 } from 'etcd3';
import WebSocket from 'ws';
import { decodeFrame, encodeFrame, PROTOCOL_VERSION, type HubFrame } from '../../shared/protocol.js';
import { startEtcdCluster, type EtcdCluster } from '../../testkit/etcd-cluster.js';
import { v2Get, type V2Node } from '../../testkit/etcd.js';
import { httpGet, openStream, type EventStream } from '../../testkit/http.js';
import { freePorts } from '../../testkit/ports.js';
import { startAgent, startHub, waitFor, type Proc } from '../../testkit/procs.js';
import { agentSynced, hubHealthy } from './cluster.js';

export interface ClusterLoad {
  cluster: EtcdCluster;
  hub: Proc;
  hubPort: number;
  agent: { base: string; proc: Proc };
  stream: EventStream;
  /** Transactions committed so far. */
  readonly committed: number;
  /** Waits until `k` more transactions have committed (each fault meets traffic). */
  written(phase: string, k?: number): Promise<void>;
  /** The index of the member the hub's watch runs on, from its /metrics (-1: none yet). */
  hubMember(): Promise<number>;
  hubMetric(name: string): Promise<number>;
  /** Stops the writer; the agent must then equal etcd and the stream must have seen every value in order. */
  finish(): Promise<{ values: number[]; last: number; missing: number[] }>;
  /**
   * Committed revisions that no delta of the hub delivered on its own: a delta prev→rev with a
   * committed write strictly between them (the watch skipped it, or a list of the present
   * jumped over it), as seen by a protocol client connected straight to the hub.
   */
  jumpedOver(): number[];
  stop(): Promise<void>;
}

export interface ClusterLoadOptions {
  v2?: boolean;
  /** Extra hub processes' endpoints are the caller's business; this is the main hub's list (default: all members). */
  hubEndpoints?: (cluster: EtcdCluster) => string[];
  snapshotCount?: number;
}

const PREFIX = '/lain/config/cl/';

export async function startClusterLoad(opts: ClusterLoadOptions = {}): Promise<ClusterLoad> {
  const cluster = await startEtcdCluster({ v2: opts.v2, dataOnTmpfs: true, snapshotCount: opts.snapshotCount });
  const procs: Proc[] = [];
  let writing = true;
  let writer: Promise<void> = Promise.resolve();
  const client = new Etcd3({ hosts: cluster.members.map((m) => m.url), defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 2000 }) });
  try {
    const [hubPort, agentPort] = await freePorts(2);
    const endpoints = (opts.hubEndpoints ?? ((c) => c.endpoints))(cluster);
    const hub = startHub(['--etcd', endpoints.join(','), '--listen', `127.0.0.1:${hubPort}`, '--progress-interval', '300', ...(opts.v2 ? ['--store', 'etcd2'] : [])]);
    procs.push(hub);
    const guard: Guard = { counterRev: 0 };
    await writeOnce(cluster, client, opts.v2 === true, 0, guard);
    await waitFor(() => hubHealthy(hubPort), { timeoutMs: 20_000, message: `hub healthy\n${hub.output()}` });
    const base = `http://127.0.0.1:${agentPort}`;
    const agentProc = startAgent(['-web', `127.0.0.1:${agentPort}`, '-hub', `ws://127.0.0.1:${hubPort}`, '-ip', '127.0.0.1', '-silence-timeout', '1500', '-reconnect-max', '1000']);
    procs.push(agentProc);
    await waitFor(() => agentSynced(base), { timeoutMs: 20_000, message: `agent synced\n${agentProc.output()}` });
    const stream = await openStream(`${base}/v2/configwatcher?target=cl/counter&watch=1`);
    const deltas = tapDeltas(hubPort);

    let committed = 0;
    let n = 0;
    const committedValues: number[] = [];
    const committedRevisions: number[] = [];
    writer = (async () => {
      while (writing) {
        n++;
        try {
          const c = await writeOnce(cluster, client, opts.v2 === true, n, guard);
          committedRevisions.push(...c.revisions); committed++; committedValues.push(c.value);
        } catch { /* a member down: the next try goes elsewhere */ }
        await new Promise((r) => setTimeout(r, 10)); // pacing: a bounded write rate
      }
    })();

    const metricsText = async () => (await httpGet(`http://127.0.0.1:${hubPort}/metrics`)).body;
    const load: ClusterLoad = {
      cluster, hub, hubPort, agent: { base, proc: agentProc }, stream,
      get committed() { return committed; },
      async written(phase, k = 10) {
        const from = committed;
        // Generous: a loaded 2-core machine slows etcd's elections and commits (the wait ends as soon as they are in).
        await waitFor(() => committed >= from + k, { timeoutMs: 60_000, intervalMs: 10, message: `${k} writes committed ${phase}` });
      },
      async hubMember() {
        const m = /^lainlet_hub_store_watch_member\{[^}]*url="([^"]*)"[^}]*\} 1$/m.exec(await metricsText());
        return m ? cluster.members.findIndex((member) => member.url === m[1]) : -1;
      },
      async hubMetric(name) {
        const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(await metricsText());
        if (!m) throw new Error(`metric ${name} not found`);
        return Number(m[1]);
      },
      async finish() {
        writing = false;
        await writer;
        const want = await etcdState(cluster, opts.v2 === true);
        try {
          await waitFor(async () => JSON.stringify(await agentState(base)) === JSON.stringify(want), { timeoutMs: 30_000, message: 'the agent equal to etcd' });
        } catch (err) {
          throw new Error(`${(err as Error).message}\nwant ${JSON.stringify(want)}\nhave ${JSON.stringify(await agentState(base).catch((e: Error) => e.message))}\n--- hub ---\n${hub.output().split('\n').slice(-30).join('\n')}`);
        }
        const last = Number(want['cl/counter']);
        await stream.waitFor((e) => e.data === JSON.stringify({ 'cl/counter': String(last) }), 15_000);
        const values = stream.events.filter((e) => e.event === 'update' && e.data !== '{}').map((e) => Number((JSON.parse(e.data) as Record<string, string>)['cl/counter']));
        const seen = new Set(values);
        return { values, last, missing: committedValues.filter((v) => !seen.has(v)) };
      },
      jumpedOver() {
        const out: number[] = [];
        const spans = deltas.spans.filter(([prev, rev]) => rev - prev > 1);
        for (const r of committedRevisions) if (r > deltas.firstRev && spans.some(([prev, rev]) => prev < r && r < rev)) out.push(r);
        return out;
      },
      async stop() {
        writing = false;
        await writer;
        deltas.close();
        const logTo = process.env.LAINLET_CLUSTER_LOG;
        if (logTo) writeFileSync(`${logTo}.${hubPort}`, `${hub.output()}\n--- agent ---\n${agentProc.output()}\n--- stream ---\n${stream.events.map((e) => `${e.event} ${e.data}`).join('\n')}\n`);
        stream.close();
        client.close();
        await Promise.all(procs.map((p) => p.kill().catch(() => {})));
        await cluster.stop();
      },
    };
    return load;
  } catch (err) {
    writing = false;
    await writer;
    client.close();
    await Promise.all(procs.map((p) => p.kill().catch(() => {})));
    await cluster.stop();
    throw err;
  }
}

let v2Target = 0;

/** The writer's guard (v3): the revision of the last counter write it knows of. */
export interface Guard { counterRev: number }

/**
 * One transaction: the counter, a rotating key, and every fifth time a delete. Returns the
 * commit it learnt of: its own, or an earlier attempt's (v3), with its revisions (v2: indexes).
 *
 * A write that timed out may still commit (a SIGSTOPped member reads it from its socket when it
 * resumes and proposes it then: seen in this file's SIGSTOP test as a stream that went from 212
 * back to 13, etcd's own state doing so). So each v3 transaction is guarded on the counter's
 * revision being the last one the writer knows of: an old attempt that lands late finds the
 * counter moved and changes nothing, and the counter in etcd only ever goes up. A failed guard
 * reads the counter: an earlier attempt of ours committed, and is counted. (v2 has no
 * transactions, and its scenarios kill and partition members, which commit nothing late.)
 */
async function writeOnce(cluster: EtcdCluster, client: Etcd3, v2: boolean, n: number, guard: Guard): Promise<{ value: number; revisions: number[] }> {
  if (v2) {
    // v2 has no transactions: the counter is the last write of the three, as in v3's order. To
    // one member until it fails (a dead or minority member: 2 s), then the next.
    const revisions: number[] = [];
    const write = async (method: 'PUT' | 'DELETE', key: string, value?: string) => {
      const member = cluster.members[v2Target % cluster.members.length];
      try {
        const res = await fetch(`${member.url}/v2/keys${PREFIX}${key}`, {
          method, body: value === undefined ? undefined : new URLSearchParams({ value }), signal: AbortSignal.timeout(2000),
        });
        if (res.status >= 500) throw new Error(`HTTP ${res.status}`);
        const body = JSON.parse(await res.text()) as { node?: { modifiedIndex?: number } };
        if (res.ok && body.node?.modifiedIndex) revisions.push(body.node.modifiedIndex);
      } catch (err) {
        v2Target++;
        throw err;
      }
    };
    if (n % 5 === 0) await write('DELETE', `k${(n + 3) % 17}`);
    await write('PUT', `k${n % 17}`, String(n));
    await write('PUT', 'counter', String(n));
    return { value: n, revisions };
  }
  return guardedWrite(client, n, guard);
}

/** The v3 transaction of writeOnce, guarded (see there). */
export async function guardedWrite(client: Etcd3, n: number, guard: Guard): Promise<{ value: number; revisions: number[] }> {
  const key = (k: string) => Buffer.from(`${PREFIX}${k}`);
  const res = await client.kv.txn({
    compare: [{ key: key('counter'), target: 'Mod', result: 'Equal', mod_revision: String(guard.counterRev) }],
    success: [
      { request_put: { key: key('counter'), value: Buffer.from(String(n)) } },
      { request_put: { key: key(`k${n % 17}`), value: Buffer.from(String(n)) } },
      ...(n % 5 === 0 ? [{ request_delete_range: { key: key(`k${(n + 3) % 17}`) } }] : []),
    ],
    failure: [{ request_range: { key: key('counter') } }],
  });
  if (res.succeeded) {
    guard.counterRev = Number(res.header.revision);
    return { value: n, revisions: [guard.counterRev] };
  }
  const kv = res.responses[0]?.response_range?.kvs[0];
  if (!kv) throw new Error('the counter guard failed and the counter is gone');
  guard.counterRev = Number(kv.mod_revision);
  return { value: Number(kv.value.toString()), revisions: [guard.counterRev] };
}

/** A protocol client straight on the hub (hello at 0): the snapshot's revision and every delta's prev→rev. */
function tapDeltas(port: number): { spans: Array<[number, number]>; firstRev: number; close(): void } {
  const out = { spans: [] as Array<[number, number]>, firstRev: Infinity, close: () => ws.terminate() };
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
  ws.binaryType = 'nodebuffer';
  ws.on('open', () => ws.send(encodeFrame({ t: 'hello', v: PROTOCOL_VERSION, node: 'cluster-tap', rev: 0 })));
  ws.on('message', (data: Buffer) => {
    const frame = decodeFrame(data) as HubFrame;
    if (frame.t === 'snap' && frame.last) out.firstRev = Math.min(out.firstRev, frame.rev);
    if (frame.t === 'delta') out.spans.push([frame.prev, frame.rev]);
  });
  ws.on('error', () => {});
  return out;
}

/** etcd's keys under the prefix as the agent's configwatcher names them, read linearizably from a member that answers. */
async function etcdState(cluster: EtcdCluster, v2: boolean): Promise<Record<string, string>> {
  let out: Record<string, string> = {};
  await waitFor(async () => {
    for (const member of cluster.members) {
      if (!member.proc.running) continue;
      try {
        if (v2) {
          const res = await v2Get(member, '/lain/config/cl', { recursive: true, quorum: true });
          out = sortedState(leaves(res.node));
        } else {
          const c = new Etcd3({ hosts: member.url, defaultCallOptions: () => ({ deadline: Date.now() + 3000 }) });
          try {
            const kvs = await c.getAll().prefix(PREFIX).strings();
            out = sortedState(Object.entries(kvs));
          } finally { c.close(); }
        }
        return true;
      } catch { /* next member */ }
    }
    return false;
  }, { timeoutMs: 20_000, message: 'a member answering a linearizable read' });
  return out;
}

function sortedState(kvs: Array<[string, string]>): Record<string, string> {
  const named: Array<[string, string]> = kvs.map(([k, v]) => [k.slice('/lain/config/'.length), v]);
  return Object.fromEntries(named.sort());
}

function leaves(node: V2Node | undefined): Array<[string, string]> {
  if (!node) return [];
  if (node.dir) return (node.nodes ?? []).flatMap(leaves);
  return node.key ? [[node.key, node.value ?? '']] : [];
}

async function agentState(base: string): Promise<Record<string, string>> {
  const res = await httpGet(`${base}/v2/configwatcher?target=cl/`);
  if (res.status !== 200) throw new Error(`${res.status} ${res.body}`);
  const got = JSON.parse(res.body) as Record<string, string>;
  return Object.fromEntries(Object.entries(got).sort());
}

/** Each value greater than the one before: no stream event out of order or repeated. */
export function increasing(values: number[]): string | undefined {
  for (let j = 1; j < values.length; j++) if (values[j] <= values[j - 1]) return `went from ${values[j - 1]} to ${values[j]}`;
  return undefined;
}

/**
 * The end of every scenario: the agent equals etcd; its stream never went backwards or repeated
 * and ends at the last write; no list of the present found the hub's state wrong at its own
 * revision (lainlet_hub_store_corrections_total 0). Logged, not asserted: committed values the
 * agent's stream coalesced away (it does so with bursts: the soak's contract is a subsequence of
 * the successive values), and revisions the hub delivered inside a delta spanning several — a
 * list of the present that landed ahead of the watch publishes its difference as one delta
 * (hub/sync.ts, by design; it happens without any fault too, under load). That the watch itself
 * skips no revision is pinned below the sync, on Etcd3Store (test/etcd-cluster.test.ts).
 */
export async function checkEnd(t: ExecutionContext, load: ClusterLoad): Promise<void> {
  const { values, missing, last } = await load.finish();
  t.is(await load.hubMetric('lainlet_hub_store_corrections_total'), 0, 'a list had to correct what the watch delivered');
  // A member's fault is never a restore: a stale member's answer is found out (hub/sync.ts suspectReset), not believed.
  t.is(await load.hubMetric('lainlet_hub_store_resets_total'), 0, 'the hub took a member\'s fault for a restore of etcd and reset');
  const stale = await load.hubMetric('lainlet_hub_store_stale_answers_total');
  t.is(increasing(values), undefined, 'the stream went backwards or repeated');
  t.is(values[values.length - 1], last, 'the stream ends at the last write');
  const jumped = load.jumpedOver();
  t.log(`${load.committed} transactions, ${stale} stale answers found out, ${values.length} stream events, ${missing.length} committed values coalesced away by the agent's stream, ${jumped.length} revisions inside a hub delta that spanned more than one (a list of the present ahead of the watch)`);
}

/** Waits until the hub's watch (etcd2: its long poll) runs on a member other than `from`; returns it. */
export async function movedFrom(load: ClusterLoad, from: number, timeoutMs = 30_000): Promise<number> {
  let now = -1;
  // The hub's last lines are read when the wait fails (read when it began, they were only its start).
  await waitFor(async () => { now = await load.hubMember(); return now >= 0 && now !== from; }, { timeoutMs, message: `the hub's watch leaving member ${from}` })
    .catch((err: Error) => { throw new Error(`${err.message} (its watch is on member ${now}); the hub's last lines:\n${load.hub.output().split('\n').slice(-20).join('\n')}`); });
  return now;
}
