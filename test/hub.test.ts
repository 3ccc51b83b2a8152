// The hub on the in-memory store with fake agents (raw WebSocket clients): the protocol,
// resume, rogue clients and slow consumers. The real-etcd path is in the integration tests.
import test from 'ava';
import { pack } from 'msgpackr';
import { pino } from 'pino';
import { MemoryStore } from '../hub/store/memory.js';
import { FakeAgent, hubOn } from './helpers/fake-agent.js';
import { waitFor } from '../testkit/procs.js';

const seed = { '/lain/config/domain': 'lain.local', '/lain/config/vip': '10.0.0.1', '/lain/deployd/depends/specs/x': 'not forwarded' };

test('a new agent gets a snapshot of the kept keys, then live deltas; a transaction is one delta', async (t) => {
  const store = new MemoryStore(seed);
  const hub = await hubOn(store);
  const a = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: 0 });
  await a.until(() => a.of('prog').length > 0);
  const snap = a.of('snap');
  t.is(snap.length, 1);
  t.true(snap[0].last);
  t.deepEqual(Object.fromEntries(snap[0].puts), { '/lain/config/domain': 'lain.local', '/lain/config/vip': '10.0.0.1' });
  const rev = store.txn([['/lain/config/a', '1'], ['/lain/config/b', '2']], ['/lain/config/vip']);
  await a.until(() => a.of('delta').length > 0);
  const d = a.of('delta')[0];
  t.is(d.rev, rev);
  t.is(d.prev, snap[0].rev);
  t.deepEqual(d.puts, [['/lain/config/a', '1'], ['/lain/config/b', '2']]);
  t.deepEqual(d.dels, ['/lain/config/vip']);
  a.ws.close();
  await hub.stop();
});

test('writes outside the API key ranges and no-op writes publish no delta', async (t) => {
  const store = new MemoryStore(seed);
  const hub = await hubOn(store);
  const a = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: 0 });
  await a.until(() => a.of('prog').length > 0);
  store.put('/lain/deployd/depends/specs/x', 'changed');
  store.put('/lain/config/domain', 'lain.local');
  const last = store.put('/lain/config/domain', 'other');
  // The barrier: a later write that must be published. Deltas come in order, so a delta for the
  // writes before it would have arrived first.
  const marker = store.put('/lain/config/marker', '1');
  await a.until(() => a.of('delta').some((d) => d.rev === marker));
  t.deepEqual(a.of('delta').map((d) => d.rev), [last, marker]);
  t.is(hub.state.deltasPublished, 2);
  a.ws.close();
  await hub.stop();
});

test('resume after a short outage sends the missing deltas, not a snapshot', async (t) => {
  const store = new MemoryStore(seed);
  const hub = await hubOn(store);
  const a = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: 0 });
  await a.until(() => a.of('prog').length > 0);
  const rev0 = a.of('snap')[0].rev;
  a.ws.close();
  store.put('/lain/config/x', '1');
  store.put('/lain/config/y', '2');
  const b = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: rev0 });
  await b.until(() => b.of('prog').length > 0);
  t.is(b.of('snap').length, 0);
  t.deepEqual(b.of('delta').map((d) => d.puts[0][0]), ['/lain/config/x', '/lain/config/y']);
  t.is(hub.server.counters.resumes, 1);
  b.ws.close();
  await hub.stop();
});

test('an agent older than the history gets a snapshot, and the hub says why', async (t) => {
  const store = new MemoryStore(seed);
  const lines: string[] = [];
  const hub = await hubOn(store, { historyMaxCount: 2 }, pino({ level: 'info' }, { write: (l: string) => { lines.push(l); } }));
  const rev0 = store.lastRevision;
  for (let i = 0; i < 5; i++) store.put('/lain/config/n', String(i));
  await waitFor(() => hub.state.revision >= store.lastRevision, { intervalMs: 5, message: 'the hub at the store\'s revision' });
  const a = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: rev0 });
  await a.until(() => a.of('prog').length > 0);
  t.is(a.of('snap').length, 1);
  t.is(a.of('snap')[0].rev, store.lastRevision);
  await waitFor(() => lines.some((l) => l.includes('cannot resume here')), { intervalMs: 5, message: 'the hub to log the snapshot' });
  const logged = JSON.parse(lines.find((l) => l.includes('cannot resume here'))!) as { rev: number; why: string; node: string };
  t.like(logged, { rev: rev0, why: 'history', node: 'n1' });
  a.ws.close();
  await hub.stop();
});

test('an agent ahead of the hub (on the store\'s history) is brought up with deltas, never a snapshot', async (t) => {
  const store = new MemoryStore(seed);
  const hub = await hubOn(store);
  store.put('/lain/config/x', '1');
  store.put('/lain/config/y', '2');
  // Another hub listed later: writes outside the prefix moved the store's revision.
  store.put('/other/z', '3');
  const ahead = store.lastRevision;
  const a = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: ahead });
  await a.until(() => a.of('prog').some((p) => p.rev >= ahead));
  t.is(a.of('snap').length, 0);
  a.ws.close();
  await hub.stop();
});

test('an agent whose revision is beyond the store (another history: etcd restored or rebuilt) gets a reset snapshot of the store\'s state, not an endless wait', async (t) => {
  const store = new MemoryStore(seed);
  const hub = await hubOn(store);
  const a = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: store.lastRevision + 1000 });
  await a.until(() => a.of('prog').length > 0);
  const snaps = a.of('snap');
  t.true(snaps.length >= 1);
  t.true(snaps.every((s) => s.reset === true), 'marked reset: the agent may take a lower revision');
  t.is(snaps[snaps.length - 1].rev, hub.state.revision);
  t.is(hub.server.counters.resetSnapshots, 1);
  a.ws.close();
  await hub.stop();
});

test('an agent whose state is from another store identity (rebuilt etcd) gets a reset snapshot even below our revision, said once', async (t) => {
  const store = new MemoryStore(seed);
  const lines: string[] = [];
  // The identity is set on the state directly: a hub serving on its own thread (no worker
  // learns of a change made behind the ring's back).
  const hub = await hubOn(store, { workers: 0 }, pino({ level: 'info' }, { write: (l: string) => { lines.push(l); } }));
  hub.state.epoch = 'cluster-b';
  const a = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: 1, epoch: 'cluster-a' });
  await a.until(() => a.of('prog').length > 0);
  t.true(a.of('snap').length >= 1 && a.of('snap').every((s) => s.reset === true));
  t.is(a.of('prog')[0].epoch, 'cluster-b', 'progress frames tell the agent the identity');
  // Logged where the reset is found (a warn), not again by the catch-up (lines are written
  // synchronously, before the frames that follow them).
  t.is(lines.filter((l) => l.includes('another store')).length, 1);
  t.is(lines.filter((l) => l.includes('cannot resume here')).length, 0);
  a.ws.close();
  await hub.stop();
});

test('an agent ahead of the hub is served once the hub lists again, even with no change under the prefix', async (t) => {
  const store = new MemoryStore(seed);
  const hub = await hubOn(store);
  // Another hub listed later: writes outside the prefix moved etcd's revision.
  store.put('/other/x', '1');
  store.put('/other/y', '1');
  const ahead = store.lastRevision;
  const a = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'n1', rev: ahead });
  await a.until(() => a.of('prog').some((p) => p.rev >= ahead));
  t.is(a.of('snap').length, 0);
  a.ws.close();
  await hub.stop();
});

test('rogue clients get an error frame and are closed; everyone else keeps being served', async (t) => {
  const store = new MemoryStore(seed);
  const hub = await hubOn(store);
  const good = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'good', rev: 0 });
  await good.until(() => good.of('prog').length > 0);
  const garbage = new FakeAgent(hub.port, Buffer.from([0xc1, 0x00, 0xff]));
  const text = new FakeAgent(hub.port, 'hello?');
  const version = new FakeAgent(hub.port, { t: 'hello', v: 99, node: 'x', rev: 0 });
  const unknown = new FakeAgent(hub.port, pack({ t: 'snap', rev: 1 }));
  const big = new FakeAgent(hub.port, Buffer.alloc(200 * 1024));
  const huge = new FakeAgent(hub.port, Buffer.alloc(4 << 20));
  for (const [name, rogue, code] of [['garbage', garbage, 'bad_frame'], ['text', text, 'bad_frame'], ['version', version, 'bad_version'], ['unknown', unknown, 'bad_frame']] as const) {
    await rogue.until(() => rogue.closed !== undefined);
    t.is(rogue.of('err')[0]?.code, code, name);
  }
  await big.until(() => big.closed !== undefined);
  t.is(big.of('err')[0]?.code, 'too_large');
  await huge.until(() => huge.closed !== undefined);
  t.is(huge.of('snap').length, 0, 'far oversized frame: closed by the WebSocket layer, no data');
  store.put('/lain/config/after', 'rogues');
  await good.until(() => good.of('delta').length > 0);
  t.is(good.closed, undefined);
  good.ws.close();
  await hub.stop();
});

test('a client that never says hello is closed', async (t) => {
  const store = new MemoryStore(seed);
  const hub = await hubOn(store, { helloTimeoutMs: 200 });
  const silent = new FakeAgent(hub.port);
  await silent.until(() => silent.closed !== undefined);
  t.is(silent.of('err')[0]?.code, 'no_hello');
  await hub.stop();
});

test('a slow agent is disconnected, never silently skipped', async (t) => {
  const store = new MemoryStore(seed);
  const hub = await hubOn(store, { maxBackpressure: 256 * 1024 });
  const fast = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'fast', rev: 0 });
  const slow = new FakeAgent(hub.port, { t: 'hello', v: 1, node: 'slow', rev: 0 });
  await fast.until(() => fast.of('prog').length > 0);
  await slow.until(() => slow.of('prog').length > 0);
  // Stop reading on the slow agent's socket: the kernel buffers fill, then the hub's queue.
  (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
  const big = 'x'.repeat(64 * 1024);
  // Paced writes: the fast agent lives in this process too and must get to read.
  for (let i = 0; i < 200; i++) {
    store.put(`/lain/config/big${i % 4}`, big + i);
    await fast.until(() => fast.of('delta').length === i + 1, 10_000);
  }
  await waitFor(() => hub.server.agentCount === 1, { intervalMs: 5, message: 'the hub to close the slow agent' });
  t.true(hub.server.counters.slowAgentDisconnects >= 1);
  // Whatever the slow agent did receive is a gap-free prefix of the deltas.
  (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
  await slow.until(() => slow.closed !== undefined, 5000);
  const revs = slow.of('delta').map((d) => d.rev);
  const fastRevs = fast.of('delta').map((d) => d.rev);
  t.deepEqual(revs, fastRevs.slice(0, revs.length));
  t.true(revs.length < 200);
  fast.ws.close();
  await hub.stop();
});
