// The agent-facing WebSocket server (uWebSockets.js).
//
// Each agent connection goes through three phases:
//   waiting  — it said hello at a revision the hub has not reached yet;
//   catchup  — it is being sent a snapshot and/or history deltas (CatchUp), paced by
//              backpressure (drain events), never more than LOW_WATER bytes queued at a time;
//   live     — it is subscribed to the "deltas" topic and gets every delta by pub/sub.
// The switch from catchup to live happens in one synchronous step after the last catch-up
// frame, so no delta can fall between the two.
//
// Nothing is dropped silently: uWebSockets.js would skip a pub/sub message to a socket over
// maxBackpressure, so closeOnBackpressureLimit is on — a slow agent is disconnected and
// resumes from its revision (DESIGN.md, Known traps).
import uWS from 'uWebSockets.js';
import { decodeFrame, encodeFrame, PROTOCOL_VERSION, ProtocolError, type HubFrame } from '../shared/protocol.js';
import type { Logger } from '../shared/log.js';
import { CatchUp } from './catchup.js';
import type { HubState } from './state.js';

const TOPIC = 'deltas';

export interface HubServerOptions {
  host: string;
  port: number;
  /** Bytes queued to one agent before it is disconnected as too slow. */
  maxBackpressure: number;
  /** Largest frame an agent may send; agents only send a small hello. */
  maxAgentFrameBytes: number;
  progressIntervalMs: number;
  /** An agent must say hello within this time. */
  helloTimeoutMs: number;
  /** Called at upgrade with the request's Authorization header; false refuses with 401. */
  authorize?: (authorization: string) => boolean;
  tls?: { certFile: string; keyFile: string };
  /** Extra plain-HTTP routes (e.g. /metrics). */
  routes?: Record<string, () => { status: number; contentType: string; body: string | Promise<string> }>;
}

interface AgentConn {
  id: number;
  remote: string;
  node: string;
  phase: 'hello' | 'waiting' | 'catchup' | 'live' | 'closed';
  /** Revision the agent said hello with. */
  rev: number;
  catchUp?: CatchUp;
  helloTimer?: NodeJS.Timeout;
}

/** Keep at most this much queued while catching an agent up, then continue on drain. */
const LOW_WATER = 1 << 20;

export interface HubCounters {
  snapshotsSent: number;
  resumes: number;
  deltasSentFrames: number;
  bytesSent: number;
  slowAgentDisconnects: number;
  rogueClients: number;
}

export class HubServer {
  private readonly app: uWS.TemplatedApp;
  private listenSocket?: uWS.us_listen_socket;
  private readonly conns = new Set<uWS.WebSocket<AgentConn>>();
  private readonly waiting = new Set<uWS.WebSocket<AgentConn>>();
  private progressTimer?: NodeJS.Timeout;
  private nextId = 1;
  private liveCount = 0;
  readonly counters: HubCounters = { snapshotsSent: 0, resumes: 0, deltasSentFrames: 0, bytesSent: 0, slowAgentDisconnects: 0, rogueClients: 0 };
  port = 0;

  onAgentAhead?: () => void;
  /** Whether the hub's state is a list of the present (not still replaying history). */
  isCurrent: () => boolean = () => true;

  constructor(private readonly state: HubState, private readonly opts: HubServerOptions, private readonly log: Logger) {
    this.app = opts.tls ? uWS.SSLApp({ cert_file_name: opts.tls.certFile, key_file_name: opts.tls.keyFile }) : uWS.App();
    this.app.ws<AgentConn>('/*', {
      compression: uWS.DISABLED,
      // uWebSockets.js closes (1009) on frames above this without telling us; up to it we
      // read the frame and answer an oversized one with an error frame before closing.
      maxPayloadLength: Math.max(opts.maxAgentFrameBytes, 1 << 20),
      maxBackpressure: opts.maxBackpressure,
      closeOnBackpressureLimit: 1,
      idleTimeout: 60,
      sendPingsAutomatically: true,
      upgrade: (res, req, context) => this.upgrade(res, req, context),
      open: (ws) => this.open(ws),
      message: (ws, message, isBinary) => this.message(ws, message, isBinary),
      drain: (ws) => { if (ws.getUserData().phase === 'catchup') this.pump(ws); },
      close: (ws, code, message) => this.closed(ws, code, message),
    });
    // 200 only when the hub is fit to take agents: loaded, current and in touch with its store
    // (a rolling upgrade waits for this before moving on to the next hub).
    this.app.get('/healthz', (res) => {
      const ok = this.state.loaded && !this.state.stale && this.isCurrent();
      res.writeStatus(ok ? '200 OK' : '503 Service Unavailable').writeHeader('Content-Type', 'application/json')
        .end(JSON.stringify({ ok, revision: this.state.revision, stale: this.state.stale, current: this.isCurrent(), agents: this.conns.size }));
    });
    for (const [path, handler] of Object.entries(opts.routes ?? {})) {
      this.app.get(path, (res) => {
        let aborted = false;
        res.onAborted(() => { aborted = true; });
        const out = handler();
        void Promise.resolve(out.body).then((body) => {
          if (aborted) return;
          res.cork(() => res.writeStatus(String(out.status)).writeHeader('Content-Type', out.contentType).end(body));
        });
      });
    }
    this.app.any('/*', (res) => { res.writeStatus('404 Not Found').end('not found'); });

    state.setListener({
      onDelta: (frame) => this.publishDelta(frame),
      onProgress: (rev, stale) => this.publishProgress(rev, stale),
    });
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.app.listen(this.opts.host, this.opts.port, (sock) => {
        if (!sock) { reject(new Error(`cannot listen on ${this.opts.host}:${this.opts.port}`)); return; }
        this.listenSocket = sock;
        this.port = uWS.us_socket_local_port(sock);
        this.progressTimer = setInterval(() => this.publishProgress(this.state.revision, this.state.stale), this.opts.progressIntervalMs);
        resolve(this.port);
      });
    });
  }

  get agentCount(): number { return this.conns.size; }

  /** Stops accepting connections (existing ones stay). */
  stopListening(): void {
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = undefined;
  }

  /**
   * Graceful shutdown: tell every agent to move, spread over `spreadMs` so they do not all land
   * on the other hubs at once, then wait for them to leave (or `spreadMs + graceMs`).
   */
  async drainAgents(spreadMs: number, graceMs: number): Promise<void> {
    this.stopListening();
    const deadline = Date.now() + spreadMs + graceMs;
    for (const ws of this.conns) {
      const afterMs = Math.round(Math.random() * spreadMs);
      this.sendFrame(ws, { t: 'move', afterMs, reason: 'hub shutting down' });
    }
    while (this.conns.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }

  /** Stops the hub's server: no more connections, progress frames or agents. */
  close(): void {
    clearInterval(this.progressTimer);
    this.stopListening();
    for (const c of [...this.conns]) c.close();
  }

  /** uWebSockets.js says a connection is gone (whoever closed it). */
  private closed(ws: uWS.WebSocket<AgentConn>, code: number, message: ArrayBuffer): void {
    const conn = ws.getUserData();
    clearTimeout(conn.helloTimer);
    if (conn.phase === 'live') this.liveCount--;
    const wasPhase = conn.phase;
    conn.phase = 'closed';
    this.conns.delete(ws);
    this.waiting.delete(ws);
    // 1006 without a reason from our side while the agent was live: uWebSockets.js closed it
    // at maxBackpressure (or the network broke). Either way the agent resumes from its revision.
    const reason = message ? Buffer.from(message).toString() : '';
    if (code === 1006 && wasPhase === 'live') this.counters.slowAgentDisconnects++;
    this.log.info({ agent: conn.id, node: conn.node, remote: conn.remote, code, reason, phase: wasPhase }, 'agent disconnected');
  }

  private upgrade(res: uWS.HttpResponse, req: uWS.HttpRequest, context: uWS.us_socket_context_t): void {
    const key = req.getHeader('sec-websocket-key');
    const protocol = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    const authorization = req.getHeader('authorization');
    const remote = Buffer.from(res.getRemoteAddressAsText()).toString();
    if (this.opts.authorize && !this.opts.authorize(authorization)) {
      this.log.warn({ remote }, 'agent refused: missing or wrong token');
      res.writeStatus('401 Unauthorized').writeHeader('WWW-Authenticate', 'Bearer').end('unauthorized');
      return;
    }
    const conn: AgentConn = { id: this.nextId++, remote, node: '', phase: 'hello', rev: 0 };
    res.upgrade(conn, key, protocol, extensions, context);
  }

  private open(ws: uWS.WebSocket<AgentConn>): void {
    const conn = ws.getUserData();
    this.conns.add(ws);
    conn.helloTimer = setTimeout(() => this.reject(ws, 'no_hello', `no hello within ${this.opts.helloTimeoutMs} ms`), this.opts.helloTimeoutMs);
  }

  private message(ws: uWS.WebSocket<AgentConn>, message: ArrayBuffer, isBinary: boolean): void {
    const conn = ws.getUserData();
    try {
      if (message.byteLength > this.opts.maxAgentFrameBytes) throw new ProtocolError('too_large', `frame of ${message.byteLength} bytes; agents send at most ${this.opts.maxAgentFrameBytes}`);
      if (!isBinary) throw new ProtocolError('bad_frame', 'text frames are not part of the protocol');
      const frame = decodeFrame(new Uint8Array(message));
      if (frame.t !== 'hello') throw new ProtocolError('bad_frame', `unexpected ${frame.t} frame from an agent`);
      if (conn.phase !== 'hello') throw new ProtocolError('bad_frame', 'hello sent twice');
      if (frame.v !== PROTOCOL_VERSION) throw new ProtocolError('bad_version', `protocol version ${frame.v} not supported (hub speaks ${PROTOCOL_VERSION})`);
      clearTimeout(conn.helloTimer);
      conn.node = frame.node.slice(0, 256);
      conn.rev = frame.rev;
      this.log.info({ agent: conn.id, node: conn.node, remote: conn.remote, rev: frame.rev, hubRev: this.state.revision }, 'agent connected');
      if (!this.state.loaded || frame.rev > this.state.revision) {
        conn.phase = 'waiting';
        this.waiting.add(ws);
        if (this.state.loaded) this.onAgentAhead?.();
        return;
      }
      this.startCatchup(ws);
    } catch (err) {
      const e = err instanceof ProtocolError ? err : new ProtocolError('internal', (err as Error).message);
      this.reject(ws, e.code, e.message);
    }
  }

  private reject(ws: uWS.WebSocket<AgentConn>, code: string, msg: string): void {
    const conn = ws.getUserData();
    if (conn.phase === 'closed') return;
    this.counters.rogueClients++;
    this.log.warn({ agent: conn.id, remote: conn.remote, code, msg }, 'agent rejected');
    this.sendFrame(ws, { t: 'err', code, msg });
    ws.end(1008, code);
  }

  private startCatchup(ws: uWS.WebSocket<AgentConn>): void {
    const conn = ws.getUserData();
    conn.phase = 'catchup';
    conn.catchUp = new CatchUp(this.state, conn.rev, () => { this.counters.snapshotsSent++; });
    if (!conn.catchUp.needsSnapshot) this.counters.resumes++;
    this.pump(ws);
  }

  /** Sends catch-up frames while the socket's queue is short; goes live once current. */
  private pump(ws: uWS.WebSocket<AgentConn>): void {
    const conn = ws.getUserData();
    ws.cork(() => {
      while (conn.phase === 'catchup' && ws.getBufferedAmount() < LOW_WATER) {
        const frames = conn.catchUp!.next();
        if (frames === null) {
          // Current: from here on pub/sub carries every delta. Tell the agent where the hub is.
          ws.subscribe(TOPIC);
          conn.phase = 'live';
          conn.catchUp = undefined;
          this.liveCount++;
          this.send(ws, encodeFrame({ t: 'prog', rev: this.state.revision, stale: this.state.stale }));
          return;
        }
        for (const f of frames) if (!this.send(ws, f)) return;
      }
    });
  }

  /** Returns false when the frame could not be queued (the socket is being closed). */
  private send(ws: uWS.WebSocket<AgentConn>, frame: Buffer): boolean {
    const status = ws.send(frame, true);
    if (status === 2) {
      const conn = ws.getUserData();
      this.log.warn({ agent: conn.id, node: conn.node }, 'agent too slow during catch-up; disconnecting');
      this.counters.slowAgentDisconnects++;
      ws.end(1013, 'too slow');
      return false;
    }
    this.counters.bytesSent += frame.length;
    return true;
  }

  private sendFrame(ws: uWS.WebSocket<AgentConn>, frame: HubFrame): void {
    try { ws.send(encodeFrame(frame), true); } catch { /* socket already closed */ }
  }

  private publishDelta(frame: Buffer): void {
    if (this.liveCount > 0) {
      this.app.publish(TOPIC, frame, true);
      this.counters.deltasSentFrames += this.liveCount;
      this.counters.bytesSent += frame.length * this.liveCount;
    }
    this.wakeWaiting();
  }

  private publishProgress(rev: number, stale: boolean): void {
    if (this.liveCount > 0) this.app.publish(TOPIC, encodeFrame({ t: 'prog', rev, stale }), true);
    this.wakeWaiting();
  }

  private wakeWaiting(): void {
    if (this.waiting.size === 0 || !this.state.loaded) return;
    for (const ws of [...this.waiting]) {
      if (ws.getUserData().rev <= this.state.revision) {
        this.waiting.delete(ws);
        this.startCatchup(ws);
      }
    }
  }
}
