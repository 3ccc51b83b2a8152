// The gRPC mirror's Watch streams inside one agent (the hub in-process on the memory store, as
// test/http.test.ts): they share the HTTP event streams' groups — one render per change for
// every HTTP and gRPC watcher of a scope — and a client that stops reading is reset, not
// buffered without bound, while the other streams go on. The gRPC metrics count both.
import test from 'ava';
import http2 from 'node:http2';
import { startAgent, type Agent } from '../agent/agent.js';
import { startHub, type Hub } from '../hub/hub.js';
import { MemoryStore } from '../hub/store/memory.js';
import { silentLogger } from '../shared/log.js';
import { fixtureKvs } from './helpers/cluster.js';
import { httpGet, openStream } from '../testkit/http.js';
import { waitFor } from '../testkit/procs.js';
import { LainletClient } from './grpc/client.js';

let store: MemoryStore;
let hub: Hub;

async function agentWith(maxStreamBufferBytes?: number): Promise<Agent> {
  const agent = await startAgent({
    host: '127.0.0.1', port: 0, nodeIp: '127.0.0.1', hostname: 'node1', noauth: false, hubs: [`ws://127.0.0.1:${hub.port}`],
    grpc: { host: '127.0.0.1', port: 0 }, ...(maxStreamBufferBytes ? { maxStreamBufferBytes } : {}),
  }, silentLogger);
  await waitFor(() => agent.cache.hasState, { timeoutMs: 5000, message: 'agent sync' });
  return agent;
}

/** Writes through the hub and waits until the agent has the change: the agent's revision moved. */
async function put(agent: Agent, key: string, value: string): Promise<void> {
  const before = agent.cache.revision;
  store.put(key, value);
  await waitFor(() => agent.cache.revision > before, { timeoutMs: 5000, message: `agent applies ${key}` });
}

test.before(async () => {
  store = new MemoryStore(fixtureKvs('cluster-small'));
  hub = await startHub({ store, prefix: '/lain/', host: '127.0.0.1', port: 0, historyMaxCount: 100, historyMaxBytes: 1 << 24, maxBackpressure: 1 << 26, progressIntervalMs: 500 }, silentLogger);
  await hub.ready;
});

test.after.always(async () => {
  await hub?.stop();
});

test.serial('HTTP and gRPC watchers of one scope are one group: one render per change, every watcher told', async (t) => {
  const agent = await agentWith();
  const base = `http://127.0.0.1:${agent.port}`;
  const client = new LainletClient(`127.0.0.1:${agent.grpcPort}`);
  try {
    const httpStreams = await Promise.all(Array.from({ length: 5 }, () => openStream(`${base}/v2/coreinfowatcher?appname=hello&watch=1`)));
    const grpcStreams = Array.from({ length: 5 }, () => client.watch('/message.Coreinfo/Watch', { Appname: 'hello' }));
    for (const s of httpStreams) await s.waitForEvents(1, 5000);
    for (const w of grpcStreams) await w.replyCount(1);
    const debug = async () => JSON.parse((await httpGet(`${base}/debug`)).body) as { answers: { renders: number }; streams: { groups: number; open: number } };
    const before = await debug();
    t.is(before.streams.groups, 1, 'one group for the ten watchers');
    t.is(agent.grpc?.stats.open, 5);
    const cron = fixtureKvs('cluster-small')['/lain/deployd/pod_groups/hello/hello.worker.cron'];
    await put(agent, '/lain/deployd/pod_groups/hello/hello.worker.cron', cron.replace('"MemoryLimit":67108864', '"MemoryLimit":67108865'));
    for (const s of httpStreams) await s.waitFor((e) => e.event === 'update', 5000);
    for (const w of grpcStreams) await w.replyCount(2);
    const after = await debug();
    t.is(after.answers.renders - before.answers.renders, 1, 'rendered once for HTTP and gRPC');
    for (const w of grpcStreams) {
      const pods = (w.replies[1].Data as Record<string, { PodInfos: Array<{ Containers: Array<{ Memory: string }> }> }>)['hello.worker.cron'].PodInfos;
      t.is(pods[0].Containers[0].Memory, '67108865');
    }
    for (const s of httpStreams) s.close();
    for (const w of grpcStreams) w.cancel();
    await Promise.all(grpcStreams.map((w) => w.ended()));
    await waitFor(() => agent.grpc?.stats.open === 0, { timeoutMs: 5000, message: 'gRPC streams closed' });
    await waitFor(async () => (await debug()).streams.groups === 0, { timeoutMs: 5000, message: 'the group goes with its last watcher' });
    t.pass();
    await put(agent, '/lain/deployd/pod_groups/hello/hello.worker.cron', cron);
  } finally {
    client.close();
    await agent.stop();
  }
});

test.serial('a gRPC stream whose client stops reading is reset (RESOURCE_EXHAUSTED), the others go on; metrics count it', async (t) => {
  const agent = await agentWith(256 * 1024);
  const client = new LainletClient(`127.0.0.1:${agent.grpcPort}`);
  const session = http2.connect(`http://127.0.0.1:${agent.grpcPort}`);
  try {
    const healthy = client.watch('/message.Config/Watch', { Target: 'slow/' });
    await healthy.replyCount(1);
    // A Watch for "slow/" that is never read: ConfigRequest{Target: "slow/"} in a gRPC frame.
    const request = Buffer.from([0x00, 0x00, 0x00, 0x00, 0x07, 0x0a, 0x05, ...Buffer.from('slow/')]);
    const stalled = session.request({ ':method': 'POST', ':path': '/message.Config/Watch', 'content-type': 'application/grpc', te: 'trailers' });
    stalled.on('error', () => {}); // the reset, which the test reads from rstCode
    stalled.end(request);
    const closed = new Promise<number>((resolve) => stalled.once('close', () => resolve(stalled.rstCode ?? -1)));
    stalled.once('response', () => stalled.pause());
    await waitFor(() => agent.grpc?.stats.open === 2, { timeoutMs: 5000, message: 'both streams open' });
    const big = 'y'.repeat(128 * 1024);
    for (let i = 0; i < 60 && agent.grpc!.stats.closedSlow === 0; i++) {
      await put(agent, `/lain/config/slow/k${i % 3}`, big + i);
      await healthy.replyCount(i + 2);
    }
    t.is(agent.grpc!.stats.closedSlow, 1, 'reset for not reading');
    t.is(await closed, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    t.is(agent.grpc!.stats.open, 1, 'the reading stream is still open');
    const n = healthy.replies.length;
    await put(agent, '/lain/config/slow/k0', 'small');
    await healthy.replyCount(n + 1);
    t.deepEqual(Object.keys(healthy.replies[n].Data as object).sort(), ['slow/k0', 'slow/k1', 'slow/k2']);
    const metrics = (await httpGet(`http://127.0.0.1:${agent.port}/metrics`)).body;
    t.regex(metrics, /^lainlet_agent_grpc_streams_closed_slow_total 1$/m);
    t.regex(metrics, /^lainlet_agent_grpc_streams_open 1$/m);
    t.regex(metrics, /^lainlet_agent_grpc_calls_total\{method="\/message\.Config\/Watch",code="RESOURCE_EXHAUSTED"\} 1$/m);
    t.regex(metrics, /^lainlet_agent_grpc_stream_replies_total \d+$/m);
    healthy.cancel();
    await healthy.ended();
  } finally {
    session.destroy();
    client.close();
    for (const k of ['k0', 'k1', 'k2']) store.delete(`/lain/config/slow/${k}`);
    await agent.stop();
  }
});
