// Hubs on a three-member etcd cluster (v3 API, all three endpoints) under continuous writes,
// one member broken at a time (issue 15): SIGKILL of the member the watch runs on, leader moves,
// a member replaced with an empty data dir (it rejoins by snapshot), and a member partitioned
// into the minority. After each: the agent equals etcd, its stream saw every committed counter
// value in order, the hub's watch never skipped a revision (no list ever had to correct it:
// lainlet_hub_store_corrections_total stays 0), and the hub's log and /metrics say which member
// it moved to and why.
import test from 'ava';
import { Etcd3 } from 'etcd3';
import { Etcd3Store } from '../hub/store/etcd3.js';
import type { RevisionChange, StoreSource } from '../hub/store/types.js';
import { startEtcdCluster } from '../testkit/etcd-cluster.js';
import { waitFor } from '../testkit/procs.js';
import { checkEnd, movedFrom, startClusterLoad } from './helpers/cluster-load.js';


test.serial('SIGKILL of the member the hub watches, twice: the watch resumes on another member from its own cursor, nothing skipped, and the hub says where and why', async (t) => {
  t.timeout(90_000);
  const load = await startClusterLoad();
  try {
    await load.written('before the faults');
    for (let round = 0; round < 2; round++) {
      const victim = await load.hubMember();
      t.true(victim >= 0, 'the hub names its member in /metrics');
      const moves = await load.hubMetric('lainlet_hub_store_watch_member_moves_total');
      await load.cluster.kill(victim);
      const now = await movedFrom(load, victim);
      t.true(await load.hubMetric('lainlet_hub_store_watch_member_moves_total') > moves);
      await load.written(`with member ${victim} dead, the hub on member ${now}`);
      await load.cluster.restart(victim);
      await load.written(`with member ${victim} back`);
    }
    const line = await load.hub.waitForLine(/store watch moved to another etcd member/, 1000);
    t.regex(line, /"member":"m\d","memberId":"[0-9a-f]+","url":"http:\/\/127\.0\.0\.1:\d+","reason":"stream broke: [^"]+","from":"m\d"/);
    await checkEnd(t, load);
  } finally {
    await load.stop();
  }
});

test.serial('leader moves (MoveLeader, as etcdctl move-leader) under writes: nothing lost or out of order', async (t) => {
  t.timeout(90_000);
  const load = await startClusterLoad();
  try {
    await load.written('before the moves');
    for (let i = 0; i < 4; i++) {
      // Every member leads once, the one the hub watches included.
      const [from, to] = await load.cluster.moveLeader();
      await load.written(`after the leader moved from ${from} to ${to}`);
    }
    await checkEnd(t, load);
  } finally {
    await load.stop();
  }
});

test.serial('Etcd3Store on the cluster: the member its watch runs on is SIGKILLed, twice; the watch delivers every committed revision once, in order, and names the member it moved to and why', async (t) => {
  t.timeout(60_000);
  const cluster = await startEtcdCluster({ dataOnTmpfs: true });
  const store = new Etcd3Store({ endpoints: cluster.endpoints });
  const writer = new Etcd3({ hosts: cluster.members.map((m) => m.url), defaultCallOptions: () => ({ deadline: Date.now() + 2000 }) });
  const got: number[] = [];
  const sources: Array<{ source: StoreSource; reason: string }> = [];
  const committed: number[] = [];
  let writing = true;
  const writes = (async () => {
    for (let n = 0; writing; n++) {
      try { committed.push(Number((await writer.put(`/lain/config/w/k${n % 7}`).value(String(n)).exec()).header.revision)); } catch { /* a member down */ }
      await new Promise((r) => setTimeout(r, 5)); // pacing
    }
  })();
  try {
    const start = (await store.list('/lain/')).revision;
    const watch = await store.watch('/lain/', start, {
      onChanges: (changes: RevisionChange[]) => { for (const c of changes) got.push(c.revision); },
      onProgress: () => {}, onLost: (reason) => t.fail(`watch lost: ${reason}`), onDisconnected: () => {}, onReconnected: () => {},
      onSource: (source, _previous, reason) => { sources.push({ source, reason }); },
    });
    for (let round = 0; round < 2; round++) {
      await waitFor(() => sources.length === round + 1 && committed.length > 20 * (round + 1), { message: 'the watch on a member, writes going' });
      const on = cluster.members.findIndex((m) => m.url === sources[round].source.url);
      t.true(on >= 0, `onSource names a member's URL (${sources[round].source.url})`);
      await cluster.kill(on);
      await waitFor(() => sources.length === round + 2, { timeoutMs: 20_000, message: `the watch leaving member ${on}` });
      t.regex(sources[round + 1].reason, /^stream broke: /);
      t.regex(sources[round + 1].source.name, /^m\d$/);
      const before = committed.length;
      await waitFor(() => committed.length > before + 20, { timeoutMs: 20_000, message: 'writes after the kill' });
      await cluster.restart(on);
    }
    writing = false;
    await writes;
    const last = committed[committed.length - 1];
    await waitFor(() => got.length > 0 && got[got.length - 1] >= last, { timeoutMs: 20_000, message: `the watch at revision ${last}` });
    await watch.cancel();
    // Every revision from the start on is a put under /lain/ (the writer's only writes): the watch
    // must have delivered each exactly once, in order — none skipped across the two moves.
    const want = Array.from({ length: last - start }, (_, i) => start + 1 + i);
    t.deepEqual(got, want);
    t.true(committed.filter((r) => r > start).every((r) => got.includes(r)));
    t.is(store.sourceMoves, 2);
  } finally {
    writing = false;
    await writes;
    writer.close();
    await store.close();
    await cluster.stop();
  }
});
