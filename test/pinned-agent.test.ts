// Pins the agent's side of the protocol (agent/cache.ts, agent/client.ts): its revision never
// goes backwards (an older snapshot is refused, a progress frame with a lower rev changes
// nothing), a delta that does not follow its revision is refused and the agent resumes on a
// fresh connection, and a `move` frame makes it leave for the next hub after afterMs without
// counting a failure. The client is driven against fake hubs: `ws` WebSocketServers on loopback
// that play scripted frames.
import test, { type ExecutionContext } from 'ava';
import { performance } from 'node:perf_hooks';
import { WebSocketServer, type WebSocket } from 'ws';
import { Cache } from '../agent/cache.js';
import { HubClient } from '../agent/client.js';
import type { Logger } from '../shared/log.js';
import { decodeFrame, encodeFrame, type HelloFrame, type HubFrame } from '../shared/protocol.js';

// ---- Cache --------------------------------------------------------------------------------

test('the cache refuses a snapshot older than its revision and changes nothing', (t) => {
  const cache = new Cache();
  const changes: number[] = [];
  cache.onChange((_c, rev) => changes.push(rev));
  t.true(cache.replace(10, [['/lain/config/a', '1']], 'hub'));
  t.false(cache.replace(5, [['/lain/config/b', '2']], 'hub'));
  t.is(cache.revision, 10);
  t.deepEqual([...cache.entries], [['/lain/config/a', '1']]);
  t.deepEqual(changes, [10], 'nothing emitted for the refused snapshot');
  // Nor from the state file: a stale file never overwrites newer hub state.
  t.false(cache.replace(9, [], 'state-file'));
  t.is(cache.source, 'hub');
  t.deepEqual([...cache.entries], [['/lain/config/a', '1']]);
});

test('the cache accepts a snapshot at its own revision (a hub without the history sends one)', (t) => {
  const cache = new Cache();
  t.true(cache.replace(10, [['/lain/config/a', '1']], 'state-file'));
  t.true(cache.replace(10, [['/lain/config/a', '2']], 'hub'));
  t.is(cache.entries.get('/lain/config/a'), '2');
  t.is(cache.source, 'hub');
});

test('a progress rev below the cache revision never lowers it', (t) => {
  const cache = new Cache();
  cache.replace(10, [], 'hub');
  cache.advance(4);
  t.is(cache.revision, 10);
  cache.advance(12);
  t.is(cache.revision, 12);
  cache.advance(11);
  t.is(cache.revision, 12);
});

// ---- fake hubs ----------------------------------------------------------------------------

/** One agent connection to a fake hub. */
class Conn {
  readonly closed: Promise<{ code: number; reason: string }>;
  constructor(readonly ws: WebSocket, readonly hello: HelloFrame, readonly at: number) {
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }
  send(...frames: HubFrame[]): void { for (const f of frames) this.ws.send(encodeFrame(f)); }
}

class FakeHub {
  readonly url: string;
  readonly conns: Conn[] = [];
  private readonly waiters: Array<(c: Conn) => void> = [];

  private constructor(private readonly wss: WebSocketServer) {
    const addr = wss.address() as { port: number };
    this.url = `ws://127.0.0.1:${addr.port}/`;
    wss.on('connection', (ws) => {
      ws.once('message', (data: Buffer) => {
        const conn = new Conn(ws, decodeFrame(data) as HelloFrame, performance.now());
        this.conns.push(conn);
        this.waiters.shift()?.(conn);
      });
    });
  }

  static async start(t: ExecutionContext): Promise<FakeHub> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    const hub = new FakeHub(wss);
    t.teardown(() => {
      for (const c of wss.clients) c.terminate();
      wss.close();
    });
    return hub;
  }

  /** The next connection that says hello; ask before making it connect. */
  nextHello(): Promise<Conn> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

/** Why the client dropped each hub connection, from its 'dropping hub connection' log lines. */
type Drops = string[];

function clientOn(t: ExecutionContext, hubs: FakeHub[], cache = new Cache()): { client: HubClient; cache: Cache; drops: Drops } {
  const drops: Drops = [];
  const log = {
    info() {},
    debug() {},
    warn(obj: { reason?: string }, msg: string) { if (msg === 'dropping hub connection') drops.push(obj.reason ?? ''); },
  } as unknown as Logger;
  // The client starts on a random hub; start on the first one.
  const random = Math.random;
  Math.random = () => 0;
  let client: HubClient;
  try {
    client = new HubClient({
      hubs: hubs.map((h) => h.url), node: 'node1',
      silenceTimeoutMs: 60_000, backoffBaseMs: 1, backoffCapMs: 5,
    }, cache, log);
  } finally {
    Math.random = random;
  }
  t.teardown(() => client.stop());
  return { client, cache, drops };
}

/** Resolves at the first status change (or cache change) for which `pred` holds. */
function when(client: HubClient, cache: Cache, pred: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const check = () => { if (pred()) resolve(); };
    const prev = client.onStatus;
    client.onStatus = () => { prev?.(); check(); };
    cache.onChange(check);
    check();
  });
}

const A: [string, string] = ['/lain/config/a', '1'];
const B: [string, string] = ['/lain/config/b', '2'];

/** Connects and brings the agent live at revision 10 with key A. */
async function liveAt10(hub: FakeHub, client: HubClient, cache: Cache): Promise<Conn> {
  const first = hub.nextHello();
  client.start();
  const conn = await first;
  conn.send({ t: 'snap', rev: 10, part: 0, last: true, puts: [A], stale: false }, { t: 'prog', rev: 10, stale: false });
  await when(client, cache, () => client.status.live && cache.revision === 10);
  return conn;
}

// ---- HubClient ----------------------------------------------------------------------------

test('the agent ignores a lower progress rev, resumes from its own revision, and drops a hub that sends an older snapshot', async (t) => {
  t.timeout(15_000);
  const hub = await FakeHub.start(t);
  const { client, cache, drops } = clientOn(t, [hub]);
  const conn1 = await liveAt10(hub, client, cache);
  t.is(conn1.hello.rev, 0);

  // A progress frame from behind (stale: true marks that it was handled).
  conn1.send({ t: 'prog', rev: 4, stale: true });
  await when(client, cache, () => cache.hubStale);
  t.is(cache.revision, 10, 'a progress frame never lowers the revision');

  // The hub goes away; the agent resumes with its revision, not the progress frame's.
  const second = hub.nextHello();
  conn1.ws.terminate();
  const conn2 = await second;
  t.is(conn2.hello.rev, 10);

  // This hub offers an older snapshot: refused, and the agent leaves it.
  const third = hub.nextHello();
  const taken = when(client, cache, () => cache.revision !== 10).then(() => { throw new Error('took the older snapshot'); });
  conn2.send({ t: 'snap', rev: 5, part: 0, last: true, puts: [B], stale: false });
  await Promise.race([conn2.closed, taken]);
  t.is(drops.length, 1);
  t.regex(drops[0], /older/);
  t.is(cache.revision, 10);
  t.deepEqual([...cache.entries], [A]);
  const conn3 = await third;
  t.is(conn3.hello.rev, 10, 'resumes from its own revision again');
});

test('a delta whose prev is above the agent revision is refused: not applied, connection dropped, resume from the agent revision', async (t) => {
  t.timeout(15_000);
  const hub = await FakeHub.start(t);
  const { client, cache, drops } = clientOn(t, [hub]);
  const changes: number[] = [];
  const conn1 = await liveAt10(hub, client, cache);
  cache.onChange((_c, rev) => changes.push(rev));

  const second = hub.nextHello();
  const applied = when(client, cache, () => cache.revision !== 10).then(() => { throw new Error('applied the delta across the gap'); });
  conn1.send({ t: 'delta', prev: 12, rev: 13, puts: [B], dels: [] });
  await Promise.race([conn1.closed, applied]);
  t.is(drops.length, 1);
  t.regex(drops[0], /does not follow/);
  t.is(cache.revision, 10);
  t.false(cache.entries.has(B[0]));
  t.deepEqual(changes, []);
  const conn2 = await second;
  t.is(conn2.hello.rev, 10);

  // Deltas with prev <= revision < rev do apply (prev below the revision: the agent learnt a
  // newer revision from a progress frame).
  conn2.send({ t: 'delta', prev: 8, rev: 14, puts: [B], dels: [] }, { t: 'delta', prev: 14, rev: 15, puts: [], dels: [A[0]] });
  await when(client, cache, () => cache.revision === 15);
  t.deepEqual([...cache.entries], [B]);
  t.is(hub.conns.length, 2, 'no further reconnect');
});

test('once the agent refused an older snapshot it handles nothing more from that hub: a progress frame sent with it neither makes it live nor resets its backoff', async (t) => {
  t.timeout(15_000);
  const hub = await FakeHub.start(t);
  const { client, cache, drops } = clientOn(t, [hub]);
  const conn1 = await liveAt10(hub, client, cache);
  const second = hub.nextHello();
  conn1.ws.terminate();
  const conn2 = await second;
  const backoff = (client as unknown as { backoff: { attempt: number } }).backoff;
  const attempt = backoff.attempt;
  t.true(attempt > 0, 'the lost connection counted a backoff step');
  const statuses: boolean[] = [];
  const prev = client.onStatus;
  client.onStatus = () => { prev?.(); statuses.push(client.status.live); };

  // What a hub sends a new agent: the snapshot, then at once the progress frame that makes it live.
  const third = hub.nextHello();
  conn2.send({ t: 'snap', rev: 5, part: 0, last: true, puts: [B], stale: false }, { t: 'prog', rev: 5, stale: false });
  await conn2.closed;
  const conn3 = await third;
  t.deepEqual(drops, [drops[0]]);
  t.regex(drops[0], /older/);
  t.false(statuses.includes(true), 'never live on the hub it refused');
  t.true(backoff.attempt > attempt, 'the refused hub counts as a failure: the backoff grows');
  t.is(conn3.hello.rev, 10);
});

test('a progress frame right after a refused gap delta does not move the agent past the gap', async (t) => {
  t.timeout(15_000);
  const hub = await FakeHub.start(t);
  const { client, cache, drops } = clientOn(t, [hub]);
  const conn1 = await liveAt10(hub, client, cache);

  // The gap delta and the hub's next progress frame arrive together.
  const second = hub.nextHello();
  conn1.send({ t: 'delta', prev: 12, rev: 13, puts: [B], dels: [] }, { t: 'prog', rev: 13, stale: false });
  await conn1.closed;
  const conn2 = await second;
  t.regex(drops[0], /does not follow/);
  t.is(cache.revision, 10, 'the changes of (10, 12] were never received');
  t.is(conn2.hello.rev, 10, 'resumes from before the gap, so the hub sends what was missed');
});

test('a move frame is honoured: the agent stays until afterMs, then connects to the next hub without counting a failure', async (t) => {
  t.timeout(15_000);
  const hubA = await FakeHub.start(t);
  const hubB = await FakeHub.start(t);
  const { client, cache, drops } = clientOn(t, [hubA, hubB]);
  const connA = await liveAt10(hubA, client, cache);
  t.is(client.status.hub, hubA.url);
  t.is(client.status.reconnects, 0);

  const AFTER_MS = 300;
  const onB = hubB.nextHello();
  const backAtA = hubA.nextHello().then(() => { throw new Error('reconnected to the hub that asked it to move'); });
  const sentAt = performance.now();
  connA.send({ t: 'move', afterMs: AFTER_MS, reason: 'hub shutting down' });
  // Still served by A until its turn.
  connA.send({ t: 'delta', prev: 10, rev: 11, puts: [B], dels: [] });
  await when(client, cache, () => cache.revision === 11);
  t.true(client.status.connected && client.status.hub === hubA.url);

  const connB = await Promise.race([onB, backAtA]);
  t.true(connB.at - sentAt >= AFTER_MS - 2, `left after ${Math.round(connB.at - sentAt)} ms, asked ${AFTER_MS}`);
  t.is(connB.hello.rev, 11);
  t.is(client.status.hub, hubB.url);
  t.is(client.status.reconnects, 0, 'a move is not a failure');
  t.deepEqual(drops, []);
  t.is((client as unknown as { backoff: { attempt: number } }).backoff.attempt, 0, 'no backoff step');
  t.deepEqual(await connA.closed, { code: 1000, reason: 'moving' });
  connB.send({ t: 'prog', rev: 11, stale: false });
  await when(client, cache, () => client.status.live);
  t.is(hubA.conns.length, 1);
});
