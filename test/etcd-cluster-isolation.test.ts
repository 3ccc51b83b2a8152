// A member cut off from the others (minority partition), and a member that stops answering without closing anything (SIGSTOP: alive to the kernel, silent
// to gRPC), under the hub's watch on a three-member etcd cluster (issue 15): the keepalive pings
// of the hub's etcd client break the stream and the watch moves to another member; nothing is
// lost from the state and the agent keeps up while the member is still stopped.
//
// The stream jumps here (values in between not shown, never out of order): a list of the present
// that the hub had sent to the stopped member hangs with the watch until keepalive breaks the
// connection, is retried on another member, and lands far ahead of the watch; hub/sync.ts
// publishes its difference as one delta. And a watch that the etcd client re-creates on the
// stopped member again (its pick is random) hangs in the connection handshake for grpc-js's
// connect timeout (20 s) before it tries another: hence the two minutes allowed for the move
// (75 s once ran out in a clean-clone CI run on a slow host: the client may pick the stopped
// member more than once).
import test from 'ava';
import { Etcd3 } from 'etcd3';
import { waitFor } from '../testkit/procs.js';
import { startEtcdCluster } from '../testkit/etcd-cluster.js';
import { checkEnd, guardedWrite, movedFrom, startClusterLoad, type ClusterLoad, type Guard } from './helpers/cluster-load.js';



test.serial('SIGSTOP of the member the hub watches: keepalive moves the watch, the agent keeps up while it is stopped', async (t) => {
  t.timeout(210_000);
  const load = await startClusterLoad();
  try {
    await load.written('before the stop');
    const victim = await load.hubMember();
    t.true(victim >= 0);
    load.cluster.pause(victim, true);
    const now = await movedFrom(load, victim, 120_000);
    await load.written(`with member ${victim} stopped, the hub on ${now}`);
    const { values, last } = await load.finish();
    t.true(values.includes(last), 'the agent has the last write while the member is still stopped');
    load.cluster.pause(victim, false);
    await checkEnd(t, load);
  } finally {
    await load.stop();
  }
});

test.serial('a member partitioned into the minority is not the hub\'s source: its watch moves to the majority and the agent keeps up while the partition lasts', async (t) => {
  t.timeout(90_000);
  const load = await startClusterLoad();
  try {
    await load.written('before the partition');
    for (let round = 0; round < 1; round++) { // repeated in the soak (--etcd-members 3)
      const victim = await load.hubMember();
      load.cluster.isolate(victim);
      const now = await movedFrom(load, victim);
      await load.written(`with member ${victim} in the minority, the hub on ${now}`);
      // Still partitioned: the agent has the majority's latest writes.
      const { values } = await peekCounter(load);
      t.true(load.cluster.net.partitioned);
      t.true(values > 0);
      load.cluster.heal();
      await load.cluster.waitConverged();
    }
    t.regex(load.hub.output(), /"reason":"stream broke: [^"]*no leader/);
    await checkEnd(t, load);
  } finally {
    await load.stop();
  }
});

/** Waits until the agent shows a counter at least as recent as a write committed now (the partition still in place). */
async function peekCounter(load: ClusterLoad): Promise<{ values: number }> {
  const c = new Etcd3({ hosts: load.cluster.members.map((m) => m.url), defaultCallOptions: () => ({ deadline: Date.now() + 3000 }) });
  try {
    let want = 0;
    await waitFor(async () => { want = Number(await c.get('/lain/config/cl/counter').string()); return want > 0; }, { timeoutMs: 10_000, message: 'a linearizable read of the counter' });
    await load.stream.waitFor((e) => e.event === 'update' && Number((JSON.parse(e.data) as Record<string, string>)['cl/counter']) >= want, 15_000);
    return { values: want };
  } finally { c.close(); }
}

// The scenarios' writer must not be fooled by etcd itself: a transaction that timed out on a
// SIGSTOPped member is read from its socket when the member resumes and commits then, long
// after the writes that followed it (CI saw a stream go from 212 back to 13 this way: etcd's
// own counter did). The writer's guard makes such a late attempt change nothing.
test.serial('the scenarios\' writer: a transaction that timed out on a paused member and lands when it resumes changes nothing', async (t) => {
  t.timeout(60_000);
  const cluster = await startEtcdCluster({ dataOnTmpfs: true });
  const key = '/lain/config/cl/counter';
  const pinned = new Etcd3({ hosts: cluster.members[1].url, defaultCallOptions: () => ({ deadline: Date.now() + 2000 }) });
  const others = new Etcd3({ hosts: [cluster.members[0].url, cluster.members[2].url] });
  try {
    const guard: Guard = { counterRev: 0 };
    t.is((await guardedWrite(pinned, 1, guard)).value, 1); // the connection is up before the pause
    cluster.pause(1, true);
    // Twenty attempts 5 ms apart, each with the guard as it was: some are in the member's socket
    // (and some cancelled there too) when it resumes, and unguarded, one of them lands.
    const attempts: Array<Promise<unknown>> = [];
    for (let n = 2; n < 22; n++) {
      attempts.push(guardedWrite(pinned, n, { ...guard }));
      await new Promise((r) => setTimeout(r, 5));
    }
    const late = await Promise.allSettled(attempts);
    t.true(late.every((r) => r.status === 'rejected'), 'the attempts on the paused member time out');
    t.deepEqual((await guardedWrite(others, 50, guard)).value, 50);
    cluster.pause(1, false);
    // The resumed member has caught up (and has had its queued requests) once it answers a linearizable read at our revision.
    const resumed = new Etcd3({ hosts: cluster.members[1].url, defaultCallOptions: () => ({ deadline: Date.now() + 2000 }) });
    try {
      await waitFor(async () => {
        const r = await resumed.kv.range({ key: Buffer.from(key) }).catch(() => undefined);
        return r !== undefined && Number(r.header.revision) >= guard.counterRev;
      }, { timeoutMs: 30_000, message: 'the resumed member answering at our revision' });
    } finally { resumed.close(); }
    t.is(await others.get(key).string(), '50', 'the late attempts changed nothing');
    // And the next write finds out what happened before it, from the guard.
    t.is((await guardedWrite(others, 51, guard)).value, 51);
  } finally {
    pinned.close();
    others.close();
    await cluster.stop();
  }
});

