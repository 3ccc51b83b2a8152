// The fault proxy (test/helpers/proxy.ts) against a local echo server and a "talker" that sends
// a fixed payload on connect. Synchronised on the proxy's events and on socket events; the
// only clock-based checks are lower bounds (delay, throttle), which cannot flake on a slow machine.
import net from 'node:net';
import test from 'ava';
import { startProxy, type FaultProxy } from './helpers/proxy.js';

interface Server { port: number; connections: number; close(): Promise<void> }

/** A loopback server; `onSocket` decides what it does with each connection. */
async function serve(t: { teardown(fn: () => unknown): void }, onSocket: (s: net.Socket) => void): Promise<Server> {
  const sockets = new Set<net.Socket>();
  const result = { port: 0, connections: 0, close: async () => {} };
  const server = net.createServer((s) => {
    result.connections++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  result.port = (server.address() as net.AddressInfo).port;
  result.close = () => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  };
  t.teardown(() => result.close());
  return result;
}

const echo = (t: { teardown(fn: () => unknown): void }) => serve(t, (s) => s.pipe(s));
const talker = (t: { teardown(fn: () => unknown): void }, payload: Buffer) => serve(t, (s) => s.end(payload));

async function proxyTo(t: { teardown(fn: () => unknown): void }, target: number): Promise<FaultProxy> {
  const proxy = await startProxy(target);
  t.teardown(() => proxy.close());
  return proxy;
}

interface Client {
  socket: net.Socket;
  received(): Buffer;
  /** Resolves once `n` bytes have arrived (rejects if the connection closes first). */
  waitForBytes(n: number): Promise<Buffer>;
  /** Resolves with everything received once the connection is closed. */
  closed: Promise<Buffer>;
}

function connect(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const waiters = new Set<() => void>();
    const received = () => Buffer.concat(chunks);
    let ended = false;
    const closed = new Promise<Buffer>((r) => socket.once('close', () => {
      ended = true;
      for (const w of waiters) w();
      r(received());
    }));
    socket.on('data', (b: Buffer) => {
      chunks.push(b);
      for (const w of waiters) w();
    });
    socket.on('error', () => {});
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve({
        socket,
        received,
        closed,
        waitForBytes: (n) => new Promise((res, rej) => {
          const check = () => {
            const got = received();
            if (got.length >= n) { waiters.delete(check); res(got); } else if (ended) { waiters.delete(check); rej(new Error(`closed after ${got.length} of ${n} bytes`)); }
          };
          waiters.add(check);
          check();
        }),
      });
    });
    socket.once('error', reject);
  });
}

/** Resolves with the error code of a connection attempt, or 'connected'/'closed' when it got that far. */
function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    socket.on('close', () => resolve('closed'));
  });
}

const bytes = (n: number, fill = 'x') => Buffer.alloc(n, fill);

test('forwards both ways and counts connections and bytes', async (t) => {
  const server = await echo(t);
  const proxy = await proxyTo(t, server.port);
  t.is(proxy.targetPort, server.port);
  const accepted = proxy.nextConnection();
  const c = await connect(proxy.port);
  t.deepEqual(await accepted, { id: 1 });
  c.socket.write('hello');
  t.is((await c.waitForBytes(5)).toString(), 'hello');
  t.like(proxy.stats(), { connections: 1, active: 1, bytesUp: 5, bytesDown: 5, refused: 0 });
  c.socket.end();
  await c.closed;
});

test('the original API: a fixed port, cut() partitions, restore() reconnects on the same port', async (t) => {
  const server = await echo(t);
  const first = await startProxy(server.port);
  const port = first.port;
  await first.close();
  const proxy = await startProxy(server.port, port);
  t.teardown(() => proxy.close());
  t.is(proxy.port, port);

  const c = await connect(proxy.port);
  c.socket.write('a');
  await c.waitForBytes(1);
  const cutEvent = new Promise((r) => proxy.events.once('cut', r));
  await proxy.cut();
  await cutEvent;
  await c.closed;
  t.false(proxy.listening);
  t.is(await connectOutcome(proxy.port), 'ECONNREFUSED');

  await proxy.restore();
  t.true(proxy.listening);
  t.is(proxy.port, port);
  const again = await connect(proxy.port);
  again.socket.write('b');
  t.is((await again.waitForBytes(1)).toString(), 'b');
  t.like(proxy.stats(), { connections: 2, cuts: 1 });
  again.socket.destroy();
});

test('refuse() keeps listening but resets new connections; open ones keep working', async (t) => {
  const server = await echo(t);
  const proxy = await proxyTo(t, server.port);
  const old = await connect(proxy.port);
  proxy.refuse();
  t.true(proxy.refusing);
  const refused = new Promise((r) => proxy.events.once('refused', r));
  const outcome = await connectOutcome(proxy.port);
  await refused;
  t.true(['ECONNRESET', 'closed'].includes(outcome), outcome);
  t.like(proxy.stats(), { connections: 1, refused: 1 });
  t.is(server.connections, 1, 'a refused connection never reaches the server');
  old.socket.write('still');
  t.is((await old.waitForBytes(5)).toString(), 'still');

  await proxy.restore();
  const fresh = await connect(proxy.port);
  fresh.socket.write('ok');
  t.is((await fresh.waitForBytes(2)).toString(), 'ok');
  old.socket.destroy();
  fresh.socket.destroy();
});

test('drop() destroys the open connections and keeps listening', async (t) => {
  const server = await echo(t);
  const proxy = await proxyTo(t, server.port);
  const a = await connect(proxy.port);
  await proxy.waitForConnections(1);
  t.is(proxy.drop(), 1);
  await a.closed;
  t.true(proxy.listening);
  const b = await connect(proxy.port);
  b.socket.write('again');
  t.is((await b.waitForBytes(5)).toString(), 'again');
  b.socket.destroy();
});

test('delay() adds latency per chunk in both directions', async (t) => {
  const server = await echo(t);
  const proxy = await proxyTo(t, server.port);
  const c = await connect(proxy.port);
  proxy.delay(150);
  const start = performance.now();
  c.socket.write('ping');
  await c.waitForBytes(4);
  const elapsed = performance.now() - start;
  t.true(elapsed >= 290, `an echo through a 150 ms proxy took ${elapsed.toFixed(0)} ms`);
  proxy.delay(0);
  c.socket.destroy();
});

test('throttle() limits each direction to the given rate', async (t) => {
  const server = await talker(t, bytes(6000));
  const proxy = await proxyTo(t, server.port);
  proxy.throttle(10_000);
  const start = performance.now();
  const c = await connect(proxy.port);
  const got = await c.closed;
  const elapsed = performance.now() - start;
  t.is(got.length, 6000, 'everything arrives, only slower');
  t.true(elapsed >= 500, `6000 bytes at 10000 B/s took ${elapsed.toFixed(0)} ms`);
});

test('cutAfter(n): the next connection gets exactly n bytes from upstream, then is destroyed', async (t) => {
  const server = await talker(t, bytes(10_000));
  const proxy = await proxyTo(t, server.port);
  const budget = proxy.cutAfter(1234);
  const exhausted = new Promise((r) => proxy.events.once('budget-exhausted', r));
  const c = await connect(proxy.port);
  const got = await c.closed;
  t.is(got.length, 1234);
  t.deepEqual(await budget.exhausted, { cut: true, bytes: 1234, connections: 1 });
  t.deepEqual(await exhausted, { cut: true, bytes: 1234, connections: 1 });
  t.like(proxy.stats(), { budgetCuts: 1, bytesDown: 1234, active: 0 });

  // Only the next connection: the one after it is whole again.
  const after = await connect(proxy.port);
  t.is((await after.closed).length, 10_000);
});

test('cutAfter(n, both): counts both directions', async (t) => {
  const server = await echo(t);
  const proxy = await proxyTo(t, server.port);
  const budget = proxy.cutAfter(150, { direction: 'both' });
  const c = await connect(proxy.port);
  c.socket.write(bytes(100));
  const got = await c.closed;
  t.is(got.length, 50, '100 bytes up, then 50 of the echo down');
  t.like(await budget.exhausted, { cut: true, bytes: 150 });
  t.like(proxy.stats(), { bytesUp: 100, bytesDown: 50 });
});

test('cutAfter(n, current): covers the connections open now, not later ones', async (t) => {
  const server = await echo(t);
  const proxy = await proxyTo(t, server.port);
  const open = await connect(proxy.port);
  await proxy.waitForConnections(1);
  const budget = proxy.cutAfter(10, { connections: 'current' });
  const later = await connect(proxy.port);
  later.socket.write(bytes(100));
  t.is((await later.waitForBytes(100)).length, 100, 'a connection accepted after the call is not covered');
  open.socket.write(bytes(100));
  t.is((await open.closed).length, 10);
  t.like(await budget.exhausted, { cut: true, bytes: 10, connections: 1 });
  later.socket.write('z');
  t.is((await later.waitForBytes(101)).length, 101);
  later.socket.destroy();
});

test('a budget armed before a cut applies to the connection made after restore()', async (t) => {
  const server = await talker(t, bytes(5000));
  const proxy = await proxyTo(t, server.port);
  await proxy.cut();
  const budget = proxy.cutAfter(777);
  await proxy.restore();
  const c = await connect(proxy.port);
  t.is((await c.closed).length, 777);
  t.like(await budget.exhausted, { cut: true });
});

test('cancel() and heal() drop pending budgets and faults', async (t) => {
  const server = await talker(t, bytes(3000));
  const proxy = await proxyTo(t, server.port);
  const cancelled = proxy.cutAfter(10);
  cancelled.cancel();
  t.deepEqual(await cancelled.exhausted, { cut: false, bytes: 0, connections: 0 });
  const healed = proxy.cutAfter(10);
  proxy.delay(10_000);
  proxy.throttle(1);
  proxy.refuse();
  await proxy.heal();
  t.like(await healed.exhausted, { cut: false });
  const c = await connect(proxy.port);
  t.is((await c.closed).length, 3000);
});

test('nextConnection() and waitForConnections() resolve on accepted connections', async (t) => {
  const server = await echo(t);
  const proxy = await proxyTo(t, server.port);
  const waiting = proxy.waitForConnections(2);
  const first = proxy.nextConnection();
  const a = await connect(proxy.port);
  t.is((await first).id, 1);
  const second = proxy.nextConnection();
  const b = await connect(proxy.port);
  t.is((await second).id, 2);
  await waiting;
  await t.throwsAsync(proxy.nextConnection(50), { message: /no connection within 50 ms/ });
  a.socket.destroy();
  b.socket.destroy();
});

test('an unreachable upstream closes the client connection', async (t) => {
  const server = await echo(t);
  const target = server.port;
  await server.close();
  const proxy = await proxyTo(t, target);
  const c = await connect(proxy.port);
  t.is((await c.closed).length, 0);
  t.is(proxy.stats().active, 0);
});

test('half-close is forwarded: the server sees the end and still answers', async (t) => {
  const server = await serve(t, (s) => {
    const chunks: Buffer[] = [];
    s.on('data', (b: Buffer) => chunks.push(b));
    s.on('end', () => s.end(`got ${Buffer.concat(chunks).length}`));
  });
  const proxy = await proxyTo(t, server.port);
  const c = await connect(proxy.port);
  c.socket.end(bytes(42));
  t.is((await c.closed).toString(), 'got 42');
});
