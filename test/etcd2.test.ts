// The etcd v2 keys API store against a real etcd 3.4 (--enable-v2): list, watch, directory
// deletes and TTL expiry as delTrees, the cleared event index, an etcd restart, several
// endpoints, and the hub's own StoreSync/HubState on top of it.
import test, { type ExecutionContext } from 'ava';
import { Etcd2Store } from '../hub/store/etcd2.js';
import { CompactedError, type RevisionChange, type WatchHandlers } from '../hub/store/types.js';
import { HubState } from '../hub/state.js';
import { StoreSync } from '../hub/sync.js';
import { keyRangeFilter } from '../shared/protocol.js';
import { silentLogger } from '../shared/log.js';
import { startEtcd, v2Delete, v2Put, type EtcdServer } from '../testkit/etcd.js';
import { freePort } from '../testkit/ports.js';
import { waitFor } from '../testkit/procs.js';
import { within } from './helpers/wait.js';

const PREFIX = '/lain/';
/** etcd v2 keeps this many events; a waitIndex older than the window is "cleared". */
const V2_HISTORY = 1000;

async function etcdFor(t: ExecutionContext, timeoutMs = 30_000): Promise<EtcdServer> {
  t.timeout(timeoutMs);
  const server = await startEtcd({ v2: true });
  t.teardown(() => server.stop());
  return server;
}

function storeFor(t: ExecutionContext, server: EtcdServer, opts: { pollReissueMs?: number } = {}): Etcd2Store {
  const store = new Etcd2Store({ endpoints: [server.url], requestTimeoutMs: 2000, ...opts });
  t.teardown(() => store.close());
  return store;
}

/** WatchHandlers that record every call, for assertions and waits. */
class Recorder implements WatchHandlers {
  changes: RevisionChange[] = [];
  progress: number[] = [];
  lost: string[] = [];
  disconnected: string[] = [];
  reconnected = 0;

  onChanges(changes: RevisionChange[]): void { this.changes.push(...changes); }
  onProgress(revision: number): void { this.progress.push(revision); }
  onLost(reason: string): void { this.lost.push(reason); }
  onDisconnected(reason: string): void { this.disconnected.push(reason); }
  onReconnected(): void { this.reconnected++; }

  until(condition: () => boolean, message: string, timeoutMs = 10_000): Promise<void> {
    return waitFor(condition, { timeoutMs, intervalMs: 20, message: `${message}; recorded ${this.describe()}` });
  }

  hasRevision(revision: number): boolean { return this.changes.some((c) => c.revision === revision); }

  describe(): string {
    return JSON.stringify({ changes: this.changes, lost: this.lost, disconnected: this.disconnected, reconnected: this.reconnected });
  }
}

/** The modifiedIndex of a v2 write. */
async function put(server: EtcdServer, key: string, value: string): Promise<number> {
  return (await v2Put(server, key, value)).node.modifiedIndex!;
}

/** A raw v2 write (for the query parameters the helpers do not cover); returns its modifiedIndex and key. */
async function v2Write(server: EtcdServer, method: string, pathAndQuery: string, value?: string): Promise<number> {
  return (await v2WriteNode(server, method, pathAndQuery, value)).modifiedIndex;
}

async function v2WriteNode(server: EtcdServer, method: string, pathAndQuery: string, value?: string): Promise<{ key: string; modifiedIndex: number; action: string }> {
  const res = await fetch(`${server.url}/v2/keys${pathAndQuery}`, { method, body: value === undefined ? undefined : new URLSearchParams({ value }) });
  const body = (await res.json()) as { action: string; node?: { key: string; modifiedIndex: number } };
  if (!res.ok) throw new Error(`${method} ${pathAndQuery}: ${res.status} ${JSON.stringify(body)}`);
  return { ...body.node!, action: body.action };
}

/** n v2 writes outside /lain (32 at a time): enough of them push old indexes out of the v2 event history. */
async function writeElsewhere(server: EtcdServer, n: number): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (i < n) await v2Put(server, `/elsewhere/k${i++ % 16}`, 'x');
  }));
}

test('list flattens directories to sorted leaf keys at X-Etcd-Index; a missing prefix is empty', async (t) => {
  const server = await etcdFor(t);
  const store = storeFor(t, server);

  const empty = await store.list(PREFIX);
  t.deepEqual(empty.kvs, []);
  t.is(empty.revision, await store.currentRevision());

  await put(server, '/lain/config/vips/10.0.0.2', 'b');
  await put(server, '/lain/config/vips/10.0.0.1', 'a');
  await put(server, '/lain/config/vips-x', 'dash'); // sorts before "vips/…" byte-wise
  await put(server, '/lain/deployd/pod_groups/hello/hello.web.web', '{"Spec":{}}');
  await v2Write(server, 'PUT', '/lain/config/emptydir?dir=true'); // a directory is not a key
  await put(server, '/lainx/outside', 'not under /lain/');
  const last = await put(server, '/lain/config/domain', 'lain.local');

  const listed = await store.list(PREFIX);
  t.is(listed.revision, last);
  t.is(await store.currentRevision(), last);
  t.deepEqual(listed.kvs, [
    ['/lain/config/domain', 'lain.local'],
    ['/lain/config/vips-x', 'dash'],
    ['/lain/config/vips/10.0.0.1', 'a'],
    ['/lain/config/vips/10.0.0.2', 'b'],
    ['/lain/deployd/pod_groups/hello/hello.web.web', '{"Spec":{}}'],
  ]);

  t.deepEqual((await store.list('/lain/config/vips/')).kvs.map(([k]) => k), ['/lain/config/vips/10.0.0.1', '/lain/config/vips/10.0.0.2']);
  const missing = await store.list('/nothing/here/');
  t.deepEqual(missing, { revision: last, kvs: [] });

  // v2 has no historical reads: only the current index is listable.
  t.deepEqual((await store.list(PREFIX, last)).kvs, listed.kvs);
  await t.throwsAsync(store.list(PREFIX, last - 1), { instanceOf: CompactedError });
});

test('watch delivers put, update and delete at their modifiedIndex, and replays from an older revision', async (t) => {
  const server = await etcdFor(t);
  const store = storeFor(t, server);
  const start = await put(server, '/lain/config/domain', 'lain.local');

  const live = new Recorder();
  const watch = await store.watch(PREFIX, start, live);
  const r1 = await put(server, '/lain/config/vip', '10.0.0.1');
  await put(server, '/lainx/ignored', 'outside the prefix');
  const r2 = await put(server, '/lain/config/vip', '10.0.0.2');
  const r3 = (await v2Delete(server, '/lain/config/vip')).node.modifiedIndex!;
  const r4 = await put(server, '/lain/nodes/nodes/node1:10.0.0.9:22', '{"name":"node1"}');
  const expected: RevisionChange[] = [
    { revision: r1, puts: [['/lain/config/vip', '10.0.0.1']], dels: [] },
    { revision: r2, puts: [['/lain/config/vip', '10.0.0.2']], dels: [] },
    { revision: r3, puts: [], dels: ['/lain/config/vip'] },
    { revision: r4, puts: [['/lain/nodes/nodes/node1:10.0.0.9:22', '{"name":"node1"}']], dels: [] },
  ];
  await live.until(() => live.hasRevision(r4), `revision ${r4}`);
  t.deepEqual(live.changes, expected);

  // A watch from before all of it replays every event after its revision, in order.
  const replay = new Recorder();
  const replayWatch = await store.watch(PREFIX, start, replay);
  await replay.until(() => replay.hasRevision(r4), `replayed revision ${r4}`);
  t.deepEqual(replay.changes, expected);

  // cancel() ends a long poll that etcd would hold open (pollReissueMs is 60 s) at once: a
  // cancel waiting for the poll instead would not resolve within the bound.
  await within(Promise.all([watch.cancel(), replayWatch.cancel()]), 10_000, 'cancel() of two watches in a long poll');
  // A cancelled watch stays silent: etcd holds no poll of it any more (its v2 store counts the
  // waiting polls), and a third watch, from before the next write, has that write.
  await waitFor(async () => (JSON.parse(await (await fetch(`${server.url}/v2/stats/store`)).text()) as { watchers: number }).watchers === 0, { message: 'etcd to hold no v2 watcher after cancel()' });
  const marker = new Recorder();
  const markerWatch = await store.watch(PREFIX, r4, marker);
  const r5 = await put(server, '/lain/config/vip', 'after cancel');
  await marker.until(() => marker.hasRevision(r5), `revision ${r5} on the watch still running`);
  await markerWatch.cancel();
  t.is(live.changes.length, expected.length);
  t.is(replay.changes.length, expected.length);
  t.deepEqual([...live.lost, ...replay.lost], []);
});

test('every v2 write action maps to puts, dels or delTrees', async (t) => {
  const server = await etcdFor(t);
  const store = storeFor(t, server);
  const start = await store.currentRevision();
  const rec = new Recorder();
  await store.watch(PREFIX, start, rec);

  const writes = [
    await v2WriteNode(server, 'PUT', '/lain/config/a?prevExist=false', '1'),
    await v2WriteNode(server, 'PUT', '/lain/config/a?prevExist=true', '2'),
    await v2WriteNode(server, 'PUT', '/lain/config/a?prevValue=2', '3'),
    await v2WriteNode(server, 'POST', '/lain/config/queue', 'in order'),
    await v2WriteNode(server, 'DELETE', '/lain/config/a?prevValue=3'),
    await v2WriteNode(server, 'PUT', '/lain/config/empty?dir=true'),
    await v2WriteNode(server, 'DELETE', '/lain/config/empty?dir=true'),
    await v2WriteNode(server, 'PUT', '/lain/config/shortlived?ttl=1', 'soon gone'),
  ];
  t.deepEqual(writes.map((w) => w.action), ['create', 'update', 'compareAndSwap', 'create', 'compareAndDelete', 'set', 'delete', 'set']);
  const [created, updated, swapped, queued, casDeleted, , dirDeleted, shortlived] = writes;
  // The TTL'd key expires about a second later as its own event.
  await rec.until(() => rec.changes.some((c) => c.dels.includes('/lain/config/shortlived')), 'the expiry of the TTL key');

  t.deepEqual(rec.changes, [
    { revision: created.modifiedIndex, puts: [['/lain/config/a', '1']], dels: [] },
    { revision: updated.modifiedIndex, puts: [['/lain/config/a', '2']], dels: [] },
    { revision: swapped.modifiedIndex, puts: [['/lain/config/a', '3']], dels: [] },
    { revision: queued.modifiedIndex, puts: [[queued.key, 'in order']], dels: [] },
    { revision: casDeleted.modifiedIndex, puts: [], dels: ['/lain/config/a'] },
    { revision: dirDeleted.modifiedIndex, puts: [], dels: [], delTrees: ['/lain/config/empty'] },
    { revision: shortlived.modifiedIndex, puts: [['/lain/config/shortlived', 'soon gone']], dels: [] },
    { revision: rec.changes.at(-1)!.revision, puts: [], dels: ['/lain/config/shortlived'] },
  ]);
  t.true(rec.changes.at(-1)!.revision > shortlived.modifiedIndex);
  t.deepEqual(rec.lost, []);
});

test('a directory delete and a directory TTL expiry arrive as delTrees of the directory key', async (t) => {
  const server = await etcdFor(t);
  const store = storeFor(t, server);
  await put(server, '/lain/config/vips/10.0.0.1', 'a');
  const start = await put(server, '/lain/config/vips/10.0.0.2', 'b');
  const rec = new Recorder();
  await store.watch(PREFIX, start, rec);

  const deleted = (await v2Delete(server, '/lain/config/vips', { dir: true, recursive: true })).node.modifiedIndex!;
  await rec.until(() => rec.hasRevision(deleted), 'the directory delete');
  t.deepEqual(rec.changes.at(-1), { revision: deleted, puts: [], dels: [], delTrees: ['/lain/config/vips'] });

  // Creating a directory changes no key: it is progress, not a change.
  const dirMade = await v2Write(server, 'PUT', '/lain/config/tmpdir?dir=true&ttl=1');
  const inside = await put(server, '/lain/config/tmpdir/a', '1');
  await rec.until(() => rec.hasRevision(inside), 'the put inside the TTL directory');
  t.true(rec.progress.includes(dirMade));
  // etcd expires the directory within about a second of its TTL: one event for the whole tree.
  await rec.until(() => rec.changes.some((c) => c.delTrees?.includes('/lain/config/tmpdir')), 'the TTL expiry', 10_000);
  const expiry = rec.changes.at(-1)!;
  t.deepEqual(expiry.delTrees, ['/lain/config/tmpdir']);
  t.true(expiry.revision > inside);
  t.deepEqual(rec.lost, []);
});

test('a watch from an index older than the v2 event history is lost (errorCode 401)', async (t) => {
  const server = await etcdFor(t, 60_000);
  const store = storeFor(t, server);
  const old = await put(server, '/lain/config/domain', 'lain.local');
  await writeElsewhere(server, V2_HISTORY + 100);

  const rec = new Recorder();
  await store.watch(PREFIX, old, rec);
  await rec.until(() => rec.lost.length > 0, 'onLost');
  t.regex(rec.lost[0], /no longer reaches index/);
  t.deepEqual(rec.changes, []);
});

test('a quiet prefix survives more than 1000 writes elsewhere: idle polls move their index on', async (t) => {
  const server = await etcdFor(t, 60_000);
  const store = storeFor(t, server, { pollReissueMs: 300 });
  const start = await put(server, '/lain/config/domain', 'lain.local');
  const rec = new Recorder();
  await store.watch(PREFIX, start, rec);

  await writeElsewhere(server, V2_HISTORY + 100);
  const after = await put(server, '/lain/config/domain', 'changed');
  await rec.until(() => rec.hasRevision(after), 'the put after the writes elsewhere');
  t.deepEqual(rec.lost, []);
  t.deepEqual(rec.changes, [{ revision: after, puts: [['/lain/config/domain', 'changed']], dels: [] }]);
  t.true(rec.progress.length > 0 && rec.progress.every((r) => r > start && r < after));
});

test('an etcd restart while watching: onDisconnected, onReconnected, and nothing lost', async (t) => {
  const server = await etcdFor(t, 60_000);
  const store = storeFor(t, server);
  const start = await put(server, '/lain/config/domain', 'lain.local');
  const rec = new Recorder();
  await store.watch(PREFIX, start, rec);
  const before = await put(server, '/lain/config/vip', 'before');
  await rec.until(() => rec.hasRevision(before), 'the put before the restart');

  await server.kill();
  await rec.until(() => rec.disconnected.length > 0, 'onDisconnected');
  await server.restart();
  await rec.until(() => rec.reconnected > 0, 'onReconnected');
  const after = await put(server, '/lain/config/vip', 'after');
  await rec.until(() => rec.hasRevision(after), 'the put after the restart');

  t.is(rec.disconnected.length, 1, 'one onDisconnected per outage, however many retries');
  t.is(rec.reconnected, 1);
  t.deepEqual(rec.lost, []);
  t.deepEqual(rec.changes.map((c) => c.puts), [[['/lain/config/vip', 'before']], [['/lain/config/vip', 'after']]]);
});

test('with a dead endpoint first, list and watch move on to the live one', async (t) => {
  const server = await etcdFor(t);
  const dead = `http://127.0.0.1:${await freePort()}`;
  const store = new Etcd2Store({ endpoints: [dead, server.url], requestTimeoutMs: 2000 });
  t.teardown(() => store.close());
  t.is(store.description, `etcd2 ${dead},${server.url}`);

  const rev = await put(server, '/lain/config/domain', 'lain.local');
  t.deepEqual(await store.list(PREFIX), { revision: rev, kvs: [['/lain/config/domain', 'lain.local']] });
  const rec = new Recorder();
  await store.watch(PREFIX, rev, rec);
  const next = await put(server, '/lain/config/domain', 'next');
  await rec.until(() => rec.hasRevision(next), 'the put');
  t.deepEqual(rec.lost, []);
});

function hubState(): HubState {
  return new HubState({ keep: keyRangeFilter(PREFIX), historyMaxCount: 100, historyMaxBytes: 1 << 20 });
}

async function startSync(t: ExecutionContext, store: Etcd2Store, state: HubState): Promise<StoreSync> {
  const sync = new StoreSync(store, PREFIX, state, silentLogger);
  t.teardown(() => sync.stop());
  await sync.start();
  return sync;
}

test('StoreSync: a directory delete removes that subtree only, not keys sharing its string prefix', async (t) => {
  const server = await etcdFor(t);
  await put(server, '/lain/config/vips/10.0.0.1', 'a');
  await put(server, '/lain/config/vips/10.0.0.2', 'b');
  await put(server, '/lain/config/vipsx', 'sibling');
  await put(server, '/lain/config/domain', 'lain.local');
  const state = hubState();
  await startSync(t, new Etcd2Store({ endpoints: [server.url] }), state);
  t.deepEqual([...state.entries.keys()].sort(), ['/lain/config/domain', '/lain/config/vips/10.0.0.1', '/lain/config/vips/10.0.0.2', '/lain/config/vipsx']);

  const deleted = (await v2Delete(server, '/lain/config/vips', { dir: true, recursive: true })).node.modifiedIndex!;
  await waitFor(() => state.revision >= deleted, { message: `state at revision ${deleted}` });
  t.deepEqual(Object.fromEntries(state.entries), { '/lain/config/domain': 'lain.local', '/lain/config/vipsx': 'sibling' });
});

test('StoreSync: when the watch starts from a cleared index, it lists again and the state equals a fresh list', async (t) => {
  const server = await etcdFor(t, 60_000);
  await put(server, '/lain/config/domain', 'lain.local');
  await put(server, '/lain/config/gone', 'deleted while the history was lost');

  /** Between the sync's first list and its first watch, changes under /lain fall out of the v2 history. */
  class LosingHistory extends Etcd2Store {
    watchCalls = 0;
    override async watch(prefix: string, afterRevision: number, handlers: WatchHandlers) {
      if (this.watchCalls++ === 0) {
        await put(server, '/lain/config/domain', 'changed');
        await put(server, '/lain/config/added', 'new');
        await v2Delete(server, '/lain/config/gone');
        await writeElsewhere(server, V2_HISTORY + 100);
      }
      return super.watch(prefix, afterRevision, handlers);
    }
  }
  const store = new LosingHistory({ endpoints: [server.url] });
  const state = hubState();
  const sync = await startSync(t, store, state);
  await waitFor(() => sync.relists >= 2, { timeoutMs: 10_000, message: 'the re-list after onLost' });

  const fresh = await new Etcd2Store({ endpoints: [server.url] }).list(PREFIX);
  await waitFor(() => state.revision >= fresh.revision, { message: `state at revision ${fresh.revision}` });
  t.deepEqual(Object.fromEntries(state.entries), Object.fromEntries(fresh.kvs));
  t.deepEqual(Object.fromEntries(state.entries), { '/lain/config/added': 'new', '/lain/config/domain': 'changed' });
  t.is(store.watchCalls, 2);
});
