// The v2 backend (--store etcd2) on a three-member etcd cluster (issue 15): the long poll goes
// on from the same index on another member after its member dies (the v2 index is
// cluster-wide), and a member partitioned into the minority is neither listed from (quorum=true
// reads) nor left to hold the long poll (a failed quorum read moves the poll too).
import test from 'ava';
import { Etcd2Store } from '../hub/store/etcd2.js';
import { startEtcdCluster } from '../testkit/etcd-cluster.js';
import { v2Get, v2Put } from '../testkit/etcd.js';
import { waitFor } from '../testkit/procs.js';
import { checkEnd, movedFrom, startClusterLoad } from './helpers/cluster-load.js';


test.serial('v2: SIGKILL of the member the hub long-polls, then a minority partition of the next one: the poll goes on elsewhere from its index, nothing lost', async (t) => {
  t.timeout(120_000);
  const load = await startClusterLoad({ v2: true });
  try {
    await load.written('before the faults');
    const first = await load.hubMember();
    t.true(first >= 0, 'the hub names its endpoint in /metrics');
    await load.cluster.kill(first);
    const second = await movedFrom(load, first);
    await load.written(`with member ${first} dead`);
    await load.cluster.restart(first);
    await load.written(`with member ${first} back`);
    load.cluster.isolate(second);
    await movedFrom(load, second);
    await load.written(`with member ${second} in the minority`);
    load.cluster.heal();
    t.true(await load.hubMetric('lainlet_hub_store_watch_member_moves_total') >= 2);
    t.regex(load.hub.output(), /"reason":"a read on http:\/\/127\.0\.0\.1:\d+ failed: [^"]+","from":""/);
    await checkEnd(t, load);
  } finally {
    await load.stop();
  }
});

test.serial('v2: lists and revision reads are quorum reads: a minority member refuses them, where a plain GET answers from its stale copy', async (t) => {
  t.timeout(60_000);
  const cluster = await startEtcdCluster({ v2: true, dataOnTmpfs: true });
  const minority = 1;
  const store = new Etcd2Store({ endpoints: [cluster.members[minority].url], requestTimeoutMs: 3000 });
  try {
    await v2Put(cluster.members[0], '/lain/config/p/k', 'old');
    await cluster.waitConverged();
    await waitFor(async () => (await v2Get(cluster.members[minority], '/lain/config/p/k')).node.value === 'old', { message: 'the member has the old value' });
    cluster.isolate(minority);
    await cluster.leader({ exclude: minority });
    await waitFor(async () => { await v2Put(cluster.members[0], '/lain/config/p/k', 'new'); return true; }, { timeoutMs: 15_000, message: 'a write on the majority' });
    t.is((await v2Get(cluster.members[minority], '/lain/config/p/k')).node.value, 'old', 'a plain GET on the minority member is stale');
    await t.throwsAsync(() => store.list('/lain/config/'));
    await t.throwsAsync(() => store.currentRevision());
    cluster.heal();
    await waitFor(async () => JSON.stringify((await store.list('/lain/config/')).kvs) === JSON.stringify([['/lain/config/p/k', 'new']]), { timeoutMs: 20_000, message: 'the healed member listing the new value' });
  } finally {
    await store.close();
    await cluster.stop();
  }
});
