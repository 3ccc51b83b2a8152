// A three-member etcd cluster (issue 15), continued from test/etcd-cluster.test.ts: a member
// replaced with an empty data dir while hubs watch, and the linearizable reads a hub lists on.
import test from 'ava';
import { Etcd3 } from 'etcd3';
import { Etcd3Store } from '../hub/store/etcd3.js';
import { startEtcdCluster } from '../testkit/etcd-cluster.js';
import { freePort } from '../testkit/ports.js';
import { startHub, waitFor } from '../testkit/procs.js';
import { hubHealthy } from './helpers/cluster.js';
import { checkEnd, startClusterLoad } from './helpers/cluster-load.js';

test.serial('a member restarted with an empty data dir rejoins by snapshot while hubs watch, one of them on that member alone', async (t) => {
  t.timeout(120_000);
  // etcd keeps 5 000 raft entries after a snapshot: past them, a new member gets a snapshot.
  const load = await startClusterLoad({ snapshotCount: 100 });
  const port = await freePort();
  const victim = 2;
  // A second hub that only knows the member being replaced: it must resume there once it is back.
  const solo = startHub(['--etcd', load.cluster.endpoints[victim], '--listen', `127.0.0.1:${port}`]);
  try {
    await waitFor(() => hubHealthy(port), { timeoutMs: 20_000, message: `solo hub\n${solo.output()}` });
    const c = new Etcd3({ hosts: load.cluster.members.map((m) => m.url) });
    const puts: Array<Promise<unknown>> = [];
    for (let i = 0; i < 5200; i++) {
      puts.push(c.put(`/other/fill${i % 50}`).value(String(i)).exec());
      if (puts.length >= 64) await Promise.all(puts.splice(0));
    }
    await Promise.all(puts);
    c.close();
    await load.written('before the replacement');
    await load.cluster.replaceWithEmpty(victim);
    await load.written('with the replaced member back');
    const received = await load.cluster.members[victim].metrics();
    t.regex(received, /^etcd_network_snapshot_receive_success\{[^}]*\} [1-9]/m, 'the replaced member was sent a snapshot');
    await checkEnd(t, load);
    const soloRevision = async () => Number(/^lainlet_hub_revision (\d+)$/m.exec((await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()))?.[1]);
    const want = await load.hubMetric('lainlet_hub_revision');
    // The solo hub's only endpoint was down for the replacement: its etcd client reconnects with
    // backoff (grpc-js' channel backoff grows past 10 s; the client's circuit breaker holds calls
    // meanwhile), so the resume may come well after the member is back. CI saw it take > 20 s.
    await waitFor(async () => (await soloRevision()) >= want, { timeoutMs: 60_000, message: `the solo hub resuming on the rejoined member\n${solo.output()}` });
    const soloCorrections = Number(/^lainlet_hub_store_corrections_total (\d+)$/m.exec((await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()))?.[1]);
    t.is(soloCorrections, 0);
  } finally {
    await solo.kill();
    await load.stop();
  }
});

test.serial('the reads a list is based on are linearizable: a minority member refuses them, where a serializable read would answer from its stale copy', async (t) => {
  t.timeout(120_000);
  const cluster = await startEtcdCluster({ dataOnTmpfs: true });
  const writer = new Etcd3({ hosts: cluster.members.map((m) => m.url), defaultCallOptions: () => ({ deadline: Date.now() + 3000 }) });
  const minority = 0;
  // Without `hasleader` (which makes a leaderless member refuse every call, serializable or
  // not, see the partition test): the linearizable reads alone keep the stale copy out.
  const store = new Etcd3Store({ endpoints: [cluster.endpoints[minority]], dialTimeoutMs: 1000, requireLeader: false });
  try {
    await writer.put('/lain/config/p/k').value('old');
    await cluster.waitConverged();
    cluster.isolate(minority);
    await cluster.leader({ exclude: minority });
    let newRevision = 0;
    await waitFor(async () => { newRevision = Number((await writer.put('/lain/config/p/k').value('new').exec()).header.revision); return true; }, { timeoutMs: 15_000, message: 'a write on the majority' });
    // What a serializable read on that member says: the old value (why the hub must not use one).
    const direct = new Etcd3({ hosts: cluster.members[minority].url });
    t.is(await direct.get('/lain/config/p/k').serializable(true).string(), 'old');
    direct.close();
    // The hub's reads: they fail rather than answer old data.
    // (Refused, or no answer at all within 8 s: either way not the old copy.)
    await Promise.all([
      t.throwsAsync(() => withDeadline(store.list('/lain/config/'), 8000)),
      t.throwsAsync(() => withDeadline(store.currentRevision(), 8000)),
    ]);
    cluster.heal();
    await waitFor(async () => (await store.list('/lain/config/').catch(() => ({ revision: 0, kvs: [] }))).revision >= newRevision, { timeoutMs: 60_000, message: 'the healed member answering' });
    t.deepEqual((await store.list('/lain/config/')).kvs, [['/lain/config/p/k', 'new']]);
  } finally {
    writer.close();
    await store.close();
    await cluster.stop();
  }
});

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms: neither refused nor answered`)), ms))]);
}
