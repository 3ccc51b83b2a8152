// The agent's hub client (agent/client.ts), unit by unit: what it says in its hello (and over
// which request), how it takes snapshots, deltas and progress frames into the cache, what it
// refuses (and that it then resumes from its own revision elsewhere), silence, failover order,
// backoff, move, stop, TLS, and the status and log lines operators read. The hubs are `ws`
// WebSocketServers on loopback in this process that play scripted frames: no etcd, no spawned
// process. Tests wait on events (log lines, cache changes, status callbacks), never on time.
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { Cache } from '../agent/cache.js';
import { HubClient, type HubClientOptions } from '../agent/client.js';
import { decodeFrame, encodeFrame, PROTOCOL_VERSION, PROTOCOL_VERSION_MAX, type HelloFrame, type HubFrame } from '../shared/protocol.js';
import { VERSION } from '../shared/version.js';
import { freePort } from '../testkit/ports.js';

// ---- fake hubs --------------------------------------------------------------------------------

/**
 * How long a test waits for something that does happen within milliseconds: a client that
 * broke fails the test this fast rather than hanging it until ava gives up (mutation testing
 * runs the file once per mutant).
 */
const EVENT_DEADLINE_MS = 5000;

/** `promise`, or a rejection naming `what` once EVENT_DEADLINE_MS passed. */
function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), EVENT_DEADLINE_MS);
    timer.unref();
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** One agent connection to a fake hub: the upgrade request, the hello, and a way to answer. */
class Conn {
  private readonly closing: Promise<{ code: number; reason: string }>;
  constructor(readonly ws: WebSocket, readonly hello: HelloFrame, readonly request: IncomingMessage) {
    this.closing = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }
  /** Resolves with the close code and reason once the connection is closed. */
  get closed(): Promise<{ code: number; reason: string }> { return within(this.closing, 'the connection to close'); }
  send(...frames: HubFrame[]): void { for (const f of frames) this.ws.send(encodeFrame(f)); }
}

/** Which hub got each hello, in order, across all the hubs of a test. */
type Arrivals = string[];

class FakeHub {
  readonly conns: Conn[] = [];
  private readonly waiters: Array<(c: Conn) => void> = [];

  private constructor(readonly url: string, readonly name: string, wss: WebSocketServer, arrivals: Arrivals) {
    wss.on('connection', (ws, request) => {
      ws.once('message', (data: Buffer) => {
        const conn = new Conn(ws, decodeFrame(data) as HelloFrame, request);
        this.conns.push(conn);
        arrivals.push(name);
        this.waiters.shift()?.(conn);
      });
    });
  }

  /** A hub on a free loopback port; `reject` answers every upgrade with that HTTP status. */
  static async start(t: ExecutionContext, name: string, arrivals: Arrivals = [], opts: { reject?: number; tls?: { key: string; cert: string } } = {}): Promise<FakeHub> {
    const verifyClient = opts.reject === undefined ? undefined
      : (_info: unknown, cb: (ok: boolean, code?: number) => void) => cb(false, opts.reject);
    let wss: WebSocketServer;
    let url: string;
    if (opts.tls) {
      const server = createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
      wss = new WebSocketServer({ server, verifyClient });
      url = `wss://127.0.0.1:${(server.address() as { port: number }).port}/`;
      t.teardown(() => server.close());
    } else {
      wss = new WebSocketServer({ host: '127.0.0.1', port: 0, verifyClient });
      await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
      url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}/`;
    }
    const hub = new FakeHub(url, name, wss, arrivals);
    t.teardown(() => {
      for (const c of wss.clients) c.terminate();
      wss.close();
    });
    return hub;
  }

  /** The next connection that says hello; ask before making the client connect. */
  nextHello(): Promise<Conn> {
    return within(new Promise((resolve) => this.waiters.push(resolve)), `a hello at hub ${this.name}`);
  }
}

/** A ws:// address where nothing listens: every connection attempt is refused. */
async function deadHub(): Promise<string> {
  return `ws://127.0.0.1:${await freePort()}/`;
}

// ---- the client under test ---------------------------------------------------------------------

interface LogLine { level: number; msg: string; [field: string]: unknown }

interface Harness {
  client: HubClient;
  cache: Cache;
  lines: LogLine[];
  /** Lines with this message, in order. */
  logged(msg: string): LogLine[];
  /** Why the client dropped each connection ('dropping hub connection'). */
  drops(): string[];
  /** Resolves once `pred` holds, re-checked at every log line, cache change and status change. */
  until(pred: () => boolean, what: string): Promise<void>;
  /** The jitter the client's backoff draws from (the share of the ceiling it waits). */
  jitter: { value: number };
}

const WARN = 40;
const ERROR = 50;

/**
 * A client over `hubs`, started on hubs[start]. Math.random is stubbed while the client is
 * built: its first draw picks the first hub, and the backoff keeps the stub as its jitter source.
 */
function clientOn(t: ExecutionContext, hubs: string[], over: Partial<HubClientOptions> = {}, cache = new Cache(), startAt = 0): Harness {
  const lines: LogLine[] = [];
  const pokes = new Set<() => void>();
  const poke = () => { for (const p of pokes) p(); };
  const log = pino({ level: 'debug' }, { write: (line: string) => { lines.push(JSON.parse(line) as LogLine); poke(); } });
  const jitter = { value: 0.5 };
  const random = Math.random;
  let first = true;
  Math.random = () => {
    if (!first) return jitter.value;
    first = false;
    return (startAt + 0.5) / hubs.length;
  };
  let client: HubClient;
  try {
    client = new HubClient({ hubs, node: 'node1', silenceTimeoutMs: 60_000, backoffBaseMs: 2, backoffCapMs: 8, ...over }, cache, log);
  } finally {
    Math.random = random;
  }
  t.teardown(() => client.stop());
  cache.onChange(poke);
  const logged = (msg: string) => lines.filter((l) => l.msg === msg);
  return {
    client, cache, lines, jitter, logged,
    drops: () => logged('dropping hub connection').map((l) => l.reason as string),
    until(pred, what) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { pokes.delete(check); reject(new Error(`timed out waiting for ${what}; log: ${JSON.stringify(lines.map((l) => l.msg))}`)); }, EVENT_DEADLINE_MS);
        const check = () => {
          if (!pred()) return;
          pokes.delete(check);
          clearTimeout(timer);
          resolve();
        };
        pokes.add(check);
        const prev = client.onStatus;
        // Status changes poke too, but only in tests that install a status callback themselves:
        // others check that the client works without one.
        if (prev) client.onStatus = () => { prev(); poke(); };
        check();
      });
    },
  };
}

/** Counts status callbacks (and pokes the harness with each). */
function statusCounter(h: Harness): { count: number; seen: Array<{ connected: boolean; live: boolean }> } {
  const counter = { count: 0, seen: [] as Array<{ connected: boolean; live: boolean }> };
  h.client.onStatus = () => { counter.count++; counter.seen.push({ connected: h.client.status.connected, live: h.client.status.live }); };
  return counter;
}

const A: [string, string] = ['/lain/config/a', '1'];
const B: [string, string] = ['/lain/config/b', '2'];
const C: [string, string] = ['/lain/config/c', '3'];

/** Connects and brings the client live at revision 10 with key A. */
async function liveAt10(hub: FakeHub, h: Harness): Promise<Conn> {
  const first = hub.nextHello();
  h.client.start();
  const conn = await first;
  conn.send({ t: 'snap', rev: 10, part: 0, last: true, puts: [A], stale: false }, { t: 'prog', rev: 10, stale: false });
  await h.until(() => h.client.status.live && h.cache.revision === 10, 'live at 10');
  return conn;
}

/** A cache holding the state file's state at revision 10 (key A), as after a restart. */
function cacheFromFile(epoch = ''): Cache {
  const cache = new Cache();
  cache.replace(10, [A], 'state-file');
  cache.epoch = epoch;
  return cache;
}

// ---- construction -----------------------------------------------------------------------------

test('a client needs at least one hub, and a CA file that exists', (t) => {
  const cache = new Cache();
  const log = pino({ level: 'silent' });
  t.throws(() => new HubClient({ hubs: [], node: 'n', silenceTimeoutMs: 1, backoffBaseMs: 1, backoffCapMs: 1 }, cache, log), { message: 'no hub address given' });
  t.throws(() => new HubClient({ hubs: ['ws://127.0.0.1:1/'], node: 'n', caFile: '/nonexistent/ca.pem', silenceTimeoutMs: 1, backoffBaseMs: 1, backoffCapMs: 1 }, cache, log), { code: 'ENOENT' });
});

test('before it starts, the status says nothing has happened', (t) => {
  const h = clientOn(t, ['ws://127.0.0.1:1/']);
  t.deepEqual(h.client.status, { hub: '', connected: false, live: false, hubRevision: 0, lastFrameAt: 0, reconnects: 0, snapshots: 0, resets: 0, lastError: '', members: [], moves: 0 });
  t.is(h.client.silenceTimeoutMs, 60_000);
});

// ---- hello ------------------------------------------------------------------------------------

test('a fresh agent says hello with the protocol version, its node name and revision 0, over a plain upgrade request', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url]);
  const status = statusCounter(h);
  const before = Date.now();
  const hello = hub.nextHello();
  h.client.start();
  const conn = await hello;
  t.deepEqual(conn.hello, { t: 'hello', v: PROTOCOL_VERSION, vmax: PROTOCOL_VERSION_MAX, ver: VERSION, node: 'node1', rev: 0 });
  t.is(conn.request.headers.authorization, undefined, 'no token, no authorization header');
  t.is(conn.request.headers['sec-websocket-extensions'], undefined, 'no per-message deflate: frames are encoded once for every agent');
  await h.until(() => h.client.status.connected, 'connected');
  t.like(h.client.status, { hub: hub.url, connected: true, live: false, lastError: '' });
  t.true(h.client.status.lastFrameAt >= before);
  t.deepEqual(status.seen[0], { connected: true, live: false });
  t.like(h.logged('connected to hub')[0], { hub: hub.url, rev: 0 });
});

test('an agent with a token sends it as a bearer token', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url], { token: 's3cret' });
  const hello = hub.nextHello();
  h.client.start();
  t.is((await hello).request.headers.authorization, 'Bearer s3cret');
});

test('an agent with state resumes from its revision and names the store it came from; without state it asks from 0 whatever its counter says', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const cases: Array<{ cache: Cache; hello: Partial<HelloFrame> & { rev: number } }> = [
    { cache: cacheFromFile('14841639068965178418'), hello: { rev: 10, epoch: '14841639068965178418' } },
    { cache: cacheFromFile(''), hello: { rev: 10 } },
    // A progress frame before any snapshot moved the counter: there is still no state to resume.
    { cache: Object.assign(new Cache(), { revision: 7, epoch: 'e1' }), hello: { rev: 0 } },
  ];
  for (const c of cases) {
    const h = clientOn(t, [hub.url], {}, c.cache);
    const hello = hub.nextHello();
    h.client.start();
    const conn = await hello;
    t.deepEqual(conn.hello, { t: 'hello', v: PROTOCOL_VERSION, vmax: PROTOCOL_VERSION_MAX, ver: VERSION, node: 'node1', ...c.hello });
    h.client.stop();
  }
});

// ---- snapshots --------------------------------------------------------------------------------

test('a snapshot in parts replaces the state at its last part, with the hub\'s epoch and staleness', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url], {}, cacheFromFile('old'));
  const changes: Array<{ rev: number; puts: Array<[string, string]>; dels: string[] }> = [];
  h.cache.onChange((c, rev) => changes.push({ rev, puts: c.puts, dels: c.dels }));
  const hello = hub.nextHello();
  h.client.start();
  const conn = await hello;
  conn.send(
    { t: 'snap', rev: 20, part: 0, last: false, puts: [B], stale: true, epoch: 'e2' },
    { t: 'snap', rev: 20, part: 1, last: false, puts: [], stale: true, epoch: 'e2' },
    { t: 'snap', rev: 20, part: 2, last: true, puts: [C], stale: true, epoch: 'e2' },
  );
  await h.until(() => h.logged('snapshot applied').length === 1, 'the snapshot');
  t.deepEqual(changes, [{ rev: 20, puts: [B, C], dels: [A[0]] }], 'one change, at the last part');
  t.deepEqual([...h.cache.entries], [B, C]);
  t.like(h.cache, { revision: 20, epoch: 'e2', hubStale: true, source: 'hub' });
  t.like(h.client.status, { snapshots: 1, resets: 0, hubRevision: 20, live: false });
  t.like(h.logged('snapshot applied')[0], { hub: hub.url, rev: 20, keys: 2 });

  // A second snapshot without an epoch keeps the one the cache has; not stale any more.
  conn.send({ t: 'snap', rev: 21, part: 0, last: true, puts: [A], stale: false });
  await h.until(() => h.client.status.snapshots === 2, 'the second snapshot');
  t.like(h.cache, { revision: 21, epoch: 'e2', hubStale: false });
  t.is(h.client.status.hubRevision, 21);
  t.deepEqual(h.drops(), []);
});

test('a snapshot larger than 64 KiB arrives whole by default', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url]);
  const hello = hub.nextHello();
  h.client.start();
  const conn = await hello;
  const big: [string, string] = ['/lain/config/big', 'x'.repeat(1 << 20)];
  conn.send({ t: 'snap', rev: 3, part: 0, last: true, puts: [big], stale: false });
  await h.until(() => h.cache.revision === 3, 'the big snapshot');
  t.is(h.cache.entries.get(big[0]), big[1]);
});

test('a frame over maxFrameBytes drops the connection and changes nothing', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url], { maxFrameBytes: 1000 });
  let hello = hub.nextHello();
  h.client.start();
  let conn = await hello;
  conn.send({ t: 'snap', rev: 3, part: 0, last: true, puts: [['/lain/config/k', 'y'.repeat(900)]], stale: false });
  await h.until(() => h.cache.revision === 3, 'a frame under the limit');
  hello = hub.nextHello();
  conn.send({ t: 'snap', rev: 4, part: 0, last: true, puts: [['/lain/config/k', 'z'.repeat(2000)]], stale: false });
  conn = await hello;
  t.is(h.cache.revision, 3);
  t.is(conn.hello.rev, 3);
  t.regex(h.logged('hub connection closed')[0].lastError as string, /max payload/i);
});

test('snapshot parts out of order are refused: the state stays and the agent resumes from it', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url]);
  const conn1 = await liveAt10(hub, h);
  const cases: Array<{ frames: HubFrame[]; reason: RegExp }> = [
    { frames: [{ t: 'snap', rev: 20, part: 1, last: true, puts: [B], stale: false }], reason: /^bad frame from hub: snapshot part 1 out of order$/ },
    { frames: [{ t: 'snap', rev: 20, part: 0, last: false, puts: [B], stale: false }, { t: 'snap', rev: 21, part: 1, last: true, puts: [C], stale: false }], reason: /snapshot part 1 out of order/ },
    { frames: [{ t: 'snap', rev: 20, part: 0, last: false, puts: [B], stale: false }, { t: 'snap', rev: 20, part: 2, last: true, puts: [C], stale: false }], reason: /snapshot part 2 out of order/ },
    { frames: [{ t: 'snap', rev: 20, part: 0, last: false, puts: [B], stale: false }, { t: 'delta', prev: 10, rev: 11, puts: [C], dels: [] }], reason: /delta in the middle of a snapshot/ },
    { frames: [{ t: 'snap', rev: 20, part: 0, last: false, puts: [B], stale: false }, { t: 'prog', rev: 20, stale: false }], reason: /progress in the middle of a snapshot/ },
  ];
  let conn = conn1;
  for (const [i, c] of cases.entries()) {
    const next = hub.nextHello();
    conn.send(...c.frames);
    conn = await next;
    t.regex(h.drops()[i], c.reason, `case ${i}`);
    t.is(h.logged('hub connection closed')[i].lastError, h.drops()[i], 'the reason is the last error');
    t.is(conn.hello.rev, 10, `case ${i}`);
    t.deepEqual([...h.cache.entries], [A], `case ${i}`);
  }
  // A part 0 after a lost connection starts a new snapshot (nothing is kept from the last one).
  conn.send({ t: 'snap', rev: 30, part: 0, last: true, puts: [C], stale: false });
  await h.until(() => h.cache.revision === 30, 'a whole snapshot');
  t.deepEqual([...h.cache.entries], [C]);
});

test('a half snapshot is forgotten with its connection: the next connection\'s parts do not add to it', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url]);
  let hello = hub.nextHello();
  h.client.start();
  const conn1 = await hello;
  conn1.send({ t: 'snap', rev: 20, part: 0, last: false, puts: [B], stale: false });
  // Nothing else to wait for: the part changes nothing visible until the last one. A progress
  // frame is refused mid-snapshot, and so marks that the part arrived.
  hello = hub.nextHello();
  conn1.send({ t: 'prog', rev: 20, stale: false });
  const conn2 = await hello;
  t.regex(h.drops()[0], /progress in the middle/);
  conn2.send({ t: 'snap', rev: 20, part: 1, last: true, puts: [C], stale: false });
  hello = hub.nextHello();
  const conn3 = await hello;
  t.regex(h.drops()[1], /snapshot part 1 out of order/);
  t.false(h.cache.hasState);
  t.is(conn3.hello.rev, 0);
});

test('an older snapshot is refused, unless the hub says the store was reset: then it is the truth', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url]);
  const conn1 = await liveAt10(hub, h);
  let next = hub.nextHello();
  conn1.send({ t: 'snap', rev: 5, part: 0, last: true, puts: [B], stale: false });
  const conn2 = await next;
  t.is(h.drops()[0], 'bad frame from hub: snapshot at 5 is older than our revision 10');
  t.deepEqual([...h.cache.entries], [A]);
  t.is(conn2.hello.rev, 10);

  conn2.send({ t: 'snap', rev: 5, part: 0, last: true, puts: [B], stale: false, reset: true, epoch: 'e9' });
  await h.until(() => h.cache.revision === 5, 'the reset snapshot');
  t.deepEqual([...h.cache.entries], [B]);
  t.like(h.client.status, { resets: 1, snapshots: 2 });
  t.is(h.cache.epoch, 'e9');
  const reset = h.logged('the store was reset (etcd restored from an older backup or rebuilt): took the hub\'s state as the truth');
  t.is(reset.length, 1);
  t.like(reset[0], { level: ERROR, hub: hub.url, oldRev: 10, rev: 5, epoch: 'e9' });
  next = hub.nextHello();
  conn2.ws.terminate();
  t.is((await next).hello.rev, 5, 'resumes from the reset state');
  t.is(h.drops().length, 1);
});

// ---- deltas -----------------------------------------------------------------------------------

test('deltas apply when prev <= revision < rev; ones the agent has are ignored; a gap is refused', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url], {}, cacheFromFile());
  let next = hub.nextHello();
  h.client.start();
  const conn1 = await next;
  t.is(conn1.hello.rev, 10);
  const changes: number[] = [];
  h.cache.onChange((_c, rev) => changes.push(rev));

  // Deltas at or below revision 10 change nothing, not even what the status says of the hub.
  // An error frame ends the connection, so marks that they were handled.
  next = hub.nextHello();
  conn1.send({ t: 'delta', prev: 9, rev: 10, puts: [B], dels: [] }, { t: 'delta', prev: 4, rev: 6, puts: [C], dels: [A[0]] },
    { t: 'err', code: 'overloaded', msg: 'too many agents' });
  const conn2 = await next;
  t.is(h.drops()[0], 'bad frame from hub: hub error overloaded: too many agents');
  t.deepEqual(changes, []);
  t.deepEqual([...h.cache.entries], [A]);
  t.is(h.client.status.hubRevision, 0);

  // prev below the revision (a progress frame moved it) or equal to it: applied, in order.
  conn2.send({ t: 'delta', prev: 8, rev: 12, puts: [B], dels: [] }, { t: 'delta', prev: 12, rev: 13, puts: [C], dels: [A[0]] });
  await h.until(() => h.cache.revision === 13, 'two deltas');
  t.deepEqual(changes, [12, 13]);
  t.deepEqual([...h.cache.entries], [B, C]);
  t.is(h.client.status.hubRevision, 13);
  t.is(h.cache.source, 'hub');

  next = hub.nextHello();
  conn2.send({ t: 'delta', prev: 14, rev: 15, puts: [A], dels: [] });
  const conn3 = await next;
  t.is(h.drops()[1], 'bad frame from hub: delta 14→15 does not follow our revision 13');
  t.is(h.cache.revision, 13);
  t.is(conn3.hello.rev, 13);
});

test('a progress frame that came with a refused gap delta does not move the agent past the gap', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url]);
  const conn1 = await liveAt10(hub, h);
  const next = hub.nextHello();
  conn1.send({ t: 'delta', prev: 12, rev: 13, puts: [B], dels: [] }, { t: 'prog', rev: 13, stale: true });
  const conn2 = await next;
  t.regex(h.drops()[0], /does not follow/);
  t.is(h.cache.revision, 10);
  t.false(h.cache.hubStale);
  t.is(conn2.hello.rev, 10);
});

test('frames that are not protocol frames drop the connection', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url]);
  let conn = await liveAt10(hub, h);
  let next = hub.nextHello();
  conn.ws.send('{"t":"prog"}');
  conn = await next;
  t.is(h.drops()[0], 'bad frame from hub: text frame from hub');
  next = hub.nextHello();
  conn.ws.send(Buffer.from([0x81])); // a map of one entry, cut short
  conn = await next;
  t.regex(h.drops()[1], /^bad frame from hub: undecodable msgpack frame/);
  t.is(conn.hello.rev, 10);
});

// ---- progress ---------------------------------------------------------------------------------

test('the first progress frame makes the agent live and its state the hub\'s; later ones move the revision, the staleness and the epoch', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url], {}, cacheFromFile('e1'));
  const status = statusCounter(h);
  const next = hub.nextHello();
  h.client.start();
  const conn = await next;
  await h.until(() => status.count === 1, 'connected');
  conn.send({ t: 'prog', rev: 10, stale: false });
  await h.until(() => h.client.status.live, 'live');
  t.is(h.cache.source, 'hub', 'the state loaded from the file is the hub\'s present now');
  t.is(status.count, 2);
  t.like(h.logged('in sync with hub')[0], { hub: hub.url, rev: 10, hubStale: false });

  conn.send({ t: 'prog', rev: 15, stale: true, epoch: 'e2' });
  await h.until(() => status.count === 3, 'the second progress frame');
  t.like(h.cache, { revision: 15, hubStale: true, epoch: 'e2' });
  t.is(h.client.status.hubRevision, 15);

  conn.send({ t: 'prog', rev: 12, stale: false });
  await h.until(() => status.count === 4, 'a progress frame from behind');
  t.like(h.cache, { revision: 15, hubStale: false, epoch: 'e2' }, 'never backwards; no epoch: the old one stays');
  t.is(h.client.status.hubRevision, 12, 'the status says where that hub is');
  t.is(h.logged('in sync with hub').length, 1, 'live once');
  t.deepEqual(h.drops(), []);
});

test('the silence timeout becomes three of the hub\'s progress intervals plus a second, never below the configured one', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url], { silenceTimeoutMs: 10_000 });
  const status = statusCounter(h);
  const conn = await liveAt10(hub, h);
  const cases: Array<[number | undefined, number]> = [[5000, 16_000], [0, 16_000], [undefined, 16_000], [100, 10_000], [3000, 10_000], [4000, 13_000]];
  for (const [pi, timeout] of cases) {
    const count = status.count;
    conn.send(pi === undefined ? { t: 'prog', rev: 10, stale: false } : { t: 'prog', rev: 10, stale: false, pi });
    await h.until(() => status.count > count, `progress with pi ${pi}`);
    t.is(h.client.silenceTimeoutMs, timeout, `pi ${pi}`);
  }
});

test('a hub that sends nothing for the silence timeout is dropped, and the next one tried', async (t) => {
  const arrivals: Arrivals = [];
  const hubA = await FakeHub.start(t, 'A', arrivals);
  const hubB = await FakeHub.start(t, 'B', arrivals);
  const h = clientOn(t, [hubA.url, hubB.url], { silenceTimeoutMs: 50 });
  const onB = hubB.nextHello();
  h.client.start();
  await onB;
  t.deepEqual(arrivals, ['A', 'B']);
  t.is(h.drops()[0], 'hub silent for 50 ms');
  t.like(h.logged('dropping hub connection')[0], { level: WARN, hub: hubA.url });
  t.like(h.logged('hub connection closed')[0], { lastError: 'hub silent for 50 ms', next: hubB.url, wasLive: false });
});

test('a client without a status callback works all the same', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url]);
  let next = hub.nextHello();
  h.client.start();
  const conn1 = await next;
  conn1.send({ t: 'snap', rev: 10, part: 0, last: true, puts: [A], stale: false }, { t: 'prog', rev: 10, stale: false }, { t: 'delta', prev: 10, rev: 11, puts: [B], dels: [] });
  await h.until(() => h.cache.revision === 11, 'the delta after going live');
  t.true(h.client.status.live);
  next = hub.nextHello();
  conn1.ws.terminate();
  t.is((await next).hello.rev, 11);
  t.deepEqual(h.drops(), []);
  t.like(h.logged('hub connection closed')[0], { wasLive: true });
});

// ---- failover and backoff ---------------------------------------------------------------------

test('the client starts on the hub its random draw picks and then goes round the list', async (t) => {
  const arrivals: Arrivals = [];
  const hubs = [await FakeHub.start(t, 'A', arrivals), await FakeHub.start(t, 'B', arrivals), await FakeHub.start(t, 'C', arrivals)];
  const h = clientOn(t, hubs.map((x) => x.url), {}, new Cache(), 1);
  const order = ['B', 'C', 'A', 'B'];
  let next = hubs[1].nextHello();
  h.client.start();
  for (let i = 0; i < order.length; i++) {
    const conn = await next;
    t.is(arrivals[i], order[i]);
    t.is(h.client.status.hub, hubs['ABC'.indexOf(order[i])].url);
    t.is(h.client.status.reconnects, i);
    if (i + 1 === order.length) break;
    next = hubs['ABC'.indexOf(order[i + 1])].nextHello();
    conn.ws.terminate();
  }
  t.deepEqual(arrivals, order);
});

test('every failure doubles the backoff ceiling up to its cap; going live starts it again from the base', async (t) => {
  const hub = await FakeHub.start(t, 'A');
  const h = clientOn(t, [hub.url], { backoffBaseMs: 10, backoffCapMs: 40 });
  h.jitter.value = 0.5;
  const closedLines = () => h.logged('hub connection closed');
  let next = hub.nextHello();
  h.client.start();
  for (let i = 0; i < 4; i++) {
    const conn = await next;
    next = hub.nextHello();
    conn.ws.terminate();
  }
  let conn = await next;
  t.deepEqual(closedLines().map((l) => l.retryInMs), [5, 10, 20, 20]);
  conn.send({ t: 'snap', rev: 10, part: 0, last: true, puts: [A], stale: false }, { t: 'prog', rev: 10, stale: false });
  await h.until(() => h.client.status.live, 'live');
  next = hub.nextHello();
  conn.ws.terminate();
  conn = await next;
  t.like(closedLines()[4], { retryInMs: 5, wasLive: true, level: WARN, next: hub.url });
  t.is(h.client.status.reconnects, 5);
});

test('a hub that cannot be reached: the first error of each attempt is the last error, and the client keeps trying', async (t) => {
  const dead = await deadHub();
  const h = clientOn(t, [dead]);
  const status = statusCounter(h);
  h.client.start();
  await h.until(() => h.logged('hub connection closed').length >= 3, 'three attempts');
  for (const line of h.logged('hub connection closed')) t.regex(line.lastError as string, /ECONNREFUSED/);
  t.regex(h.client.status.lastError, /ECONNREFUSED/);
  t.true(h.client.status.reconnects >= 3);
  t.false(h.client.status.connected);
  t.true(status.seen.every((s) => !s.connected && !s.live));
  t.deepEqual(h.logged('connected to hub'), []);
});

test('a hub that answers the upgrade with an HTTP error: its status is the last error (with a hint for 401), and the next hub is tried', async (t) => {
  const arrivals: Arrivals = [];
  const hubA = await FakeHub.start(t, 'A', arrivals, { reject: 401 });
  const hubB = await FakeHub.start(t, 'B', arrivals, { reject: 503 });
  const hubC = await FakeHub.start(t, 'C', arrivals);
  const h = clientOn(t, [hubA.url, hubB.url, hubC.url]);
  const onC = hubC.nextHello();
  h.client.start();
  await onC;
  const closed = h.logged('hub connection closed');
  t.is(closed[0].lastError, 'hub answered HTTP 401 (token missing or wrong)');
  t.is(closed[1].lastError, 'hub answered HTTP 503');
  t.like(closed[0], { next: hubB.url });
  await h.until(() => h.client.status.connected, 'connected to C');
  t.is(h.client.status.lastError, '', 'a connection clears the last error');
});

// ---- move and stop ----------------------------------------------------------------------------

test('a move frame: the agent leaves for the next hub when its turn comes, without counting a failure', async (t) => {
  const arrivals: Arrivals = [];
  const hubA = await FakeHub.start(t, 'A', arrivals);
  const hubB = await FakeHub.start(t, 'B', arrivals);
  const h = clientOn(t, [hubA.url, hubB.url]);
  const status = statusCounter(h);
  const connA = await liveAt10(hubA, h);
  const onB = hubB.nextHello();
  connA.send({ t: 'move', afterMs: 0, reason: 'hub shutting down' });
  const connB = await onB;
  t.like(h.logged('hub asked us to move')[0], { hub: hubA.url, afterMs: 0, reason: 'hub shutting down' });
  t.deepEqual(await connA.closed, { code: 1000, reason: 'moving' });
  t.is(connB.hello.rev, 10);
  t.is(h.client.status.hub, hubB.url);
  t.true(status.seen.some((s) => !s.connected && !s.live), 'disconnected in between');
  connB.send({ t: 'prog', rev: 11, stale: false });
  await h.until(() => h.client.status.live && h.cache.revision === 11, 'live on B');
  // The old connection's close (long done by now) is not a failure: no reconnect, no backoff.
  t.is(h.client.status.reconnects, 0);
  t.deepEqual(h.logged('hub connection closed'), []);
  t.deepEqual(h.drops(), []);
  t.deepEqual(arrivals, ['A', 'B']);
});

test('stop closes the connection and nothing reconnects, also when stopped while leaving a hub', async (t) => {
  const hubA = await FakeHub.start(t, 'A');
  const hubB = await FakeHub.start(t, 'B');
  const h = clientOn(t, [hubA.url, hubB.url]);
  const connA = await liveAt10(hubA, h);
  const disconnected = within(new Promise<void>((resolve) => {
    h.client.onStatus = () => { if (!h.client.status.connected) queueMicrotask(resolve); };
  }), 'the client to see the connection closed');
  h.client.stop();
  await connA.closed;
  await disconnected;
  t.like(h.client.status, { connected: false, live: false, reconnects: 0 });
  t.deepEqual(h.logged('hub connection closed'), []);

  // Stopped from the status callback at the moment it leaves a hub that asked it to move.
  const h2 = clientOn(t, [hubA.url, hubB.url]);
  const conn2 = await liveAt10(hubA, h2);
  const left = within(new Promise<string>((resolve) => {
    h2.client.onStatus = () => {
      if (h2.client.status.connected) return;
      h2.client.stop();
      queueMicrotask(() => resolve(h2.client.status.hub));
    };
  }), 'the client to leave hub A');
  conn2.send({ t: 'move', afterMs: 0, reason: 'bye' });
  t.is(await left, hubA.url, 'no connection to the next hub');
  await conn2.closed;
  t.is(hubB.conns.length, 0);
});

// ---- TLS --------------------------------------------------------------------------------------

// A self-signed certificate for 127.0.0.1 (EC P-256, valid until 2126), for this test only.
const TLS_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgM6XgVRqYAO61JNJF
tmT/wlLyenOvB6Il3sbQT+aByn+hRANCAARJ+Hq1XQkqR6YfFAy8KyNiUa2wNVOW
f7dy29wJSAYbdJ4/o8C5VMv4n7qqQpke5SYrQc+sK39lSSOqBRilDS9A
-----END PRIVATE KEY-----
`;
const TLS_CERT = `-----BEGIN CERTIFICATE-----
MIIBkDCCATagAwIBAgIUAO1IZChPWJDIUCPP3E5SSG3tYUwwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTIwMjAwNDIxNFoYDzIxMjYxMTA4
MDA0MjE0WjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAARJ+Hq1XQkqR6YfFAy8KyNiUa2wNVOWf7dy29wJSAYbdJ4/o8C5VMv4
n7qqQpke5SYrQc+sK39lSSOqBRilDS9Ao2QwYjAdBgNVHQ4EFgQUTqA4E5/mHaBp
IyBBxomyGm1igO0wHwYDVR0jBBgwFoAUTqA4E5/mHaBpIyBBxomyGm1igO0wDwYD
VR0TAQH/BAUwAwEB/zAPBgNVHREECDAGhwR/AAABMAoGCCqGSM49BAMCA0gAMEUC
IQDWZ3rl8uYLasKh7UjmMuvNdik3ZCsibDtN0+4gYtI7WAIgSZ0EECMOFvMvjsW9
V/9t09abrOhwoHNXXh2UeCXhDZw=
-----END CERTIFICATE-----
`;

test('wss: the client trusts the hub\'s certificate through its CA file, and only then', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'lainlet-client-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ca.pem'), TLS_CERT);
  const hub = await FakeHub.start(t, 'A', [], { tls: { key: TLS_KEY, cert: TLS_CERT } });

  const untrusting = clientOn(t, [hub.url]);
  untrusting.client.start();
  await untrusting.until(() => untrusting.logged('hub connection closed').length > 0, 'a refused certificate');
  t.regex(untrusting.client.status.lastError, /self-signed certificate/);
  untrusting.client.stop();

  const trusting = clientOn(t, [hub.url], { caFile: join(dir, 'ca.pem') });
  const hello = hub.nextHello();
  trusting.client.start();
  t.is((await hello).hello.node, 'node1');
  t.is(hub.conns.length, 1);
});
