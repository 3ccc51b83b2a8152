// The agent's HTTP server (node:http, not uWebSockets.js: the collectd plugin speaks HTTP/1.0,
// which uWebSockets.js never answers; DESIGN.md Data flow 8). Routing and HTTP details follow
// API.md §2: one trailing slash accepted, two different 404s, HEAD, watch on any value but
// "", "0" and "false", Go's FormValue for parameters, raw event streams.
//
// Connections follow Go's net/http, which reads a request only after the handler of the previous
// one has returned: pipelined requests are answered in order; a watch hijacks its connection
// and, since its handler never returns, nothing pipelined after it is ever read; a request
// node:http cannot parse is answered (400/431) after the ones before it, and the connection
// closes. node:http parses ahead instead, so the server takes the socket away from it for good
// (takeOver) wherever Go would stop reading.
import http from 'node:http';
import { createRequire } from 'node:module';
import net, { type Socket } from 'node:net';
import type { AnswerCache } from './api/answers.js';
import { parseQuery, routePath } from './api/endpoints/request.js';
import { normalizeIp } from './auth.js';
import { AGENT_DEFAULTS } from './defaults.js';
import type { Answer, ApiRequest, Endpoint } from './api/types.js';
import { STREAM_HEADER, endConnection, eventFrame, type StreamHub } from './streams.js';

export interface HttpOptions {
  endpoints: Endpoint[];
  answers: AnswerCache;
  streams: StreamHub;
  /** Non-null while the agent has no state: every /v2 request answers 503 with this reason. */
  notReadyReason: () => string | null;
  debug: () => unknown;
  version: string;
  /** Extra routes answered before the API (e.g. /metrics). */
  extraRoutes?: Record<string, () => Promise<{ status: number; contentType: string; body: string }>>;
  onRequest?: (path: string, status: number) => void;
}

const NOT_FOUND = '404 not found';
// Go sniffs every lainlet body as text/plain (API.md §2).
const TEXT_PLAIN_TYPE = 'text/plain; charset=utf-8';
const NOSNIFF = ['Content-Type', TEXT_PLAIN_TYPE, 'X-Content-Type-Options', 'nosniff'];
/**
 * Bodies up to this size are written as strings: node:http sends a string body in one write with
 * the head, a Buffer as a writev of two. Larger ones go as the answer's shared bytes (no copy).
 */
const STRING_BODY_MAX = 16 * 1024;
const PAGE_NOT_FOUND = '404 page not found\n';
/**
 * node's default (16 KiB for the request line and headers together). Go's is 1 MiB; no lainlet
 * client sends more than a few hundred bytes, and each connection may hold this much.
 */
const MAX_HEADER_BYTES = 16 * 1024;

// Go's answers to a request it cannot read (net/http server.go, conn.serve), then it closes.
const GO_ERROR_HEADERS = '\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n';
const BAD_REQUEST = `HTTP/1.1 400 Bad Request${GO_ERROR_HEADERS}400 Bad Request`;
const UNSUPPORTED_VERSION = `HTTP/1.1 400 Bad Request${GO_ERROR_HEADERS}400 Bad Request: unsupported protocol version`;
const HEADERS_TOO_LARGE = `HTTP/1.1 431 Request Header Fields Too Large${GO_ERROR_HEADERS}431 Request Header Fields Too Large`;
// Go has no header deadline at all (martini's plain ListenAndServe); this one is node's.
const REQUEST_TIMEOUT = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n';

/**
 * node:http's own helper for letting go of a connection's parser (what it does before 'upgrade'
 * and 'connect'): back to the pool, out of the server's connection list (headers timeout,
 * closeAllConnections), detached from the socket. _http_common is the undocumented module node's
 * http client and server share; freeParser(parser, req, socket) has not changed since node 0.x.
 */
const { freeParser } = createRequire(import.meta.url)('_http_common') as { freeParser: (parser: object, req: null, socket: Socket) => void };
/** The socket events node:http listens to on every connection (connectionListenerInternal, ServerResponse.assignSocket). */
const HTTP_SOCKET_EVENTS = ['data', 'end', 'close', 'drain', 'error', 'timeout', 'pause', 'resume'] as const;
/** What net.Socket listens to on itself (its 'end' handler): left in place when node:http's listeners go. */
const NET_OWN_LISTENERS = (() => {
  const probe = new net.Socket();
  const own = new Map(HTTP_SOCKET_EVENTS.map((event) => [event, probe.listeners(event)]));
  probe.destroy();
  return own;
})();

/** Set on a connection on which node:http's parser is no longer listened to: a watch or a closing error answer owns it. */
const TAKEN = Symbol('lainlet.taken');
/** On a connection with answers queued behind another (pipelining): their `done`s, not yet closed. */
const QUEUED = Symbol('lainlet.queued');
/** Marks the agent's own listeners on a socket node:http still has: takeOver leaves them. */
const AGENT_LISTENER = Symbol('lainlet.listener');
/** The peer's address, normalised (normalizeIp) on the connection's first request: keep-alive clients send many. */
const REMOTE_IP = Symbol('lainlet.remoteIp');
type Connection = Socket & { [TAKEN]?: true; [QUEUED]?: Set<() => void>; [REMOTE_IP]?: string; parser?: object | null; _httpMessage?: http.ServerResponse | null };
/** The query of a request without one: nothing to parse. */
const NO_PARAMS: ReadonlyMap<string, string> = new Map();

export function isWatch(value: string | undefined): boolean {
  return value !== undefined && value !== '' && value !== '0' && value !== 'false';
}

const INT64_MAX = '9223372036854775807';

/**
 * The heartbeat parameter in seconds, read like Go's strconv.Atoi on a 64-bit int: "+5" and
 * "0005" are 5; "5.0", " 5", "" and anything beyond int64 are errors. Errors and values ≤ 0
 * mean no heartbeat (0).
 */
export function heartbeatSeconds(value: string): number {
  // A "-" can only give an error or a value ≤ 0: no heartbeat either way.
  const m = /^\+?0*(\d*)$/.exec(value);
  if (!m || !/\d/.test(value)) return 0;
  const digits = m[1];
  if (digits.length > INT64_MAX.length || (digits.length === INT64_MAX.length && digits > INT64_MAX)) return 0;
  return Number(digits);
}

/**
 * Route path and raw query of a request target that is not plain origin form ("/path?query"
 * without "%"), as Go's url.ParseRequestURI reads it: absolute form ("http://host/path?q")
 * routes by its path, a scheme without "//" and "/" is opaque (path ""), "*" is a path of its
 * own, %XX in the path is decoded. undefined where Go answers 400: a bad escape, or neither a
 * scheme nor a leading "/".
 */
export function goTarget(target: string): { path: string; search: string } | undefined {
  if (target === '*') return { path: '*', search: '' };
  const q = target.indexOf('?');
  const search = q < 0 ? '' : target.slice(q + 1);
  let rest = q < 0 ? target : target.slice(0, q);
  if (!rest.startsWith('/')) {
    const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:/.exec(rest);
    if (!scheme) return undefined;
    rest = rest.slice(scheme[0].length);
    if (rest.startsWith('//')) {
      const slash = rest.indexOf('/', 2);
      rest = slash < 0 ? '' : rest.slice(slash);
    } else if (!rest.startsWith('/')) {
      return { path: '', search };
    }
  }
  if (rest.includes('%')) {
    if (/%(?![0-9A-Fa-f]{2})/.test(rest)) return undefined;
    rest = rest.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    // A decoded "?" belongs to the path: no route has one, and routePath would cut there.
    if (rest.includes('?')) return { path: rest, search };
  }
  return { path: routePath(rest), search };
}

/**
 * Go serves HTTP/1.x only; llhttp also reads "HTTP/2.0" and versionless (0.9) request lines,
 * which Go cannot parse at all. For a request whose major version is not 1.
 */
function versionError(req: http.IncomingMessage): string {
  return req.httpVersionMajor === 0 ? BAD_REQUEST : UNSUPPORTED_VERSION;
}

export class AgentHttp {
  readonly server: http.Server;
  private readonly routes = new Map<string, Endpoint>();
  /** Connections taken from node:http (streams, closing answers): close() ends them, node:http no longer knows them. */
  private readonly taken = new Set<Socket>();
  /** In-flight requests including open streams (the original's `connections`). */
  inFlight = 0;

  constructor(private readonly opts: HttpOptions) {
    for (const e of opts.endpoints) this.routes.set(e.path, e);
    this.server = http.createServer({ requireHostHeader: false, keepAliveTimeout: AGENT_DEFAULTS.httpKeepAliveMs, maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => this.handle(req, res));
    // Event streams live for days; only the request head has a deadline.
    this.server.requestTimeout = 0;
    this.server.headersTimeout = AGENT_DEFAULTS.httpHeadersTimeoutMs;
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.clientError(err, socket));
    // Expect: 100-continue — Go sends the 100 only when a handler reads the body, which lainlet's
    // never do. node would send it unasked, and for a pipelined request with a Buffer body it
    // writes the 100 between the answer's head and body.
    this.server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => this.handle(req, res));
    // An Expect other than 100-continue: Go answers 417 and closes; node would keep the connection.
    this.server.on('checkExpectation', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const socket = req.socket as Connection;
      if (socket[TAKEN]) return;
      socket[TAKEN] = true;
      this.plain(res, 'bad-request', 417, '', ['Connection', 'close']);
    });
    // node:http has already let go of a CONNECT's socket (as for 'upgrade'): routed like any method.
    this.server.on('connect', (req: http.IncomingMessage, socket: Socket) => this.connect(req, socket));
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: host || undefined, port }, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as { port: number }).port);
      });
    });
  }

  close(): Promise<void> {
    this.opts.streams.closeAll();
    for (const socket of this.taken) socket.destroy();
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    // Pipelined after a watch or after a bad request: Go never reads it, so it is never answered.
    if ((req.socket as Connection)[TAKEN]) return;
    const rawUrl = req.url ?? '/';
    let path: string;
    let search: string;
    if (rawUrl.charCodeAt(0) === 0x2f /* / */ && !rawUrl.includes('%')) {
      const q = rawUrl.indexOf('?');
      path = routePath(rawUrl);
      search = q < 0 ? '' : rawUrl.slice(q + 1);
    } else {
      const target = goTarget(rawUrl);
      if (!target) return this.badRequest(req, res, BAD_REQUEST);
      ({ path, search } = target);
    }
    if (req.httpVersionMajor !== 1) return this.badRequest(req, res, versionError(req));
    this.route(req, res, path, search);
  }

  /** Counts the request as in flight (the original's `connections`) until its answer closes, and answers it. */
  private route(req: http.IncomingMessage, res: http.ServerResponse, path: string, search: string): void {
    this.inFlight++;
    let counted = true;
    const done = () => { if (counted) { counted = false; this.inFlight--; } };
    res.once('close', done);
    if (!res.socket) this.countQueued(req.socket, res, done);
    this.answer(req, res, path, search, done);
  }

  /** Which kind of answer a request gets: an unknown path, a method the original refuses, the agent's own routes, or the API. */
  private answer(req: http.IncomingMessage, res: http.ServerResponse, path: string, search: string, done: () => void): void {
    const method = req.method ?? 'GET';
    // One route lookup: an API path is the common case, and the agent's own routes are not in `routes`.
    const endpoint = this.routes.get(path);
    if (endpoint === undefined && !this.isOwn(path)) {
      // Go's server-wide answer to "OPTIONS *" (globalOptionsHandler).
      if (path === '*' && method === 'OPTIONS') return this.plain(res, path, 200, '', []);
      return this.plain(res, 'unknown', 404, NOT_FOUND);
    }
    const params = search === '' ? NO_PARAMS : parseQuery(search);
    const watch = path.startsWith('/v2/') && isWatch(params.get('watch'));
    if (method !== 'GET' && method !== 'HEAD') {
      // The original hijacks before routing: header block, then close (API.md §2).
      if (watch) return this.hijack(req, res, done, (socket) => endConnection(socket, STREAM_HEADER));
      return this.plain(res, path, 404, PAGE_NOT_FOUND, NOSNIFF);
    }
    if (endpoint === undefined) return this.serveOwn(res, path);
    this.serveApi(req, res, endpoint, path, params, watch, done);
  }

  /** The agent's own routes: /version, /debug and the extra ones such as /metrics (isOwn says which). */
  private serveOwn(res: http.ServerResponse, path: string): void {
    if (path === '/version') return this.plain(res, path, 200, this.opts.version);
    if (path === '/debug') return this.plain(res, path, 200, JSON.stringify(this.opts.debug()));
    const extra = this.opts.extraRoutes![path];
    void extra().then((r) => this.plain(res, path, r.status, r.body, ['Content-Type', r.contentType]),
      (err: Error) => this.plain(res, path, 500, err.message));
  }

  /** A /v2 endpoint: 503 until the agent has a state, then its answer or its event stream. */
  private serveApi(
    req: http.IncomingMessage, res: http.ServerResponse, endpoint: Endpoint, path: string,
    params: ReadonlyMap<string, string>, watch: boolean, done: () => void,
  ): void {
    const notReady = this.opts.notReadyReason();
    // Not synced yet: 503 for GET and watch alike (API.md §11 item 8) — an empty init would
    // make webrouter or networkd drop their configuration.
    if (notReady !== null) return this.plain(res, path, 503, notReady);
    const socket = req.socket as Connection;
    const remoteIp = (socket[REMOTE_IP] ??= normalizeIp(socket.remoteAddress ?? ''));
    const apiReq: ApiRequest = { path, query: (name) => params.get(name) ?? '', remoteIp };
    let resolved: { scope: string } | Answer;
    try {
      resolved = endpoint.resolve(apiReq);
    } catch (err) {
      resolved = { status: 500, body: `internal error: ${(err as Error).message}` };
    }
    if (watch) return this.serveWatch(req, res, path, endpoint, resolved, params, done);
    if ('status' in resolved) return this.plain(res, path, resolved.status, resolved.body);
    const entry = this.opts.answers.entry(endpoint, resolved.scope);
    const bytes = this.opts.answers.encodedBody(entry);
    this.plain(res, path, entry.answer.status, bytes.length <= STRING_BODY_MAX ? entry.answer.body : bytes, undefined, bytes.length);
  }

  /** A watch: the stream's error event when the endpoint or the request refuses it, else the stream. */
  private serveWatch(
    req: http.IncomingMessage, res: http.ServerResponse, path: string, endpoint: Endpoint,
    resolved: { scope: string } | Answer, params: ReadonlyMap<string, string>, done: () => void,
  ): void {
    // The original refuses watch on localspecquery before any parameter or auth check.
    if (!endpoint.watchable) return this.streamError(req, res, `${path.replace('/v2', '')} do not support watch action`, done);
    if ('status' in resolved) return this.streamError(req, res, resolved.body, done);
    const heartbeat = heartbeatSeconds(params.get('heartbeat') ?? '');
    const scope = resolved.scope;
    this.opts.onRequest?.(path, 200);
    this.hijack(req, res, done, (socket) => this.opts.streams.open(socket, endpoint, scope, heartbeat));
  }

  /**
   * An answer queued behind another gets no 'close' if the connection ends before it is written,
   * and node:http's own cleanup of such requests goes when a CONNECT or takeOver takes its
   * listeners: one listener of the agent's per connection ends their count instead.
   */
  private countQueued(socket: Connection, res: http.ServerResponse, done: () => void): void {
    let queued = socket[QUEUED];
    if (!queued) {
      const dones = (queued = socket[QUEUED] = new Set());
      socket.once('close', Object.assign(() => { for (const d of dones) d(); }, { [AGENT_LISTENER]: true }));
    }
    queued.add(done);
    res.once('close', () => queued.delete(done));
  }

  private isKnown(path: string): boolean {
    return this.routes.has(path) || this.isOwn(path);
  }

  private isOwn(path: string): boolean {
    return path === '/debug' || path === '/version' || (this.opts.extraRoutes !== undefined && Object.hasOwn(this.opts.extraRoutes, path));
  }

  /**
   * One complete answer, text/plain unless `headers` says otherwise; the headers go in one flat
   * array (cheaper than setHeader calls). `length`: the body's byte length, when known.
   */
  private plain(res: http.ServerResponse, path: string, status: number, body: string | Buffer, headers?: readonly string[], length?: number): void {
    const bytes = String(length ?? (typeof body === 'string' ? Buffer.byteLength(body) : body.length));
    res.writeHead(status, headers === undefined ? ['Content-Type', TEXT_PLAIN_TYPE, 'Content-Length', bytes] : [...headers, 'Content-Length', bytes]);
    res.end(body);
    this.opts.onRequest?.(path, status);
  }

  /** A request Go rejects while reading it (bad target, HTTP/2.0): its 400 after the answers before it, then close. */
  private badRequest(req: http.IncomingMessage, res: http.ServerResponse, answer: string): void {
    (req.socket as Connection)[TAKEN] = true;
    this.opts.onRequest?.('bad-request', 400);
    this.afterEarlierAnswers(res, (socket) => endConnection(socket, answer));
  }

  /**
   * The connection becomes the watch's (Go's Hijack). node:http may still be writing answers to
   * requests before this one, and parses all the bytes of a read at once, so it emits what the
   * client pipelined after this request before the parser returns. So: later requests are
   * dropped from now on (TAKEN), and once the earlier answers are out and the parser has
   * returned, node:http lets go of the socket and `start` gets it.
   */
  private hijack(req: http.IncomingMessage, res: http.ServerResponse, done: () => void, start: (socket: Socket) => void): void {
    (req.socket as Connection)[TAKEN] = true;
    this.afterEarlierAnswers(res, (conn) => {
      conn.once('close', done);
      start(conn);
    });
  }

  /**
   * Runs `then` on the socket once node:http has written every answer before `res` on it and
   * `res` is the one assigned to the socket — unless the connection closes first — with
   * node:http's listeners and parser gone (takeOver).
   */
  private afterEarlierAnswers(res: http.ServerResponse, then: (socket: Socket) => void): void {
    const run = () => setImmediate(() => {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- it widens Socket to see node's _httpMessage
      const socket = res.socket as Connection | null;
      if (!socket || socket.destroyed) return;
      if (socket._httpMessage === res) res.detachSocket(socket);
      this.takeOver(socket);
      then(socket);
    });
    // res.socket is set when node:http assigns the socket to this response: at once if nothing
    // was in flight, else when the previous answer has finished ('socket').
    if (res.socket) run();
    else res.once('socket', run);
  }

  /**
   * Takes a connection away from node:http for good, the way node:http itself hands a socket
   * to an 'upgrade' listener: its listeners off the socket (net.Socket's own and the agent's
   * stay), its parser freed (it may hold pipelined bytes; they are dropped), no timeouts. Only
   * from setImmediate: the parser must not be executing, and a nextTick is no guarantee of that
   * (ticks run inside its body callbacks). What the client sends from then on is read and
   * dropped, so its close is noticed; its FIN ends the connection, as node:http did.
   */
  private takeOver(socket: Connection): void {
    for (const event of HTTP_SOCKET_EVENTS) {
      const own = NET_OWN_LISTENERS.get(event)!;
      for (const listener of socket.listeners(event)) {
        if (!own.includes(listener) && !(AGENT_LISTENER in listener)) socket.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
    if (socket.parser) freeParser(socket.parser, null, socket);
    this.own(socket);
    socket.on('end', () => socket.end());
  }

  /** Listeners every connection the agent owns needs: errors close it, close forgets it; reading on. */
  private own(socket: Socket): void {
    socket.setTimeout(0);
    socket.on('error', () => socket.destroy());
    this.taken.add(socket);
    socket.once('close', () => this.taken.delete(socket));
    socket.resume();
  }

  private streamError(req: http.IncomingMessage, res: http.ServerResponse, message: string, done: () => void): void {
    this.opts.onRequest?.('stream-error', 200);
    this.hijack(req, res, done, (socket) => endConnection(socket, STREAM_HEADER + eventFrame(0, 'error', message)));
  }

  /**
   * What node:http could not parse (or a socket error): Go answers 400 or 431 after the requests
   * before it, and closes. Ignored on a connection a watch owns: the parser choked on bytes
   * pipelined after the watch, which Go would never read.
   */
  private clientError(err: NodeJS.ErrnoException, socket: Connection): void {
    if (socket[TAKEN]) return;
    socket[TAKEN] = true;
    const code = err.code ?? '';
    // Data after a "Connection: close" request: Go closes after that answer and reads nothing
    // more; node:http closes after it too.
    if (code === 'HPE_CLOSED_CONNECTION') return;
    if (!code.startsWith('HPE_') && code !== 'ERR_HTTP_REQUEST_TIMEOUT') {
      socket.destroy();
      return;
    }
    const [status, answer] = code === 'HPE_HEADER_OVERFLOW' ? [431, HEADERS_TOO_LARGE] : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, REQUEST_TIMEOUT] : [400, BAD_REQUEST];
    this.opts.onRequest?.('bad-request', status);
    this.whenAnswered(socket, () => {
      if (socket.destroyed || !socket.writable) return;
      this.takeOver(socket);
      endConnection(socket, answer);
    });
  }

  /**
   * Calls `then` (from setImmediate: outside the parser, see takeOver) once node:http has written
   * every answer it owes on the connection: the one in flight (its socket._httpMessage), then
   * each queued behind it, which node:http assigns in turn.
   */
  private whenAnswered(socket: Connection, then: () => void): void {
    const inFlight = socket._httpMessage;
    if (!inFlight || inFlight.writableFinished) {
      setImmediate(then);
      return;
    }
    // node:http's own 'finish' listener (added first) has assigned the next answer by then.
    inFlight.once('finish', () => this.whenAnswered(socket, then));
  }

  /**
   * CONNECT: node:http has already let go of the socket (its 'upgrade' path: listeners off,
   * parser freed). Go routes it like any other method — "host:port" has the path "", so 404 —
   * after the answers before it, and so does the agent; then it closes (the client wanted a
   * tunnel, not keep-alive). Pipelined after a watch or a bad request, it is never answered.
   */
  private connect(req: http.IncomingMessage, socket: Connection): void {
    // node:http removed its error listener with the rest; an error must not go unheard.
    socket.on('error', () => socket.destroy());
    if (socket[TAKEN]) return;
    socket[TAKEN] = true;
    const answer = this.connectAnswer(req);
    this.opts.onRequest?.('connect', Number(answer.slice(9, 12)));
    this.whenAnswered(socket, () => {
      if (socket.destroyed) return;
      this.takeOver(socket);
      endConnection(socket, answer);
    });
  }

  /** The bytes route() would answer for a CONNECT (it writes no body to a ServerResponse here), closing. */
  private connectAnswer(req: http.IncomingMessage): string {
    if (req.httpVersionMajor !== 1) return versionError(req);
    const rawUrl = req.url ?? '';
    // Go reads an authority-form target ("host:443") as a URL with that host and the path "".
    const target = rawUrl.startsWith('/') ? goTarget(rawUrl) : { path: '', search: '' };
    if (!target) return BAD_REQUEST;
    const known = this.isKnown(target.path);
    if (known && target.path.startsWith('/v2/') && isWatch(parseQuery(target.search).get('watch'))) return STREAM_HEADER;
    const body = known ? PAGE_NOT_FOUND : NOT_FOUND;
    return `HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n${known ? 'X-Content-Type-Options: nosniff\r\n' : ''}`
      + `Date: ${new Date().toUTCString()}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
  }
}
