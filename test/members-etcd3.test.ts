// The hub registry on etcd v3 (Etcd3Members, hub/members.ts) against a real etcd: its record is
// a key under a lease, read back by one range; and the registry's client is as hardy as the
// store's — every call has a deadline (a round must not wait for ever on a member that stopped
// answering: every later round waits behind it, and the hub drops out of the tier), and its
// channel reconnects on the store's schedule, not grpc-js's (up to 120 s apart after an outage).
import test from 'ava';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';
import { Etcd3Members } from '../hub/members.js';
import { ETCD3_REVISION_DEADLINE_MS, etcd3GrpcOptions } from '../hub/store/etcd3.js';
import { startEtcd } from '../testkit/etcd.js';

test.serial('a record is put under a lease, listed, and removed with its lease', async (t) => {
  const etcd = await startEtcd();
  const members = new Etcd3Members([etcd.endpoint]);
  try {
    await members.put('/lainlet/hubs/a', '{"id":"a"}', 5);
    const listed = await members.list('/lainlet/hubs/');
    t.deepEqual(listed.kvs, [['/lainlet/hubs/a', '{"id":"a"}']]);
    t.true(listed.revision > 0);
    const lease = (await etcd.client.get('/lainlet/hubs/a').exec()).kvs[0].lease;
    t.not(String(lease), '0', 'the record is under a lease');
    await members.remove('/lainlet/hubs/a');
    t.deepEqual((await members.list('/lainlet/hubs/')).kvs, []);
  } finally {
    await members.close();
    await etcd.stop();
  }
});

test.serial('a registry call to an etcd that stopped answering (SIGSTOP) fails by its deadline instead of waiting for it', async (t) => {
  t.timeout(60_000);
  const etcd = await startEtcd();
  const members = new Etcd3Members([etcd.endpoint]);
  try {
    await members.put('/lainlet/hubs/a', '{"id":"a"}', 5); // connected, lease granted
    etcd.pause(true);
    // Without a deadline both wait until SIGCONT; the bound here only keeps a failing run short.
    const outcome = (p: Promise<unknown>) => Promise.race([
      p.then(() => 'answered', (err: Error) => `failed: ${err.message}`),
      new Promise<string>((resolve) => { setTimeout(() => resolve('still waiting'), ETCD3_REVISION_DEADLINE_MS * 4).unref(); }),
    ]);
    const [list, put] = await Promise.all([outcome(members.list('/lainlet/hubs/')), outcome(members.put('/lainlet/hubs/a', '{"id":"a","n":2}', 5))]);
    // By the call's deadline, or by the keepalive pings dropping the connection: either way not a wait.
    t.regex(list, /^failed: /);
    t.regex(put, /^failed: /);
  } finally {
    etcd.pause(false);
    await members.close();
    await etcd.stop();
  }
});

test('a registry call to an etcd that takes requests but never answers them (pings it does answer) fails by its deadline', async (t) => {
  t.timeout(60_000);
  // A gRPC server that answers the connection and its keepalive pings but no call: the case
  // the pings cannot catch (a wedged member's apply loop), only the calls' deadlines.
  const silent = (path: string) => ({ path, requestStream: false, responseStream: false, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b });
  const server = new Server();
  server.addService({ Range: silent('/etcdserverpb.KV/Range'), Put: silent('/etcdserverpb.KV/Put') }, { Range: () => {}, Put: () => {} });
  server.addService({ LeaseGrant: silent('/etcdserverpb.Lease/LeaseGrant') }, { LeaseGrant: () => {} });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const members = new Etcd3Members([`127.0.0.1:${port}`]);
  try {
    const outcome = (p: Promise<unknown>) => Promise.race([
      p.then(() => 'answered', (err: Error) => `failed: ${err.message}`),
      new Promise<string>((resolve) => { setTimeout(() => resolve('still waiting'), ETCD3_REVISION_DEADLINE_MS * 4).unref(); }),
    ]);
    const [list, put] = await Promise.all([outcome(members.list('/lainlet/hubs/')), outcome(members.put('/lainlet/hubs/a', '{"id":"a"}', 5))]);
    t.regex(list, /^failed: .*DEADLINE_EXCEEDED/);
    t.regex(put, /^failed: .*DEADLINE_EXCEEDED/);
  } finally {
    await members.close();
    server.forceShutdown();
  }
});

test('the registry\'s channel has the store\'s options: reconnect backoff capped, keepalive pings', (t) => {
  const members = new Etcd3Members(['127.0.0.1:1']);
  try {
    const client = (members as unknown as { client: Etcd3 & { options: { grpcOptions?: Record<string, number> } } }).client;
    t.deepEqual(client.options.grpcOptions, etcd3GrpcOptions());
  } finally {
    void members.close();
  }
});
