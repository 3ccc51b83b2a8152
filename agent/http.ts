// The agent's HTTP server (node:http, not uWebSockets.js: the collectd plugin speaks HTTP/1.0,
// which uWebSockets.js never answers; DESIGN.md Data flow 8). Routing and HTTP details follow
// API.md §2: one trailing slash accepted, two different 404s, HEAD, watch on any value but
// "", "0" and "false", Go's FormValue for parameters, raw event streams.
import http from 'node:http';
import type { Socket } from 'node:net';
import type { AnswerCache } from './api/answers.js';
import { parseQuery, routePath } from './api/endpoints/request.js';
import { normalizeIp } from './auth.js';
import type { Answer, ApiRequest, Endpoint } from './api/types.js';
import { STREAM_HEADER, type StreamHub } from './streams.js';

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
const TEXT_PLAIN = ['Content-Type', 'text/plain; charset=utf-8'];
const PAGE_NOT_FOUND = '404 page not found\n';

export function isWatch(value: string | undefined): boolean {
  return value !== undefined && value !== '' && value !== '0' && value !== 'false';
}

export class AgentHttp {
  readonly server: http.Server;
  private readonly routes = new Map<string, Endpoint>();
  /** In-flight requests including open streams (the original's `connections`). */
  inFlight = 0;

  constructor(private readonly opts: HttpOptions) {
    for (const e of opts.endpoints) this.routes.set(e.path, e);
    this.server = http.createServer({ requireHostHeader: false, keepAliveTimeout: 60_000 }, (req, res) => this.handle(req, res));
    // Event streams live for days; only the request head has a deadline.
    this.server.requestTimeout = 0;
    this.server.headersTimeout = 60_000;
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
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.inFlight++;
    let counted = true;
    const done = () => { if (counted) { counted = false; this.inFlight--; } };
    res.once('close', done);

    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const path = routePath(rawUrl);
    const search = q < 0 ? '' : rawUrl.slice(q + 1);
    const method = req.method ?? 'GET';
    const known = this.routes.has(path) || path === '/debug' || path === '/version' || (this.opts.extraRoutes?.[path] !== undefined);
    if (!known) return this.plain(res, 'unknown', 404, NOT_FOUND);
    const params = parseQuery(search);
    const watch = path.startsWith('/v2/') && isWatch(params.get('watch'));
    if (method !== 'GET' && method !== 'HEAD') {
      if (watch) {
        // The original hijacks before routing: header block, then close (API.md §2).
        const socket = req.socket;
        socket.end(STREAM_HEADER);
        return;
      }
      return this.plain(res, path, 404, PAGE_NOT_FOUND, [...TEXT_PLAIN, 'X-Content-Type-Options', 'nosniff']);
    }
    if (path === '/version') return this.plain(res, path, 200, this.opts.version);
    if (path === '/debug') return this.plain(res, path, 200, JSON.stringify(this.opts.debug()));
    const extra = this.opts.extraRoutes?.[path];
    if (extra) {
      void extra().then((r) => this.plain(res, path, r.status, r.body, ['Content-Type', r.contentType]),
        (err: Error) => this.plain(res, path, 500, err.message));
      return;
    }
    const endpoint = this.routes.get(path)!;
    const notReady = this.opts.notReadyReason();
    // Not synced yet: 503 for GET and watch alike (API.md §11 item 8) — an empty init would
    // make webrouter or networkd drop their configuration.
    if (notReady !== null) return this.plain(res, path, 503, notReady);
    const apiReq: ApiRequest = { path, query: (name) => params.get(name) ?? '', remoteIp: normalizeIp(req.socket.remoteAddress ?? '') };
    let resolved: { scope: string } | Answer;
    try {
      resolved = endpoint.resolve(apiReq);
    } catch (err) {
      resolved = { status: 500, body: `internal error: ${(err as Error).message}` };
    }
    if (watch) {
      // The original refuses watch on localspecquery before any parameter or auth check.
      if (!endpoint.watchable) return this.streamError(req.socket, res, `${path.replace('/v2', '')} do not support watch action`, done);
      if ('status' in resolved) return this.streamError(req.socket, res, resolved.body, done);
      const heartbeat = /^[+-]?\d+$/.test(params.get('heartbeat') ?? '') ? Number(params.get('heartbeat')) : 0;
      this.detach(req.socket, res);
      this.opts.onRequest?.(path, 200);
      this.opts.streams.open(req.socket, endpoint, resolved.scope, heartbeat, done);
      return;
    }
    if ('status' in resolved) return this.plain(res, path, resolved.status, resolved.body);
    const answer = this.opts.answers.get(endpoint, resolved.scope);
    this.plain(res, path, answer.status, this.opts.answers.bytes(answer));
  }

  /** One complete answer; the headers go in one flat array (cheaper than setHeader calls). */
  private plain(res: http.ServerResponse, path: string, status: number, body: string | Buffer, headers: string[] = TEXT_PLAIN): void {
    const length = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
    res.writeHead(status, [...headers, 'Content-Length', String(length)]);
    res.end(body);
    this.opts.onRequest?.(path, status);
  }

  /** The stream takes the raw socket over; node:http must not write to it any more. */
  private detach(socket: Socket, res: http.ServerResponse): void {
    res.detachSocket(socket);
    // The socket is still in node:http's keep-alive bookkeeping; a raw stream must not be
    // reused for another request.
    socket.removeAllListeners('timeout');
  }

  private streamError(socket: Socket, res: http.ServerResponse, message: string, done: () => void): void {
    this.detach(socket, res);
    socket.once('close', done);
    this.opts.onRequest?.('stream-error', 200);
    socket.end(`${STREAM_HEADER}id: 0\nevent: error\ndata: ${message}\n\n`);
  }
}
