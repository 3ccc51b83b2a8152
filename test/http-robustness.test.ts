// The agent's HTTP layer against what clients really send, on a real agent process (etcd, hub
// and agent from dist/): pipelining around watches, absolute-form targets, CONNECT, over-long
// heads, garbage, heartbeats longer than a timer holds, and a seeded fuzz pass. The answers a
// client can notice follow Go's net/http (API.md §2–3): requests on a connection are answered in
// order; a watch owns its connection and nothing pipelined after it is answered; what cannot be
// parsed gets 400 (431 for an over-long head) after the answers before it, and the connection
// closes. Every test ends with the process alive; the last one checks it still serves and
// streams. Tests are serial: they share the agent, and the last one must run last.
import test from 'ava';
import net from 'node:net';
import type { Etcd3 } from 'etcd3';
import { fixtureKvs, startCluster, type Cluster, type RunningAgent } from './helpers/cluster.js';
import { etcdClient } from '../testkit/etcd.js';
import { httpGet, openStream, type EventStream } from '../testkit/http.js';
import { waitFor } from '../testkit/procs.js';

const STREAM_HEADER = 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nVary: Accept-Encoding\r\n\r\n';
const BAD_REQUEST = 'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request';
const TOO_LARGE = 'HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large';
const VERSION_RESPONSE = /^HTTP\/1\.1 200 OK\r\n[^]*?\r\nContent-Length: (\d+)\r\n[^]*?\r\n\r\n/;
/** Events of the stream helpers and raw connections arrive within this (or the test fails). */
const WAIT_MS = 5000;

let cluster: Cluster;
let agent: RunningAgent;
let etcd: Etcd3;
/** A stream opened before everything else: it must still get events at the end. */
let witness: EventStream;

test.before(async () => {
  cluster = await startCluster({ kvs: fixtureKvs('cluster-small') });
  agent = cluster.agents[0]!;
  etcd = etcdClient(cluster.etcd);
  witness = await openStream(`${agent.base}/v2/configwatcher?target=witness&watch=1`);
  await witness.waitForEvents(1, WAIT_MS);
});

test.after.always(async () => {
  witness?.close();
  etcd?.close();
  await cluster?.stop();
});

/** Fails with the agent's output if it died (the bugs this file pins killed it). */
function assertAlive(): void {
  if (agent.proc.proc.exitCode !== null || agent.proc.proc.signalCode !== null) {
    throw new Error(`the agent died:\n${agent.proc.output()}`);
  }
}

type Teardown = { teardown(fn: () => void): void };

/** A raw TCP connection to the agent; every wait is for bytes or the close, with a deadline that fails the test. */
class Raw {
  private received = '';
  private closed = false;
  private error = '';
  private readonly waiters = new Set<() => void>();

  private constructor(private readonly socket: net.Socket) {
    // latin1: one character per byte, so the bytes survive exactly.
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => { this.received += text; this.notify(); });
    socket.on('error', (err) => { this.error = err.message; });
    socket.on('close', () => { this.closed = true; this.notify(); });
  }

  /** Connects to the agent; the connection is destroyed when test `t` ends, passed or not (else the caller destroys it). */
  static open(t?: Teardown): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(agent.port, '127.0.0.1');
      t?.teardown(() => socket.destroy());
      socket.once('connect', () => resolve(new Raw(socket)));
      socket.once('error', reject);
    });
  }

  text(): string { return this.received; }
  get isClosed(): boolean { return this.closed; }

  /** Writes and waits until the bytes are handed to the kernel (drain), so a flood cannot pile up here. */
  write(bytes: string): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed || this.socket.destroyed) return resolve();
      if (this.socket.write(bytes, 'latin1')) resolve();
      else {
        const done = () => { this.socket.off('drain', done); this.socket.off('close', done); resolve(); };
        this.socket.once('drain', done);
        this.socket.once('close', done);
      }
    });
  }

  /** Stops reading: what arrives stays in the kernel, as with a client that sends all before it reads. */
  pause(): void { this.socket.pause(); }
  resume(): void { this.socket.resume(); }

  /** Half-close: the agent sees the client's FIN. */
  end(): void { this.socket.end(); }
  destroy(): void { this.socket.destroy(); }

  /** Resolves once `predicate` holds for what has been received; rejects if the agent closes first. */
  until(predicate: (text: string) => boolean, what: string, timeoutMs = WAIT_MS): Promise<string> {
    return this.wait(() => predicate(this.received), what, timeoutMs, true);
  }

  /** Resolves with everything received once the agent has closed the connection. */
  closedByAgent(timeoutMs = WAIT_MS): Promise<string> {
    return this.wait(() => this.closed, 'close by the agent', timeoutMs, false);
  }

  private wait(done: () => boolean, what: string, timeoutMs: number, closeFails: boolean): Promise<string> {
    return new Promise((resolve, reject) => {
      const settle = () => {
        if (done()) { finish(); resolve(this.received); } else if (closeFails && this.closed) {
          finish();
          reject(new Error(`connection closed${this.error ? ` (${this.error})` : ''} before ${what}; received ${JSON.stringify(this.received)}`));
        }
      };
      const finish = () => { clearTimeout(timer); this.waiters.delete(settle); };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no ${what} within ${timeoutMs} ms; received ${JSON.stringify(this.received)}`));
      }, timeoutMs);
      this.waiters.add(settle);
      settle();
    });
  }

  private notify(): void { for (const settle of [...this.waiters]) settle(); }
}

function frame(id: number, event: string, data: string): string {
  return `id: ${id}\nevent: ${event}\ndata: ${data}\n\n`;
}

/** Writes /lain/config/<key> and waits until the agent serves it (so a stream opened next starts from it). */
async function putConfig(key: string, value: string): Promise<void> {
  await etcd.put(`/lain/config/${key}`).value(value);
  const url = `${agent.base}/v2/configwatcher?target=${key}`;
  const body = JSON.stringify({ [key]: value });
  await waitFor(async () => (await httpGet(url)).body === body, { timeoutMs: WAIT_MS, message: `the agent to serve ${body}` });
}

/** A complete GET /version answer at the start of `text`, or undefined. */
function versionAnswerLength(text: string): number | undefined {
  const m = VERSION_RESPONSE.exec(text);
  if (!m) return undefined;
  const length = m[0].length + Number(m[1]);
  return text.length >= length ? length : undefined;
}

const GET_VERSION = 'GET /version HTTP/1.1\r\nHost: x\r\n\r\n';
const watchRequest = (target: string) => `GET /v2/configwatcher?target=${target}&watch=1 HTTP/1.1\r\nHost: x\r\n\r\n`;

test.serial('a GET pipelined after a watch is never answered; the stream goes on with its events', async (t) => {
  await putConfig('pipe-a', 'one');
  const conn = await Raw.open(t);
  await conn.write(watchRequest('pipe-a') + GET_VERSION);
  const init = STREAM_HEADER + frame(1, 'init', '{"pipe-a":"one"}');
  await conn.until((s) => s.length >= init.length, 'the init event');
  await putConfig('pipe-a', 'two');
  const expected = init + frame(2, 'update', '{"pipe-a":"two"}');
  const text = await conn.until((s) => s.length >= expected.length, 'the update event');
  t.is(text, expected, 'nothing but the stream on the connection');
  // Nor is the GET read at all (Go never reads it): the witness, this stream and the /debug request itself.
  const debug = JSON.parse((await httpGet(`${agent.base}/debug`)).body) as { connections: number };
  t.is(debug.connections, 3);
  conn.destroy();
  assertAlive();
});

test.serial('a GET written on a watch\'s connection later is never answered either', async (t) => {
  await putConfig('pipe-b', 'one');
  const conn = await Raw.open(t);
  await conn.write(watchRequest('pipe-b'));
  const init = STREAM_HEADER + frame(1, 'init', '{"pipe-b":"one"}');
  await conn.until((s) => s.length >= init.length, 'the init event');
  await conn.write(GET_VERSION + 'GET /v2/configwatcher?target=domain HTTP/1.1\r\n\r\n');
  await putConfig('pipe-b', 'two');
  const expected = init + frame(2, 'update', '{"pipe-b":"two"}');
  t.is(await conn.until((s) => s.length >= expected.length, 'the update event'), expected);
  conn.destroy();
  assertAlive();
});

test.serial('a watch pipelined after a GET starts once the GET is answered', async (t) => {
  await putConfig('pipe-c', 'one');
  const conn = await Raw.open(t);
  await conn.write(GET_VERSION + watchRequest('pipe-c') + GET_VERSION);
  const answered = versionAnswerLength(await conn.until((s) => versionAnswerLength(s) !== undefined, 'the /version answer'))!;
  const init = STREAM_HEADER + frame(1, 'init', '{"pipe-c":"one"}');
  await conn.until((s) => s.length >= answered + init.length, 'the init event');
  await putConfig('pipe-c', 'two');
  const expected = init + frame(2, 'update', '{"pipe-c":"two"}');
  const text = await conn.until((s) => s.length >= answered + expected.length, 'the update event');
  t.is(text.slice(answered), expected, 'the stream right after the answer, and nothing else');
  conn.destroy();
  assertAlive();
});

test.serial('a watch pipelined after a slow answer (/metrics) waits for it', async (t) => {
  const conn = await Raw.open(t);
  await conn.write(`GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n${watchRequest('domain')}`);
  const expected = STREAM_HEADER + frame(1, 'init', '{"domain":"lain.local"}');
  const text = await conn.until((s) => s.endsWith(expected), 'the init event after the metrics');
  const [metrics] = splitResponses(text.slice(0, -expected.length), false).responses;
  t.is(metrics?.status, 200);
  t.regex(metrics?.body ?? '', /^# HELP /);
  conn.destroy();
  assertAlive();
});

test.serial('a watch on a keep-alive connection after an answered GET works', async (t) => {
  const conn = await Raw.open(t);
  await conn.write(GET_VERSION);
  const answered = (await conn.until((s) => versionAnswerLength(s) !== undefined, 'the /version answer')).length;
  t.regex(conn.text(), /^HTTP\/1\.1 200 OK\r\n/);
  await conn.write(watchRequest('domain'));
  const expected = STREAM_HEADER + frame(1, 'init', '{"domain":"lain.local"}');
  const text = await conn.until((s) => s.length - answered >= expected.length, 'the init event');
  t.is(text.slice(answered), expected);
  conn.destroy();
  assertAlive();
});

test.serial('an error stream and a POST watch own their connection too: their bytes, then close', async (t) => {
  const cases: Array<[string, string]> = [
    // The original refuses watch on localspecquery; a secret configwatcher target from a container IP would be an auth error event the same way.
    [`GET /v2/localspecquery?watch=1 HTTP/1.1\r\nHost: x\r\n\r\n${GET_VERSION}`, STREAM_HEADER + frame(0, 'error', '/localspecquery do not support watch action')],
    [`POST /v2/configwatcher?target=domain&watch=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n${GET_VERSION}`, STREAM_HEADER],
    // After a GET: the error stream waits for its answer.
    [`${GET_VERSION}GET /v2/localspecquery?watch=1 HTTP/1.1\r\nHost: x\r\n\r\n${GET_VERSION}`, STREAM_HEADER + frame(0, 'error', '/localspecquery do not support watch action')],
  ];
  for (const [request, expected] of cases) {
    const conn = await Raw.open(t);
    await conn.write(request);
    const text = await conn.closedByAgent();
    const answered = request.startsWith(GET_VERSION) ? versionAnswerLength(text) ?? 0 : 0;
    t.is(text.slice(answered), expected, JSON.stringify(request));
  }
  assertAlive();
});

test.serial('garbage pipelined after a watch is never answered: no 400 inside the stream', async (t) => {
  await putConfig('pipe-d', 'one');
  const conn = await Raw.open(t);
  await conn.write(watchRequest('pipe-d') + '\x00\x01\x02 not http at all\r\n\r\n');
  const init = STREAM_HEADER + frame(1, 'init', '{"pipe-d":"one"}');
  await conn.until((s) => s.length >= init.length, 'the init event');
  await conn.write('GET /ver' + 'x'.repeat(20_000) + '\r\n'); // an over-long head after it: no 431 either
  await putConfig('pipe-d', 'two');
  const expected = init + frame(2, 'update', '{"pipe-d":"two"}');
  t.is(await conn.until((s) => s.length >= expected.length, 'the update event'), expected);
  conn.destroy();
  assertAlive();
});

test.serial('pipelined GETs are answered in order, like Go', async (t) => {
  const paths = ['/v2/configwatcher?target=domain', '/v2/configwatcher?target=vip', '/nosuch', '/v2/configwatcher?target=nosuch', '/version', '/v2/configwatcher?target=dns_port'];
  const expected = await Promise.all(paths.map(async (path) => pick(await httpGet(`${agent.base}${path}`))));
  t.deepEqual(expected.map(([status]) => status), [200, 200, 404, 200, 200, 200]);
  const conn = await Raw.open(t);
  await conn.write(paths.map((path, i) => `GET ${path} HTTP/1.1\r\nHost: x\r\n${i === paths.length - 1 ? 'Connection: close\r\n' : ''}\r\n`).join(''));
  t.deepEqual(splitResponses(await conn.closedByAgent(), false).responses.map(pick), expected);
  assertAlive();
});

test.serial('absolute-form targets route by their path, as Go does', async (t) => {
  const cases: Array<[string, number, string]> = [
    ['http://x/v2/configwatcher?target=domain', 200, '{"domain":"lain.local"}'],
    ['HTTP://lainlet.lain:9001/v2/configwatcher/?target=domain', 200, '{"domain":"lain.local"}'],
    ['http://x/version', 200, (await httpGet(`${agent.base}/version`)).body],
    ['http://x', 404, '404 not found'],
    ['http://x/nosuch', 404, '404 not found'],
  ];
  for (const [target, status, body] of cases) {
    const res = await rawGet(t, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    t.deepEqual([res.status, res.body], [status, body], target);
  }
  const conn = await Raw.open(t);
  await conn.write('GET http://x/v2/configwatcher?target=domain&watch=1 HTTP/1.1\r\nHost: x\r\n\r\n');
  const expected = STREAM_HEADER + frame(1, 'init', '{"domain":"lain.local"}');
  t.is(await conn.until((s) => s.length >= expected.length, 'the init event'), expected);
  conn.destroy();
  assertAlive();
});

test.serial('escapes in the path are decoded like Go; a bad one is a 400 and the connection closes', async (t) => {
  t.deepEqual(pick(await rawGet(t, 'GET /v2/config%77atcher?target=domain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')), [200, '{"domain":"lain.local"}']);
  t.deepEqual(pick(await rawGet(t, 'GET /v2/configwatcher%2F?target=domain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')), [200, '{"domain":"lain.local"}']);
  t.deepEqual(pick(await rawGet(t, 'GET /version%3F HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')), [404, '404 not found'], 'a decoded "?" is part of the path');
  const conn = await Raw.open(t);
  await conn.write(`${GET_VERSION}GET /v2/%zz HTTP/1.1\r\nHost: x\r\n\r\n${GET_VERSION}`);
  const text = await conn.closedByAgent();
  t.is(text.slice(versionAnswerLength(text)), BAD_REQUEST, 'the answer before it, the 400, then close');
  assertAlive();
});

test.serial('CONNECT is routed like any method (Go: 404), then the connection closes', async (t) => {
  for (const [request, status, body] of [
    ['CONNECT lainlet.lain:443 HTTP/1.1\r\nHost: lainlet.lain:443\r\n\r\n', 404, '404 not found'],
    ['CONNECT 10.0.0.1:9001 HTTP/1.1\r\n\r\n', 404, '404 not found'],
    ['CONNECT /version HTTP/1.1\r\n\r\n', 404, '404 page not found\n'],
  ] as const) {
    const conn = await Raw.open(t);
    await conn.write(request);
    const [answer] = splitResponses(await conn.closedByAgent(), false).responses;
    t.deepEqual([answer?.status, answer?.body], [status, body], request);
  }
  const conn = await Raw.open(t);
  await conn.write('CONNECT /v2/configwatcher?target=domain&watch=1 HTTP/1.1\r\n\r\n');
  t.is(await conn.closedByAgent(), STREAM_HEADER, 'the original hijacks a watch of any method: header block, close');
  assertAlive();
});

test.serial('an over-long request line or header block: 431, which the client reads even while it is still sending', async (t) => {
  const heads = [
    `GET /version?${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    `GET /version HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`,
    `GET /version HTTP/1.1\r\nHost: x\r\n${'X-Many: c\r\n'.repeat(3000)}\r\n`,
  ];
  for (const head of heads) {
    const conn = await Raw.open(t);
    await conn.write(head);
    t.is(await conn.closedByAgent(), TOO_LARGE, head.slice(0, 40));
  }
  // A megabyte of header from a client that reads only once it has sent it all: the agent
  // answers after 16 KiB, long before the client is done. Closing then with unread input would
  // make the kernel reset the connection and drop the 431 before the client reads it.
  const conn = await Raw.open(t);
  conn.pause();
  await conn.write('GET /version HTTP/1.1\r\nHost: x\r\nX-Flood: ');
  for (let sent = 0; sent < 1 << 20 && !conn.isClosed; sent += 16_384) await conn.write('d'.repeat(16_384));
  conn.resume();
  t.is(await conn.closedByAgent(), TOO_LARGE);
  assertAlive();
});

test.serial('what cannot be parsed gets Go\'s 400 after the answers before it, then the connection closes', async (t) => {
  const malformed = [
    '\x00\x01\x02\x03\r\n\r\n',
    'GET / HTTP/1.1 \r\nHost: x\r\n\r\n',
    'GET /version HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n',
    'GET /version HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n',
    'GET v2/configwatcher?target=domain HTTP/1.1\r\nHost: x\r\n\r\n',
    'GET /version HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
  ];
  for (const bytes of malformed) {
    for (const before of ['', GET_VERSION]) {
      const conn = await Raw.open(t);
      await conn.write(before + bytes + GET_VERSION);
      const text = await conn.closedByAgent();
      t.is(text.slice(before ? versionAnswerLength(text) : 0), BAD_REQUEST, JSON.stringify(before + bytes));
    }
  }
  // After an answer that takes a while (/metrics renders asynchronously): still after it.
  const conn = await Raw.open(t);
  await conn.write(`GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n${malformed[0]}`);
  const text = await conn.closedByAgent();
  t.true(text.endsWith(BAD_REQUEST), text.slice(-200));
  const [metrics] = splitResponses(text.slice(0, -BAD_REQUEST.length), false).responses;
  t.regex(metrics?.body ?? '', /^# HELP /);
  assertAlive();
});

test.serial('Go serves HTTP/1.x only: HTTP/2.0 and versionless (0.9) request lines get 400', async (t) => {
  for (const [line, answer] of [
    ['GET /version HTTP/2.0', BAD_REQUEST.replace(/400 Bad Request$/, '400 Bad Request: unsupported protocol version')],
    ['GET /version', BAD_REQUEST],
  ]) {
    const conn = await Raw.open(t);
    await conn.write(`${line}\r\nHost: x\r\n\r\n`);
    t.is(await conn.closedByAgent(), answer, line);
  }
  assertAlive();
});

test.serial('Go\'s server-level answers: no unasked 100 Continue, 417 and close for another Expect, 200 for OPTIONS *', async (t) => {
  // Go sends 100 Continue only when a handler reads the body; lainlet's never do. The answer
  // comes whole (node wrote the 100 between a queued answer's head and body), then close: the
  // body the client holds back is never read (Go closes then too).
  let conn = await Raw.open(t);
  await conn.write(`${GET_VERSION}GET /v2/configwatcher?target=domain HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n`);
  let answers = splitResponses(await conn.closedByAgent(), false).responses;
  t.deepEqual(answers.map(pick), [[200, (await httpGet(`${agent.base}/version`)).body], [200, '{"domain":"lain.local"}']]);
  conn = await Raw.open(t);
  await conn.write(`GET /version HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\r\n${GET_VERSION}`);
  answers = splitResponses(await conn.closedByAgent(), false).responses;
  t.deepEqual(answers.map((a) => [a.status, a.headers.get('connection')]), [[417, 'close']]);
  t.deepEqual(pick(await rawGet(t, 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')), [200, '']);
  assertAlive();
});

test.serial('heartbeat periods longer than a timer holds never flood; "+1" is 1 s, like strconv.Atoi', async (t) => {
  const huge = ['2147484', '9223372036854775807', '9223372036854775808', '99999999999999999999'];
  const quiet = await Promise.all(huge.map((hb) => openStream(`${agent.base}/v2/configwatcher?target=domain&watch=1&heartbeat=${hb}`)));
  for (const s of quiet) await s.waitForEvents(1, WAIT_MS);
  // Both must beat within a few seconds; a flooding stream would have sent hundreds meanwhile.
  const beating = await Promise.all(['1', '%2B1'].map((hb) => openStream(`${agent.base}/v2/configwatcher?target=domain&watch=1&heartbeat=${hb}`)));
  for (const s of beating) await s.waitFor((e) => e.event === 'heartbeat', WAIT_MS);
  huge.forEach((hb, i) => t.deepEqual(quiet[i].events.map((e) => e.event), ['init'], `heartbeat=${hb}`));
  t.notRegex(agent.proc.output(), /TimeoutOverflowWarning/);
  for (const s of [...quiet, ...beating]) s.close();
  assertAlive();
});

// ---------------------------------------------------------------------------
// Seeded fuzz pass
// ---------------------------------------------------------------------------

/** FUZZ_SEED=<n> replays a failing run; the seed is in every failure message. */
const FUZZ_SEED = Number(process.env.FUZZ_SEED ?? 0x5eed_1a1e);
const FUZZ_CASES = 3000;
const FUZZ_PARALLEL = 4;
/** Statuses a client may see: answers (200, 400/500 from the API, 404s, 503), node's 100/417, and the error answers. */
const ALLOWED_STATUSES = new Set([100, 200, 400, 404, 408, 417, 431, 500, 503]);

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface FuzzCase {
  bytes: string;
  /** For a pipeline of well-formed requests only: how many final answers it gets (streams count). */
  answers?: number;
}

/**
 * A fuzz case: random bytes (1 in 10), or a pipeline of 1–4 requests. Each request is
 * well-formed most of the time; otherwise one of its parts is bad (method, target, version,
 * a header, line ends) or a byte of it is flipped, dropped or inserted.
 */
function fuzzCase(random: () => number): FuzzCase {
  const int = (n: number) => Math.floor(random() * n);
  const chance = (p: number) => random() < p;
  const pickOne = <T>(items: readonly T[]): T => items[int(items.length)];
  const bytes = (n: number) => Array.from({ length: n }, () => String.fromCharCode(int(256))).join('');
  if (chance(0.1)) return { bytes: bytes(int(300)) };
  const methods = ['GET', 'GET', 'GET', 'GET', 'HEAD', 'POST', 'PUT', 'OPTIONS', 'DELETE', 'CONNECT'];
  const badMethods = ['get', 'G ET', 'FOO', '', 'PRI', bytes(3)];
  const targets = [
    '/version', '/version/', '/debug', '/v2/configwatcher?target=domain', '/v2/configwatcher?target=domain&watch=1',
    '/v2/configwatcher?target=fuzz&watch=1&heartbeat=1', '/v2/coreinfowatcher?watch=yes', '/v2/localspecquery?watch=1',
    '/v2/procwatcher?appname=hello', '/v2/webrouter/webprocs', '/nosuch', '//v2/configwatcher', '*', 'http://x/version',
    'http://x/v2/configwatcher?target=domain&watch=1', '/v2/config%77atcher?target=vip', '/v2/configwatcher?target=%zz',
    '/v2/localspecquery', '/appname?ip=1.2.3.4',
  ];
  const badTargets = ['/v2/%zz', 'v2/debug', 'x:443', '/\x7f', `/${bytes(4)}`, '/v2/configwatcher?target=' + 'a'.repeat(17_000)];
  const badVersions = ['HTTP/2.0', 'HTTP/1.2', 'http/1.1', '', 'HTTP/1.1 ', 'HTTP/0.9'];
  const badHeaders = [
    'Content-Length: -1', 'Content-Length: 3\r\nContent-Length: 4', 'Transfer-Encoding: gzip', 'Expect: foo',
    'X-Long: ' + 'l'.repeat(17_000), `X-Bytes: ${bytes(8)}`, `${bytes(5)}: v`, ' folded', 'NoColon',
  ];
  let answers: number | undefined = 0;
  let open = true;
  const request = () => {
    const method = chance(0.1) ? pickOne(badMethods) : pickOne(methods);
    const target = chance(0.1) ? pickOne(badTargets) : pickOne(targets);
    const version = chance(0.1) ? pickOne(badVersions) : chance(0.8) ? 'HTTP/1.1' : 'HTTP/1.0';
    const headers: string[] = [];
    if (chance(0.7)) headers.push('Host: x');
    const connection = chance(0.3) ? pickOne(['close', 'keep-alive', 'Upgrade']) : undefined;
    if (connection) headers.push(`Connection: ${connection}${connection === 'Upgrade' ? '\r\nUpgrade: websocket' : ''}`);
    const expect100 = chance(0.15);
    if (expect100) headers.push('Expect: 100-continue');
    const body = chance(0.2) ? pickOne(['length', 'chunked']) : undefined;
    if (body === 'length') headers.push('Content-Length: 3');
    if (body === 'chunked') headers.push('Transfer-Encoding: chunked');
    const bad = chance(0.1);
    if (bad) headers.splice(int(headers.length + 1), 0, pickOne(badHeaders));
    const eol = chance(0.05) ? '\n' : '\r\n';
    let text = [`${method} ${target} ${version}`, ...headers].join(eol) + eol + eol;
    if (body) text += body === 'length' ? pickOne(['abc', 'abc', 'ab', 'abcd']) : pickOne(['3\r\nabc\r\n0\r\n\r\n', '0\r\n\r\n', 'zz\r\n']);
    const mutated = chance(0.05);
    if (mutated) {
      const at = int(text.length);
      const kind = int(3);
      text = text.slice(0, at) + (kind === 1 ? '' : String.fromCharCode(int(256))) + text.slice(kind === 0 ? at + 1 : at);
    }
    // The answer count is only predicted for well-formed pipelines (Go's reading of them), and
    // not past an Upgrade request: node's parser stops after one (llhttp pauses on upgrade) and
    // drops the rest of that read, where Go would answer it — a node limit, see the report.
    const wellFormed = !mutated && !bad && eol === '\r\n' && methods.includes(method) && targets.includes(target)
      && ['HTTP/1.1', 'HTTP/1.0'].includes(version) && !/ab$|abcd$|zz\r\n$/.test(text) && connection !== 'Upgrade';
    if (!wellFormed) answers = undefined;
    if (answers !== undefined && open) {
      answers++;
      const watch = target.includes('watch=') && (target.startsWith('/v2/') || target.startsWith('http://x/v2/'));
      const keepAlive = connection === 'keep-alive' || (version === 'HTTP/1.1' && connection !== 'close');
      // What ends a connection: a watch (any method), CONNECT, Connection: close, HTTP/1.0
      // without keep-alive, and an unanswered 100-continue (Go closes too when a body is unread).
      if (watch || method === 'CONNECT' || !keepAlive || (expect100 && version === 'HTTP/1.1')) open = false;
    }
    return text;
  };
  let pipeline = '';
  for (let n = 1 + int(4); n > 0; n--) pipeline += request();
  return { bytes: pipeline, answers };
}

interface Response { status: number; headers: Map<string, string>; body: string }

/**
 * Splits what a connection received into HTTP responses (and the event-stream body that may end
 * it); throws on anything else. `mayBeHead`: a Content-Length with no body may be a HEAD answer.
 */
function splitResponses(text: string, mayBeHead: boolean): { responses: Response[]; stream?: string } {
  const responses: Response[] = [];
  let at = 0;
  while (at < text.length) {
    const status = /^HTTP\/1\.1 (\d{3}) [^\r\n]*\r\n/.exec(text.slice(at, at + 100));
    if (!status) throw new Error(`not a response at byte ${at}`);
    const headEnd = text.indexOf('\r\n\r\n', at);
    if (headEnd < 0) throw new Error(`incomplete head at byte ${at}`);
    const headers = new Map(text.slice(at, headEnd).split('\r\n').slice(1).map((line) => {
      const colon = line.indexOf(':');
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()] as [string, string];
    }));
    at = headEnd + 4;
    const code = Number(status[1]);
    const length = headers.get('content-length');
    let body = '';
    if (code >= 100 && code < 200) {
      // An interim answer (100 Continue): the real one follows.
    } else if (headers.get('content-type') === 'text/event-stream' && length === undefined) {
      const stream = text.slice(at);
      if (!/^(?:id: \d+\nevent: [a-z]+\n(?:data: [^\n]*\n)*\n)*$/.test(stream)) throw new Error(`not only events after the stream header: ${JSON.stringify(stream.slice(0, 300))}`);
      responses.push({ status: code, headers, body: '' });
      return { responses, stream };
    } else if (headers.get('transfer-encoding') === 'chunked') {
      for (;;) {
        const lineEnd = text.indexOf('\r\n', at);
        const size = lineEnd < 0 ? NaN : parseInt(text.slice(at, lineEnd), 16);
        if (!Number.isFinite(size)) throw new Error(`bad chunk at byte ${at}`);
        body += text.slice(lineEnd + 2, lineEnd + 2 + size);
        at = lineEnd + 2 + size + 2;
        if (size === 0) break;
      }
    } else if (length !== undefined) {
      const n = Number(length);
      const bodiless = mayBeHead && n > 0 && (at === text.length || text.startsWith('HTTP/1.1 ', at));
      if (!bodiless) {
        if (text.length < at + n) throw new Error(`body shorter than Content-Length ${n} at byte ${at}`);
        body = text.slice(at, at + n);
        at += n;
      }
    } else {
      body = text.slice(at);
      at = text.length;
    }
    responses.push({ status: code, headers, body });
  }
  return { responses };
}

/** The status and body of the one answer to `request` on a fresh connection the agent closes. */
async function rawGet(t: Teardown, request: string): Promise<Response> {
  const conn = await Raw.open(t);
  await conn.write(request);
  const [response] = splitResponses(await conn.closedByAgent(), request.startsWith('HEAD')).responses;
  if (!response) throw new Error(`no answer to ${JSON.stringify(request)}`);
  return response;
}

function pick(res: { status: number; body: string }): [number, string] {
  return [res.status, res.body];
}

/**
 * One fuzz case: its bytes, the client's FIN; the agent must answer well-formed, nothing after
 * an error answer, every well-formed request up to what ends the connection, and close.
 */
async function runFuzzCase({ bytes, answers }: FuzzCase): Promise<string | undefined> {
  assertAlive();
  const conn = await Raw.open();
  await conn.write(bytes);
  conn.end();
  let text: string;
  try {
    text = await conn.closedByAgent();
  } catch (err) {
    return (err as Error).message;
  } finally {
    conn.destroy();
  }
  try {
    const { responses } = splitResponses(text, bytes.includes('HEAD'));
    for (const [i, r] of responses.entries()) {
      if (!ALLOWED_STATUSES.has(r.status)) return `status ${r.status}`;
      if (r.headers.get('connection') === 'close' && i !== responses.length - 1) return `an answer after one with Connection: close`;
      if ([408, 417, 431].includes(r.status) && r.headers.get('connection') !== 'close') return `a ${r.status} on a connection kept open`;
    }
    const final = responses.filter((r) => r.status >= 200).length;
    if (answers !== undefined && final !== answers) return `${final} answers to ${answers} well-formed requests; received ${JSON.stringify(text.slice(0, 600))}`;
  } catch (err) {
    return `${(err as Error).message}; received ${JSON.stringify(text.slice(0, 600))}`;
  }
  return undefined;
}

test.serial(`fuzz: ${FUZZ_CASES} seeded random requests, pipelines and bytes get well-formed answers and a closed connection`, async (t) => {
  const random = mulberry32(FUZZ_SEED);
  const cases = Array.from({ length: FUZZ_CASES }, () => fuzzCase(random));
  const failures: string[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: FUZZ_PARALLEL }, async () => {
    while (next < cases.length && failures.length === 0) {
      const index = next++;
      const problem = await runFuzzCase(cases[index]);
      if (problem) failures.push(`FUZZ_SEED=${FUZZ_SEED} case ${index} ${JSON.stringify(cases[index].bytes.slice(0, 400))}: ${problem}`);
    }
  }));
  t.deepEqual(failures, [], `seed ${FUZZ_SEED}`);
  assertAlive();
});

test.serial('after all that, the agent serves, its first stream still gets events, and nothing leaked', async (t) => {
  assertAlive();
  const res = await httpGet(`${agent.base}/v2/configwatcher?target=domain`);
  t.deepEqual([res.status, res.body], [200, '{"domain":"lain.local"}']);
  await putConfig('witness', 'still here');
  const update = await witness.waitFor((e) => e.event === 'update', WAIT_MS);
  t.is(update.data, '{"witness":"still here"}');
  // Only the witness is open: every other stream and request ended with its connection.
  let last = '';
  await waitFor(async () => {
    const debug = JSON.parse((await httpGet(`${agent.base}/debug`)).body) as { connections: number; streams: { open: number } };
    last = `connections ${debug.connections}, streams ${debug.streams.open}`;
    return debug.streams.open === 1 && debug.connections === 2;
  }, { timeoutMs: WAIT_MS, message: 'the witness stream and this /debug request as the only connections' }).catch((err: Error) => {
    throw new Error(`${err.message} (last: ${last})`);
  });
  t.pass();
});
