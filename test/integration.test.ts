// The foundation end to end on a real etcd: one hub, three agents, separate processes.
import test from 'ava';
import { etcdClient, startEtcd } from '../testkit/etcd.js';
import { httpGet, openStream } from '../testkit/http.js';
import { waitFor } from '../testkit/procs.js';
import { fixtureKvs, startCluster, type Cluster } from './helpers/cluster.js';

let cluster: Cluster;

test.before(async () => {
  cluster = await startCluster({ hubs: 1, agents: 3, kvs: fixtureKvs('cluster-small') });
});

test.after.always(async () => {
  await cluster?.stop();
});

test.serial('etcd holds a single watcher however many agents are connected', async (t) => {
  t.is(cluster.agents.length, 3);
  t.is(await cluster.etcd.watcherCount(), 1);
});

test.serial('a put in etcd reaches every agent\'s GET and watch', async (t) => {
  const streams = await Promise.all(cluster.agents.map((a) => openStream(`${a.base}/v2/configwatcher?target=itest/&watch=1`)));
  for (const s of streams) {
    const [init] = await s.waitForEvents(1, 5000);
    t.deepEqual([init.id, init.event, init.data], [1, 'init', '{}']);
  }
  const client = etcdClient(cluster.etcd);
  // How fast is the bench's subject (npm run bench), not a test's: tests assert no timings.
  await client.put('/lain/config/itest/a').value('1');
  for (const s of streams) {
    const ev = await s.waitFor((e) => e.event === 'update');
    t.is(ev.data, '{"itest/a":"1"}');
  }
  for (const a of cluster.agents) {
    const res = await httpGet(`${a.base}/v2/configwatcher?target=itest/a`);
    t.is(res.body, '{"itest/a":"1"}');
  }

  await client.delete().key('/lain/config/itest/a');
  for (const s of streams) {
    const ev = await s.waitFor((e) => e.event === 'delete');
    t.is(ev.data, '{}');
    t.true(ev.id > 1);
  }
  for (const s of streams) s.close();
  client.close();
});

test.serial('a transaction with several keys arrives as one delta: one event on a stream', async (t) => {
  const a = cluster.agents[0];
  const stream = await openStream(`${a.base}/v2/configwatcher?target=txn/&watch=1`);
  await stream.waitForEvents(1, 5000);
  const client = etcdClient(cluster.etcd);
  await client.stm().transact(async (tx) => {
    await tx.put('/lain/config/txn/a').value('1');
    await tx.put('/lain/config/txn/b').value('2');
    await tx.put('/lain/config/txn/c').value('3');
  });
  // The barrier: a later write on the same stream. Events are ordered, so an intermediate state
  // of the transaction would have arrived before the marker's update.
  await client.put('/lain/config/txn/marker').value('1');
  await stream.waitFor((e) => e.data.includes('txn/marker'));
  t.deepEqual(stream.events.filter((e) => e.event === 'update').map((e) => e.data), [
    '{"txn/a":"1","txn/b":"2","txn/c":"3"}',
    '{"txn/a":"1","txn/b":"2","txn/c":"3","txn/marker":"1"}',
  ], 'no intermediate states: the three keys came together');
  stream.close();
  client.close();
});

test.serial('/debug reports the hub in use and the revision', async (t) => {
  const a = cluster.agents[0];
  const debug = JSON.parse((await httpGet(`${a.base}/debug`)).body) as { connections: number; goroutines: number; revision: number; stale: boolean; hub: { address: string; live: boolean } };
  t.true(debug.connections >= 1);
  t.true(debug.goroutines > 0);
  t.true(debug.revision > 0);
  t.is(debug.stale, false);
  t.is(debug.hub.address, cluster.hubs[0].url);
  t.true(debug.hub.live);
  await waitFor(async () => (await cluster.etcd.watcherCount()) === 1, { timeoutMs: 2000, message: 'still one etcd watcher' });
});

test.serial('a hub loads a cluster larger than gRPC\'s default 4 MB message from etcd', async (t) => {
  t.timeout(120_000);
  const etcd = await startEtcd();
  const client = etcdClient(etcd);
  try {
    const value = 'v'.repeat(20 * 1024);
    for (let i = 0; i < 300; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, j) => client.put(`/lain/config/big/k${String(i + j).padStart(3, '0')}`).value(value)));
    }
    const big = await startCluster({ etcd, hubs: 1, agents: 1 });
    try {
      const res = await httpGet(`${big.agents[0].base}/v2/configwatcher?target=big/`);
      t.is(Object.keys(JSON.parse(res.body) as object).length, 300);
    } finally {
      await big.stop();
    }
  } finally {
    client.close();
    await etcd.stop();
  }
});
