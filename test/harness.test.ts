import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { compact, currentRevision, etcdClient, putAll, startEtcd, v2Delete, v2Get, v2Put } from '../testkit/etcd.js';
import { httpGet, openStream, rawRequest } from '../testkit/http.js';
import { retryPrematureReconfiguration } from '../testkit/etcd-cluster.js';
import { freePorts } from '../testkit/ports.js';
import { startNodeProgram, waitFor } from '../testkit/procs.js';

/** A node:http server on a free loopback port, closed when the test ends. */
async function serveOnLoopback(
  t: { teardown(fn: () => unknown): void },
  handler: http.RequestListener,
): Promise<{ server: http.Server; port: number; url: string }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as net.AddressInfo;
  return { server, port, url: `http://127.0.0.1:${port}` };
}

/** Writes `source` to a temp .mjs file (removed when the test ends) and returns its path. */
async function scriptFile(t: { teardown(fn: () => unknown): void }, source: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lainlet-harness-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'program.mjs');
  await writeFile(file, source);
  return file;
}

test('a started program: waitForLine sees stdout and stderr, stop returns the exit code', async (t) => {
  const script = await scriptFile(
    t,
    `process.on('SIGTERM', () => { console.log('shutting down'); process.exit(3); });
     console.log(JSON.stringify({ msg: 'listening', args: process.argv.slice(2) }));
     console.error('warning on stderr');
     setInterval(() => {}, 1000);`,
  );
  const program = startNodeProgram('fixture', script, ['--listen', '127.0.0.1:0']);
  t.teardown(() => program.kill());
  t.true(program.pid > 0);
  t.regex(await program.waitForLine(/"msg":"listening"/), /"args":\["--listen","127.0.0.1:0"\]/);
  await program.waitForLine(/^warning on stderr$/);
  t.is(await program.stop(), 3);
  t.regex(program.output(), /shutting down/);
  await t.throwsAsync(program.waitForLine(/never printed/), { message: /exited \(code 3\) before printing a line matching/ });
});

test('a started program that ignores SIGTERM is SIGKILLed and stop() says so', async (t) => {
  const script = await scriptFile(t, `process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000);`);
  const program = startNodeProgram('stubborn', script, []);
  t.teardown(() => program.kill());
  await program.waitForLine(/ready/);
  await t.throwsAsync(program.stop('SIGTERM', 200), { message: /did not exit within 200 ms of SIGTERM \(SIGKILLed\)[^]*ready/ });
  t.is(program.proc.signalCode, 'SIGKILL');
  await t.throwsAsync(program.waitForLine(/never/, 100), { message: /exited \(signal SIGKILL\)/ });
});

test('freePorts returns distinct ports that can be bound', async (t) => {
  const ports = await freePorts(5);
  t.is(new Set(ports).size, 5);
  for (const port of ports) t.true(port > 0 && port < 65536);
  // Below the ephemeral range (the source ports of outgoing connections, which could take a
  // handed-out port before the program listens on it).
  const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  for (const port of ports) t.true(port < low, `${port} is below the ephemeral range from ${low}`);
});

test('waitFor resolves when the condition holds and names what it waited for on timeout', async (t) => {
  let polls = 0;
  await waitFor(() => ++polls >= 3, { intervalMs: 1 });
  t.is(polls, 3);
  await t.throwsAsync(
    waitFor(() => Promise.reject(new Error('connection refused')), { timeoutMs: 50, intervalMs: 10, message: 'the moon' }),
    { message: /timed out after 50 ms waiting for the moon \(last error: Error: connection refused\)/ },
  );
});

test('etcd starts, serves puts, counts watchers, survives kill + restart, and stop removes its dir', async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  t.regex(etcd.endpoint, /^127\.0\.0\.1:\d+$/);
  t.is(etcd.url, `http://${etcd.endpoint}`);

  const client = etcdClient(etcd);
  await client.put('/lain/config/a').value('1');
  t.is(await client.get('/lain/config/a').string(), '1');

  t.is(await etcd.watcherCount(), 0);
  const watcher = await client.watch().prefix('/lain/').create();
  await waitFor(async () => (await etcd.watcherCount()) === 1, { message: 'etcd to count the watch' });
  await watcher.cancel();
  client.close();

  await etcd.kill();
  await etcd.restart();
  const clientAfterRestart = etcdClient(etcd);
  t.is(await clientAfterRestart.get('/lain/config/a').string(), '1');
  clientAfterRestart.close();

  t.true(existsSync(etcd.dataDir));
  await etcd.stop();
  await etcd.stop();
  t.false(existsSync(etcd.dataDir));
  await t.throwsAsync(etcd.restart(), { message: /after stop/ });
});

test('putAll writes a batch as one revision', async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const client = etcdClient(etcd);
  t.teardown(() => client.close());

  const before = await currentRevision(client);
  const revision = await putAll(client, { '/lain/a': '1', '/lain/b': '2', '/lain/c': '3' });
  t.is(revision, before + 1);
  t.deepEqual(await client.getAll().prefix('/lain/').strings(), { '/lain/a': '1', '/lain/b': '2', '/lain/c': '3' });
});

test('compact discards history before the current revision', async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const client = etcdClient(etcd);
  t.teardown(() => client.close());

  const firstRevision = await putAll(client, { '/lain/k': 'old' });
  const lastRevision = await putAll(client, { '/lain/k': 'new' });
  t.is(await client.get('/lain/k').revision(firstRevision).string(), 'old');

  t.is(await compact(etcd), lastRevision);
  await t.throwsAsync(client.get('/lain/k').revision(firstRevision).string(), { message: /compacted/ });
  t.is(await client.get('/lain/k').string(), 'new');
});

test('the v2 keys API works when etcd is started with v2', async (t) => {
  const etcd = await startEtcd({ v2: true });
  t.teardown(() => etcd.stop());

  const put = await v2Put(etcd, '/lain/deployd/pod_groups/app/web', '{"a":1}');
  t.is(put.action, 'set');
  t.is((await v2Get(etcd, '/lain/deployd/pod_groups/app/web')).node.value, '{"a":1}');

  const tree = await v2Get(etcd, '/lain', { recursive: true });
  t.true(tree.node.dir);

  const deleted = await v2Delete(etcd, '/lain/deployd', { dir: true, recursive: true });
  t.is(deleted.action, 'delete');
  await t.throwsAsync(v2Get(etcd, '/lain/deployd/pod_groups/app/web'), { message: /404/ });
});

test('httpGet binds the client socket to localAddress', async (t) => {
  const { url } = await serveOnLoopback(t, (request, response) => {
    response.setHeader('x-path', request.url ?? '');
    response.end(request.socket.remoteAddress);
  });
  const response = await httpGet(`${url}/v2/x?y=1`, { localAddress: '127.0.0.2' });
  t.is(response.status, 200);
  t.is(response.headers['x-path'], '/v2/x?y=1');
  t.is(response.body, '127.0.0.2');
});

test('openStream parses lainlet event framing split across arbitrary chunks', async (t) => {
  // Bytes as latin1 strings (one character per byte), so a chunk can end inside
  // the two-byte UTF-8 "é" (\xc3\xa9) as well as inside a field name.
  const bodyChunks = [
    'id: 1\nevent: init\ndata: {"a":"\xc3',
    '\xa9"}\n\nid: 0\nevent: heartbeat\n\n',
    'id: 2\neve',
    'nt: update\nda',
    'ta: {"b":2}\n',
    '\nid: 3\nevent: delete\ndata: {}\n\n',
  ];
  const { url } = await serveOnLoopback(t, (request) => {
    // Like lainlet: raw bytes on the socket, no chunked encoding, body ends at close.
    const socket = request.socket;
    socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nVary: Accept-Encoding\r\n\r\n');
    // A pause between writes makes each chunk its own read on the client side.
    const writeChunk = (index: number) => {
      if (index === bodyChunks.length) return socket.end();
      socket.write(bodyChunks[index], 'latin1');
      setTimeout(writeChunk, 5, index + 1);
    };
    writeChunk(0);
  });

  const stream = await openStream(`${url}/v2/configwatcher?watch=1`);
  t.is(stream.status, 200);
  t.is(stream.headers['content-type'], 'text/event-stream');
  const events = await stream.waitForEvents(4);
  t.deepEqual(events, [
    { id: 1, event: 'init', data: '{"a":"é"}' },
    { id: 0, event: 'heartbeat', data: '' },
    { id: 2, event: 'update', data: '{"b":2}' },
    { id: 3, event: 'delete', data: '{}' },
  ]);
  t.deepEqual(await stream.waitFor((event) => event.event === 'update'), events[2]);
  await stream.waitForEnd();
  t.true(stream.ended);
  t.is(stream.raw(), Buffer.from(bodyChunks.join(''), 'latin1').toString('utf8'));
  await t.throwsAsync(stream.waitForEvents(5), { message: /server closed the stream before 5 events arrived/ });
});

test('openStream waits time out with the body received so far', async (t) => {
  const { url } = await serveOnLoopback(t, (request) => {
    request.socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nid: 0\nevent: heartbeat\n\n');
  });
  const stream = await openStream(url);
  t.teardown(() => stream.close());
  await stream.waitForEvents(1);
  await t.throwsAsync(stream.waitForEvents(2, 50), { message: /no 2 events within 50 ms[^]*event: heartbeat/ });
  stream.close();
  t.true(stream.ended);
});

test('rawRequest returns what the server wrote until it closed the connection', async (t) => {
  const { port } = await serveOnLoopback(t, (request, response) => {
    response.end(`hello ${request.socket.remoteAddress} over HTTP/${request.httpVersion}`);
  });
  const answer = (await rawRequest(port, '127.0.0.1', 'GET /debug HTTP/1.0\r\n\r\n', { localAddress: '127.0.0.2' })).toString();
  t.regex(answer, /^HTTP\/1\.1 200 OK\r\n/);
  t.regex(answer, /\r\n\r\nhello 127\.0\.0\.2 over HTTP\/1\.0$/);
});

test('rawRequest gives up after timeoutMs when the server keeps the connection open', async (t) => {
  const { port } = await serveOnLoopback(t, () => {
    // never answers
  });
  // The server never answers nor closes: only rawRequest's own timeout can end this (without it
  // the test hangs until ava's). No bound on the elapsed time: a timer may fire a millisecond
  // before Date.now() says it is due, and the machine's load is not the subject.
  const answer = await rawRequest(port, '127.0.0.1', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 100 });
  t.is(answer.length, 0);
});

// The CI failure of 2026-12-02: memberAdd straight after a removal was refused with
// "14 UNAVAILABLE: etcdserver: unhealthy cluster" and the rejoin test failed on a refusal that
// a moment later would have been an answer.
test('a membership change etcd refuses as premature is made again; any other error, or a refusal past the deadline, is thrown at once', async (t) => {
  const refusal = (message: string) => Object.assign(new Error(`14 UNAVAILABLE: etcdserver: ${message}`), { name: 'GRPCUnavailableError' });
  let calls = 0;
  const added = await retryPrematureReconfiguration('member 2 added back', async () => {
    calls += 1;
    if (calls === 1) throw refusal('unhealthy cluster');
    if (calls === 2) throw refusal('re-configuration failed due to not enough started members');
    return 'member 7';
  }, { intervalMs: 1 });
  t.is(added, 'member 7');
  t.is(calls, 3);

  calls = 0;
  const other = await t.throwsAsync(retryPrematureReconfiguration('member 2 added back', async () => {
    calls += 1;
    throw refusal('Peer URLs already exists');
  }, { intervalMs: 1 }));
  t.is(calls, 1, 'an error that may follow a change that was made is not retried');
  t.regex(other.message, /^member 2 added back: .*Peer URLs already exists/);

  calls = 0;
  const late = await t.throwsAsync(retryPrematureReconfiguration('member 2 added back', async () => {
    calls += 1;
    throw refusal('unhealthy cluster');
  }, { timeoutMs: 30, intervalMs: 5 }));
  t.true(calls > 1);
  t.regex(late.message, /^member 2 added back: .*unhealthy cluster/);
});
