// A watch that missed a change is repaired by the list of the present that follows every store
// reconnection (hub/sync.ts listPresent) — also when the list comes back at the very revision the
// hub holds, and also when the store is busy while the list is in flight. A 60 s soak under load
// (seed 424242) saw a hub serve a key etcd had deleted: its repair list had arrived behind
// the watch and was thrown away.
//
// The store here is the in-memory one behind a wrapper that does what etcd 3.4 was seen to do
// (drop one transaction's events from a watch) and lets the test hold a list in flight.
import test from 'ava';
import { startHub, type Hub } from '../hub/hub.js';
import { MemoryStore } from '../hub/store/memory.js';
import type { ListResult, RevisionChange, Store, StoreWatch, WatchHandlers } from '../hub/store/types.js';
import { silentLogger, createLogger } from '../shared/log.js';
import { waitFor } from '../testkit/procs.js';
import { FakeAgent, TEST_HUB_WORKERS } from './helpers/fake-agent.js';

class FaultyStore implements Store {
  readonly description = 'faulty memory';
  private handlers?: WatchHandlers;
  /** Revisions whose changes the watch silently drops. */
  readonly dropRevisions = new Set<number>();
  /** While set, lists wait for it before reading. */
  readGate?: Promise<void>;
  /** While set, lists wait for it after reading (the answer is as of the read). */
  listGate?: Promise<void>;
  /** Told each time a list has read its answer (before it waits on the gate). */
  onListed?: (revision: number) => void;

  constructor(readonly inner: MemoryStore) {}

  async list(prefix: string, atRevision?: number): Promise<ListResult> {
    if (this.readGate) await this.readGate;
    const listed = await this.inner.list(prefix, atRevision);
    this.onListed?.(listed.revision);
    if (this.listGate) await this.listGate;
    return listed;
  }

  currentRevision(): Promise<number> { return this.inner.currentRevision(); }

  watch(prefix: string, afterRevision: number, handlers: WatchHandlers): Promise<StoreWatch> {
    this.handlers = handlers;
    return this.inner.watch(prefix, afterRevision, {
      ...handlers,
      onChanges: (changes: RevisionChange[]) => {
        const kept = changes.filter((c) => !this.dropRevisions.has(c.revision));
        if (kept.length > 0) handlers.onChanges(kept);
      },
    });
  }

  /** What the etcd3 backend reports when its connection comes back. */
  reconnect(): void {
    this.handlers?.onDisconnected('test: connection dropped');
    this.handlers?.onReconnected();
  }

  close(): Promise<void> { return this.inner.close(); }
}

/** A hub on `store`, by default once it has checked its new watch (its first list of the present). */
async function hubOnFaulty(store: FaultyStore, opts: { checked: boolean } = { checked: true }): Promise<Hub> {
  const hub = await startHub({
    store, prefix: '/lain/', host: '127.0.0.1', port: 0, workers: TEST_HUB_WORKERS,
    historyMaxCount: 100, historyMaxBytes: 1 << 20, maxBackpressure: 1 << 20, progressIntervalMs: 200,
  }, process.env.DEBUG_REPAIR ? createLogger('debug') : silentLogger);
  await hub.ready;
  if (opts.checked) await until(() => hub.sync.presentLists >= 1, 'the check of the new watch');
  return hub;
}

function until(cond: () => boolean, what: string): Promise<void> {
  return waitFor(cond, { timeoutMs: 10_000, intervalMs: 10, message: what });
}

/**
 * The watch misses the delete of `key` and then sees a later put: the hub ends at etcd's
 * revision with one key too many. Returns that revision.
 */
async function missDelete(mem: MemoryStore, store: FaultyStore, hub: Hub, key: string): Promise<number> {
  store.dropRevisions.add(mem.lastRevision + 1);
  mem.delete(key);
  const rev = mem.put('/lain/config/c', '3');
  await until(() => hub.state.revision === rev, 'the put after the missed delete');
  return rev;
}

/** The state a fake agent holds: its last snapshot plus the deltas after it. */
function agentState(a: FakeAgent): { rev: number; keys: string[] } {
  const entries = new Map<string, string>();
  let rev = 0;
  for (const f of a.frames) {
    if (f.t === 'snap') {
      if (f.part === 0) entries.clear();
      for (const [k, v] of f.puts) entries.set(k, v);
      rev = f.rev;
    } else if (f.t === 'delta' && f.rev > rev) {
      for (const k of f.dels) entries.delete(k);
      for (const [k, v] of f.puts) entries.set(k, v);
      rev = f.rev;
    }
  }
  return { rev, keys: [...entries.keys()].sort() };
}

function hubKeys(hub: Hub): string[] { return [...hub.state.entries.keys()].sort(); }

test('a delete the watch missed is repaired by the list after a reconnection, at the hub\'s own revision; live and resuming agents get the corrected state', async (t) => {
  const mem = new MemoryStore({ '/lain/config/a': '1', '/lain/config/b': '2' });
  const store = new FaultyStore(mem);
  const hub = await hubOnFaulty(store);
  const live = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: 0 });
  try {
    await live.until(() => live.of('prog').length > 0);
    // No later list can show the hub a newer revision until etcd moves.
    const rev = await missDelete(mem, store, hub, '/lain/config/b');
    t.deepEqual(hubKeys(hub), ['/lain/config/a', '/lain/config/b', '/lain/config/c'], 'the hub missed the delete');

    store.reconnect();
    await until(() => hub.state.corrections === 1, 'the list after the reconnection to correct the state');
    t.deepEqual(hubKeys(hub), ['/lain/config/a', '/lain/config/c']);
    t.is(hub.state.revision, rev);
    // The live agent ignores deltas that do not move its revision: it is sent a snapshot.
    await live.until(() => agentState(live).keys.length === 2);
    t.deepEqual(agentState(live), { rev, keys: ['/lain/config/a', '/lain/config/c'] });
    // An agent that was away holds the wrong state at this same revision: resuming, it gets a
    // snapshot, not "nothing to send".
    const back = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n2', rev });
    try {
      await back.until(() => back.of('prog').length > 0);
      t.is(back.of('snap').length, 1);
      t.deepEqual(agentState(back), { rev, keys: ['/lain/config/a', '/lain/config/c'] });
    } finally { back.ws.close(); }
  } finally {
    live.ws.close();
    await hub.stop();
  }
});

test('changes that arrive while the repair list is in flight wait for it: a busy store does not make the list useless', async (t) => {
  const mem = new MemoryStore({ '/lain/config/a': '1', '/lain/config/b': '2' });
  const store = new FaultyStore(mem);
  const hub = await hubOnFaulty(store);
  const live = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: 0 });
  try {
    await live.until(() => live.of('prog').length > 0);
    const listedAt = await missDelete(mem, store, hub, '/lain/config/b');

    // Hold the repair list in flight and write meanwhile: the watch delivers the write before
    // the list's answer arrives.
    let open!: () => void;
    store.listGate = new Promise<void>((r) => { open = r; });
    const listed = new Promise<number>((r) => { store.onListed = r; });
    store.reconnect();
    t.is(await listed, listedAt);
    const later = mem.put('/lain/config/d', '4');
    store.listGate = undefined;
    open();

    await until(() => hub.state.revision === later, 'the write made during the list');
    t.deepEqual(hubKeys(hub), ['/lain/config/a', '/lain/config/c', '/lain/config/d'], 'the missed delete is repaired and the later write kept');
    t.is(hub.state.corrections, 1);
    await live.until(() => agentState(live).rev === later && agentState(live).keys.length === 3);
    t.deepEqual(agentState(live), { rev: later, keys: ['/lain/config/a', '/lain/config/c', '/lain/config/d'] });
  } finally {
    live.ws.close();
    await hub.stop();
  }
});

test('a list that finds the state right changes nothing and sends no agent anything again', async (t) => {
  const mem = new MemoryStore({ '/lain/config/a': '1' });
  const store = new FaultyStore(mem);
  const hub = await hubOnFaulty(store);
  const live = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: 0 });
  try {
    await live.until(() => live.of('prog').length > 0);
    const listed = new Promise<number>((r) => { store.onListed = r; });
    store.reconnect();
    await listed;
    // A write after the list is the barrier: the agent sees its delta, and anything the list
    // caused would have come before it.
    const rev = mem.put('/lain/config/b', '2');
    await live.until(() => agentState(live).rev === rev);
    t.is(hub.state.corrections, 0);
    t.is(live.of('snap').length, 1, 'only the first snapshot');
  } finally {
    live.ws.close();
    await hub.stop();
  }
});

test('a new watch is checked: a delete it misses just after it starts is repaired by the list that follows (etcd-io/etcd#19179)', async (t) => {
  const mem = new MemoryStore({ '/lain/config/a': '1', '/lain/config/b': '2' });
  const store = new FaultyStore(mem);
  const hub = await hubOnFaulty(store, { checked: false });
  // The check's list waits until the watch has missed the delete (however slow the machine).
  let release!: () => void;
  store.readGate = new Promise<void>((r) => { release = r; });
  try {
    await missDelete(mem, store, hub, '/lain/config/b');
    t.is(hub.sync.presentLists, 0);
    store.readGate = undefined;
    release();
    await until(() => hub.sync.presentLists === 1, 'the check of the new watch');
    t.deepEqual(hubKeys(hub), ['/lain/config/a', '/lain/config/c']);
    t.is(hub.state.corrections, 1);
  } finally {
    release();
    await hub.stop();
  }
});
