// The gRPC mirror as a client sees it (GRPC.md §2–§4): a client built only from lainlet.proto
// with @grpc/grpc-js, against agents spawned from dist/ (the .proto read from dist/agent/grpc/)
// with a hub on a real etcd — one agent plaintext, one TLS with a throwaway self-signed cert.
// Every service's Get and Watch over both; auth from a container address; errors before the
// first sync and for bad requests; the start-up refusals of the -grpc.* flags.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { fixtureKvs, startCluster, type Cluster } from './helpers/cluster.js';
import { run } from './helpers/cli.js';
import { etcdClient } from '../testkit/etcd.js';
import { freePort, freePorts } from '../testkit/ports.js';
import { httpGet } from '../testkit/http.js';
import { startAgent, waitFor, type Proc } from '../testkit/procs.js';
import { agentAt } from './helpers/wait.js';
import { LainletClient, canon, relayFrom, type Msg } from './grpc/client.js';

const { status } = grpc;
const CERT_NAME = 'lainlet.test';
/** A pod group whose container has a loopback address: a "container" the tests can call from. */
const PROBE_IP = '127.0.0.5';
const PROBE_KEY = '/lain/deployd/pod_groups/probe/probe.worker.cron';

let cluster: Cluster;
let dir: string;
let cert: Buffer;
let plain: LainletClient;
let tls: LainletClient;
let plainPort: number;
let tlsPort: number;
let keyFile: string;
let certFile: string;

function probeValue(kvs: Record<string, string>): string {
  return kvs['/lain/deployd/pod_groups/hello/hello.worker.cron']
    .replaceAll('hello.worker.cron', 'probe.worker.cron').replaceAll('"Namespace":"hello"', '"Namespace":"probe"')
    .replaceAll('LAIN_APPNAME=hello', 'LAIN_APPNAME=probe').replaceAll('172.20.0.14', PROBE_IP);
}

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lainlet-grpc-'));
  keyFile = join(dir, 'key.pem');
  certFile = join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1',
    '-subj', `/CN=${CERT_NAME}`, '-addext', `subjectAltName=DNS:${CERT_NAME}`], { stdio: 'ignore' });
  cert = readFileSync(certFile);
  [plainPort, tlsPort] = await freePorts(2);
  const kvs = fixtureKvs('cluster-small');
  cluster = await startCluster({
    hubs: 1, agents: 2, kvs: { ...kvs, [PROBE_KEY]: probeValue(kvs) },
    agentArgs: (i) => ['-ip', '127.0.0.1', '-hostname', 'node1',
      ...(i === 0 ? ['-grpc.addr', `127.0.0.1:${plainPort}`] : [`-grpc.addr=127.0.0.1:${tlsPort}`, '-grpc.TLS', '-grpc.key', keyFile, '-grpc.cert', certFile])],
  });
  plain = new LainletClient(`127.0.0.1:${plainPort}`);
  tls = new LainletClient(`127.0.0.1:${tlsPort}`, { cert, serverName: CERT_NAME });
});

test.after.always(async () => {
  plain?.close();
  tls?.close();
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** One request per data service that has something to say on the fixture, from the node. */
const EVERY_SERVICE: Array<[string, Msg]> = [
  ['Appname', { ip: '172.20.0.11' }], ['Apps', {}], ['Backupctl', { Appname: 'hello' }], ['Config', { Target: 'auth/console' }],
  ['Containers', { Nodename: 'node1' }], ['Coreinfo', { Appname: 'hello' }], ['Depends', {}], ['Localspec', { Nodeip: 'node1' }],
  ['Nodes', { Name: 'node1' }], ['Podgroup', { Appname: 'hello' }], ['Proxy', {}], ['RebellionLocalprocs', {}],
  ['StreamrouterPorts', { Appname: 'tcp-echo' }], ['StreamrouterStreamprocs', { Appname: 'tcp-echo' }], ['WebrouterWebprocs', {}],
];
const NO_WATCH = new Set(['Appname', 'Localspec']);

for (const transport of ['plaintext', 'TLS'] as const) {
  test.serial(`every service answers Get, and Watch sends the same value first (${transport})`, async (t) => {
    const client = transport === 'TLS' ? tls : plain;
    for (const [service, request] of EVERY_SERVICE) {
      const got = await client.call(`/message.${service}/Get`, request);
      if (!('reply' in got)) { t.fail(`${service} Get: ${JSON.stringify(got.error)}`); continue; }
      t.true(Array.isArray(got.reply.Data) ? got.reply.Data.length > 0 : Object.keys(got.reply.Data as object).length > 0, `${service} Get has data`);
      if (NO_WATCH.has(service)) continue;
      const w = client.watch(`/message.${service}/Watch`, request);
      await w.replyCount(1);
      t.deepEqual(canon(w.replies[0], ['Data']), canon(got.reply, ['Data']), `${service} Watch first reply = Get`);
      w.cancel();
      t.is((await w.ended()).code, status.CANCELLED);
    }
    const version = await client.call('/message.Lainlet/Version', {});
    t.true('reply' in version && typeof version.reply.Version === 'string' && version.reply.Version !== '');
    const st = await client.call('/message.Lainlet/Status', {});
    t.true('reply' in st && Object.keys(st.reply.Status as object).length === 5);
  });

  test.serial(`entry's calls: Config auth/console and Coreinfo for an app (${transport})`, async (t) => {
    const client = transport === 'TLS' ? tls : plain;
    const config = await client.call('/message.Config/Get', { Target: 'auth/console' });
    t.deepEqual(config, { reply: { Data: { 'auth/console': '{"type": "lain-sso", "url": "https://sso.lain.local"}' } } });
    const core = await client.call('/message.Coreinfo/Get', { Appname: 'hello' });
    if (!('reply' in core)) return t.fail(JSON.stringify(core.error));
    // What entry reads: Data by proc name, the pod by InstanceNo, Containers[0].Id and NodeIp.
    const web = (core.reply.Data as Record<string, { PodInfos: Array<{ InstanceNo: number; Containers: Array<{ Id: string; NodeIp: string }> }> }>)['hello.web.web'];
    const pod = web.PodInfos.find((p) => p.InstanceNo === 1)!;
    t.is(pod.Containers[0].Id, '1f1ae8881a56201d7c206c6492b15f849542fa01d20a631c3d9225acd48e60e7');
    t.is(pod.Containers[0].NodeIp, '192.168.77.21');
  });
}

test.serial('a Watch sends again on every change in its scope, over TLS, and a change elsewhere sends nothing', async (t) => {
  const w = tls.watch('/message.Config/Watch', { Target: 'grpc-test' });
  const other = tls.watch('/message.Config/Watch', { Target: 'grpc-other' });
  await w.replyCount(1);
  await other.replyCount(1);
  t.deepEqual(canon(w.replies[0]), {});
  const etcd = etcdClient(cluster.etcd);
  try {
    await etcd.put('/lain/config/grpc-test/a').value('1');
    await w.replyCount(2);
    t.deepEqual(w.replies[1], { Data: { 'grpc-test/a': '1' } });
    await etcd.delete().key('/lain/config/grpc-test/a');
    await w.replyCount(3);
    t.deepEqual(canon(w.replies[2]), {}, 'a deletion: the snapshot without it');
    // The other stream's own change comes after both: had it been sent the first two, they would be here first.
    await etcd.put('/lain/config/grpc-other/b').value('2');
    await other.replyCount(2);
    t.deepEqual(other.replies.map((r) => canon(r)), [{}, { Data: { 'grpc-other/b': '2' } }]);
    await etcd.delete().key('/lain/config/grpc-other/b');
  } finally {
    etcd.close();
    w.cancel();
    other.cancel();
  }
});

test.serial('a pod without containers (which crashed the original) is a Pod with only its InstanceNo (instance 2 here)', async (t) => {
  const key = '/lain/deployd/pod_groups/pending/pending.web.web';
  const etcd = etcdClient(cluster.etcd);
  try {
    await etcd.put(key).value(fixtureKvs('edge-cases')[key]);
    await waitFor(async () => { const r = await plain.call('/message.Apps/Get', {}); return 'reply' in r && 'pending' in (r.reply.Data as object); }, { message: 'the agent has the pending pod group' });
    t.deepEqual(await plain.call('/message.Podgroup/Get', { Appname: 'pending' }), { reply: { Data: [{ Pods: [{ InstanceNo: 1, IP: '172.20.1.1', Port: 8080, ProcName: 'web' }, { InstanceNo: 2 }] }] } });
  } finally {
    await etcd.delete().key(key);
    etcd.close();
  }
});

test.serial('two streams on the same key both get every change (the original gave most changes to one of them)', async (t) => {
  const a = plain.watch('/message.Config/Watch', { Target: 'grpc-shared' });
  const b = plain.watch('/message.Config/Watch', { Target: 'grpc-shared' });
  await a.replyCount(1);
  await b.replyCount(1);
  const etcd = etcdClient(cluster.etcd);
  try {
    for (const v of ['1', '2', '3']) {
      const put = await etcd.put('/lain/config/grpc-shared').value(v).exec();
      await agentAt(cluster.agents[0].base, put.header.revision);
      // A Get on the same key in between must not swallow the streams' next update either.
      t.deepEqual(await plain.call('/message.Config/Get', { Target: 'grpc-shared' }), { reply: { Data: { 'grpc-shared': v } } });
    }
    await a.replyCount(4);
    await b.replyCount(4);
    const want = [{}, ...['1', '2', '3'].map((v) => ({ Data: { 'grpc-shared': v } }))];
    t.deepEqual(a.replies.map((r) => canon(r)), want.map((r) => canon(r)));
    t.deepEqual(b.replies.map((r) => canon(r)), want.map((r) => canon(r)));
  } finally {
    a.cancel();
    b.cancel();
    await etcd.delete().key('/lain/config/grpc-shared');
    etcd.close();
  }
});

test.serial('64 concurrent Gets with distinct keys all answer (they crashed the original)', async (t) => {
  const apps = Array.from({ length: 64 }, (_, i) => (i % 8 === 0 ? 'hello' : `nosuch-${i}`));
  const results = await Promise.all(apps.map((Appname) => plain.call('/message.Coreinfo/Get', { Appname })));
  results.forEach((r, i) => t.true('reply' in r && (apps[i] === 'hello') === (Object.keys(r.reply.Data ?? {}).length > 0), `${apps[i]}: ${JSON.stringify(r).slice(0, 200)}`));
});

test.serial('a plaintext client cannot use the TLS port, nor a TLS client the plaintext one', async (t) => {
  const wrongPlain = new LainletClient(`127.0.0.1:${tlsPort}`);
  const wrongTls = new LainletClient(`127.0.0.1:${plainPort}`, { cert, serverName: CERT_NAME });
  try {
    for (const c of [wrongPlain, wrongTls]) {
      const r = await c.call('/message.Config/Get', { Target: 'domain' }, 5000);
      t.true('error' in r && (r.error.code === status.UNAVAILABLE || r.error.code === status.DEADLINE_EXCEEDED), JSON.stringify(r));
    }
  } finally {
    wrongPlain.close();
    wrongTls.close();
  }
});

test.serial('auth is the peer address of the connection: a container reads its own app, not secrets or others', async (t) => {
  const relay = await relayFrom(PROBE_IP, '127.0.0.1', tlsPort);
  const probe = new LainletClient(relay.address, { cert, serverName: CERT_NAME });
  try {
    t.deepEqual(await probe.call('/message.Config/Get', { Target: 'domain' }), { reply: { Data: { domain: 'lain.local' } } });
    t.deepEqual(await probe.call('/message.Config/Get', { Target: 'vips' }), { error: { code: status.PERMISSION_DENIED, message: 'authorize failed, super required' } });
    t.deepEqual(await probe.call('/message.Coreinfo/Get', { Appname: 'hello' }), { error: { code: status.PERMISSION_DENIED, message: 'authorize failed, no permission' } });
    t.deepEqual(await probe.call('/message.Podgroup/Get', { Appname: '*' }), { error: { code: status.PERMISSION_DENIED, message: 'authorize failed, no permission' } });
    t.deepEqual(await probe.call('/message.Appname/Get', {}), { error: { code: status.PERMISSION_DENIED, message: 'authorize failed, super required' } });
    // No app asked: the caller's own app (the fallback), found from its address.
    const own = await probe.call('/message.Coreinfo/Get', {});
    t.deepEqual('reply' in own ? Object.keys(own.reply.Data as object) : own, ['probe.worker.cron']);
    const pods = await probe.call('/message.Podgroup/Get', { Appname: 'probe' });
    t.deepEqual(pods, { reply: { Data: [{ Pods: [{ InstanceNo: 1, IP: PROBE_IP, ProcName: 'cron' }] }] } });
    // A refused Watch ends with the status and sends nothing.
    const w = probe.watch('/message.Config/Watch', {});
    t.deepEqual(await w.ended(), { code: status.PERMISSION_DENIED, message: 'authorize failed, super required' });
    t.is(w.replies.length, 0);
    const fallback = probe.watch('/message.Proxy/Watch', {});
    await fallback.replyCount(1);
    t.deepEqual(Object.keys(fallback.replies[0].Data as object), ['probe.worker.cron']);
    fallback.cancel();
  } finally {
    probe.close();
    relay.close();
  }
});

test.serial('bad requests: INVALID_ARGUMENT with a clear message, and the server answers on', async (t) => {
  t.deepEqual(await plain.call('/message.Podgroup/Get', {}), { error: { code: status.INVALID_ARGUMENT, message: 'appname reequired' } });
  const w = plain.watch('/message.Podgroup/Watch', {});
  t.deepEqual(await w.ended(), { code: status.INVALID_ARGUMENT, message: 'appname reequired' });
  t.is(w.replies.length, 0);
  // Bytes that are no ConfigRequest (a tag whose varint never ends).
  const garbage = await rawCall(plainPort, '/message.Config/Get', Buffer.from([0xff]));
  t.is(garbage.code, status.INVALID_ARGUMENT);
  t.regex(garbage.details, /^cannot decode the request as message\.ConfigRequest: /);
  const rawWatch = await rawCall(plainPort, '/message.Coreinfo/Watch', Buffer.from([0xff]), true);
  t.is(rawWatch.code, status.INVALID_ARGUMENT);
  t.deepEqual(await plain.call('/message.Config/Get', { Target: 'domain' }), { reply: { Data: { domain: 'lain.local' } } });
});

test.serial('unknown methods and services: UNIMPLEMENTED (Localspec and Appname have no Watch)', async (t) => {
  for (const rpc of ['/message.Localspec/Watch', '/message.Appname/Watch', '/message.Lainlet/Get', '/message.Nosuch/Get']) {
    const r = await plain.call(rpc, {});
    t.true('error' in r && r.error.code === status.UNIMPLEMENTED, `${rpc}: ${JSON.stringify(r)}`);
  }
});

test.serial('before the first sync: UNAVAILABLE with the HTTP 503 reason; Version still answers', async (t) => {
  const [web, grpcPort, nohub] = await freePorts(3);
  const agent: Proc = startAgent(['-web', `127.0.0.1:${web}`, '-grpc.addr', `127.0.0.1:${grpcPort}`, '-hub', `ws://127.0.0.1:${nohub}`, '-ip', '127.0.0.1']);
  const client = new LainletClient(`127.0.0.1:${grpcPort}`);
  try {
    await agent.waitForLine(/agent listening/);
    const http503 = await httpGet(`http://127.0.0.1:${web}/v2/configwatcher?target=domain`);
    t.is(http503.status, 503);
    t.deepEqual(await client.call('/message.Config/Get', { Target: 'domain' }), { error: { code: status.UNAVAILABLE, message: http503.body } });
    const w = client.watch('/message.Coreinfo/Watch', { Appname: 'hello' });
    t.deepEqual(await w.ended(), { code: status.UNAVAILABLE, message: http503.body });
    t.is(w.replies.length, 0);
    t.true('reply' in (await client.call('/message.Lainlet/Version', {})));
  } finally {
    client.close();
    await agent.kill();
  }
});

test('-grpc.TLS without -grpc.key or -grpc.cert refuses to start, as the original', async (t) => {
  const port = await freePort();
  for (const files of [[], ['-grpc.cert', certFile], ['-grpc.key', keyFile]]) {
    const r = await run('agent', ['-hub', 'ws://127.0.0.1:1', '-web', '127.0.0.1:0', '-grpc.addr', `127.0.0.1:${port}`, '-grpc.TLS', ...files]);
    t.false(r.started);
    t.not(r.code, 0);
    t.regex(r.stderr, /keyfile or certfile can't be empty when TLS is enabled\./);
  }
});

test('-grpc.TLS with an unreadable certificate, or an address it cannot bind: a clear error, exit non-zero', async (t) => {
  const port = await freePort();
  const missing = await run('agent', ['-hub', 'ws://127.0.0.1:1', '-web', '127.0.0.1:0', '-grpc.addr', `127.0.0.1:${port}`, '-grpc.TLS', '-grpc.key', keyFile, '-grpc.cert', '/nonexistent.crt']);
  t.false(missing.started);
  t.not(missing.code, 0);
  t.regex(missing.stderr, /-grpc\.cert: .*\/nonexistent\.crt/);
  const bad = await run('agent', ['-hub', 'ws://127.0.0.1:1', '-web', '127.0.0.1:0', '-grpc.addr', 'nohost']);
  t.not(bad.code, 0);
  t.regex(bad.stderr, /invalid listen address "nohost"/);
  // The plaintext agent's port is taken.
  const taken = await run('agent', ['-hub', 'ws://127.0.0.1:1', '-web', '127.0.0.1:0', '-grpc.addr', `127.0.0.1:${plainPort}`]);
  t.false(taken.started);
  t.not(taken.code, 0);
  t.regex(taken.stderr, /gRPC server: cannot listen on -grpc\.addr/);
});

/** A call with hand-made request bytes (what no generated client would send). */
function rawCall(port: number, path: string, bytes: Buffer, stream = false): Promise<{ code: grpc.status; details: string }> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    const done = (code: grpc.status, details: string) => { client.close(); resolve({ code, details }); };
    const identity = (b: Buffer) => b;
    if (stream) {
      const call = client.makeServerStreamRequest(path, identity, identity, bytes);
      call.on('data', () => {});
      call.on('error', (e: grpc.ServiceError) => done(e.code, e.details));
    } else {
      client.makeUnaryRequest(path, identity, identity, bytes, (e: grpc.ServiceError | null) => done(e ? e.code : status.OK, e ? e.details : 'OK'));
    }
  });
}
