// The agent-facing WebSocket server (uWebSockets.js).
//
// After its hello, each agent connection goes through up to three phases:
//   waiting  — it said hello while the hub is not current yet (a starting hub replaying
//              history serves nobody: the past is never handed out as the present), or at a
//              revision the hub has not reached; it is timed out after aheadTimeoutMs;
//   catchup  — it is being sent a snapshot (a reset snapshot when its state is from another
//              store history) and/or history deltas (CatchUp). Frames go out in batches while
//              less than lowWater bytes are queued on its socket (HUB_DEFAULTS.catchUpLowWaterBytes,
//              at most a quarter of maxBackpressure), each batch sized to what is left of that
//              but at least one frame, so the queue passes lowWater by one frame at most; the
//              next batch follows on the socket's drain event;
//   live     — it is subscribed to the "deltas" topic and gets every delta by pub/sub.
// The switch from catchup to live happens in one synchronous step after the last catch-up
// frame, so no delta can fall between the two.
//
// Nothing is dropped silently: uWebSockets.js would skip a pub/sub message to a socket over
// maxBackpressure, so closeOnBackpressureLimit is on — a slow agent is disconnected and
// resumes from its revision (DESIGN.md, Known traps). The bytes queued to all agents together
// are bounded too (maxTotalBackpressure): past it the agents with the most queued are closed.
import net from 'node:net';
import uWS from 'uWebSockets.js';
import { LogLimiter } from '../shared/log-limit.js';
import { decodeFrame, encodeFrame, PROTOCOL_VERSION, PROTOCOL_VERSION_MAX, ProtocolError, type HubFrame } from '../shared/protocol.js';
import type { Logger } from '../shared/log.js';
import { CatchUp } from './catchup.js';
import { HUB_DEFAULTS } from './defaults.js';
import type { AgentInfo, Fanout, FanoutState, HubCounters } from './fanout.js';

export type { HubCounters } from './fanout.js';

const TOPIC = 'deltas';
/** Agents of protocol version 2 also get the hub tier's members. */
const MEMBERS_TOPIC = 'members';


export interface HubServerOptions {
  host: string;
  port: number;
  /** Bytes queued to one agent before it is disconnected as too slow. */
  maxBackpressure: number;
  /** Bytes queued to all agents together before the most backed-up ones are disconnected (default: see HUB_DEFAULTS.totalBackpressureAgents). */
  maxTotalBackpressure?: number;
  /** An agent waiting for the hub (not current yet, or behind the agent) is sent away after this (default: HUB_DEFAULTS.aheadTimeoutMs). */
  aheadTimeoutMs?: number;
  /** Largest frame an agent may send; agents only send a small hello. */
  maxAgentFrameBytes: number;
  progressIntervalMs: number;
  /** An agent must say hello within this time. */
  helloTimeoutMs: number;
  /** Called at upgrade with the request's Authorization header; false refuses with 401. */
  authorize?: (authorization: string) => boolean;
  tls?: { certFile: string; keyFile: string };
  /** Extra plain-HTTP routes (e.g. /metrics). */
  routes?: Record<string, RouteHandler>;
  /**
   * This server is one of a hub's worker threads, which share the port on purpose (the main
   * thread checked it was free); otherwise listen() refuses a port another program serves.
   */
  sharedPort?: boolean;
  /** Where the counters live (a worker's block of shared memory); default: a plain object. */
  counters?: HubCounters;
  /** This server writes 1/connLogShare of the hub's per-connection log lines (worker threads). */
  connLogShare?: number;
  /** Told the number of connected agents whenever it changes. */
  onAgentCount?: (n: number) => void;
  /** The highest protocol version spoken (default PROTOCOL_VERSION_MAX; 1 behaves as a hub from before version 2). */
  protocolMax?: number;
  /** What /healthz reports as the agents connected (a worker reports the whole hub's). */
  hubAgentCount?: () => number;
}

/** An extra route's answer: its status, content type and (maybe later) body. */
export interface RouteAnswer { status: number; contentType: string; body: string | Promise<string> }
/** An extra route (e.g. /metrics): its answer, now or later. */
export type RouteHandler = () => RouteAnswer | Promise<RouteAnswer>;

interface AgentConn {
  id: number;
  remote: string;
  node: string;
  phase: 'hello' | 'waiting' | 'catchup' | 'live' | 'closed';
  /** Revision the agent said hello with. */
  rev: number;
  catchUp?: CatchUp;
  helloTimer?: NodeJS.Timeout;
  waitTimer?: NodeJS.Timeout;
  /** Which hello this was (ascending): a store read started after it can judge its revision. */
  helloSeq: number;
  /** The server closed this connection for being too slow (told apart from network breaks). */
  closedSlow?: boolean;
  /** The protocol version this connection speaks (the lower of both ends' highest). */
  protocol: number;
  /** The agent's program version (protocol 2). */
  version: string;
  /** Connected at (ms since the epoch). */
  since: number;
  /** Told to move (balance or shutdown): not asked again, counted in movingCount. */
  moving?: boolean;
}

export class HubServer implements Fanout {
  private readonly app: uWS.TemplatedApp;
  private listenSocket?: uWS.us_listen_socket;
  private readonly conns = new Set<uWS.WebSocket<AgentConn>>();
  private readonly waiting = new Set<uWS.WebSocket<AgentConn>>();
  private progressTimer?: NodeJS.Timeout;
  private nextId = 1;
  private liveCount = 0;
  readonly counters: HubCounters;
  port = 0;
  private helloSeq = 0;
  private sweepTimer?: NodeJS.Timeout;
  /** Bytes published to every live agent since the last sweep of the send queues. */
  private publishedSinceSweep = 0;
  private readonly sweepEveryBytes: number;
  private readonly lowWater: number;
  private readonly maxTotalBackpressure: number;
  /** Per-connection log lines (connect, disconnect, refusals) under a rate, see LogLimiter. */
  private readonly connLog: LogLimiter;

  /**
   * Reads the store's current revision with a request sent after the call (StoreSync.probe).
   * Used for agents ahead of us: behind the store means we are late (list); ahead of the store
   * means the agent's state is from another history (reset snapshot).
   */
  probeStore?: () => Promise<{ revision: number }>;
  /** Asks the sync for a list of the present (coalesced, rate-limited there). */
  listPresent?: (why: string, stillNeeded: () => boolean) => void;
  /** Whether the hub's state is a list of the present (not still replaying history). */
  isCurrent: () => boolean = () => true;

  constructor(private readonly state: FanoutState, private readonly opts: HubServerOptions, private readonly log: Logger) {
    // Worker threads split the hub's log rate: a storm writes as many lines as on one thread.
    const share = opts.connLogShare ?? 1;
    this.connLog = new LogLimiter(Math.max(1, Math.ceil(HUB_DEFAULTS.connLogBurst / share)), HUB_DEFAULTS.connLogPerSecond / share);
    this.counters = opts.counters ?? {
      snapshotsSent: 0, resumes: 0, deltasSentFrames: 0, bytesSent: 0, slowAgentDisconnects: 0, rejectedClients: 0,
      waitTimeouts: 0, resetSnapshots: 0, totalBackpressureDisconnects: 0,
    };
    // A catch-up batch never queues more than a quarter of what would get the agent closed.
    this.lowWater = Math.max(1, Math.min(HUB_DEFAULTS.catchUpLowWaterBytes, Math.floor(opts.maxBackpressure / 4)));
    this.maxTotalBackpressure = opts.maxTotalBackpressure
      ?? Math.max(opts.maxBackpressure * HUB_DEFAULTS.totalBackpressureAgents, HUB_DEFAULTS.maxTotalBackpressure);
    this.sweepEveryBytes = Math.floor(opts.maxBackpressure / 4);
    this.app = opts.tls ? uWS.SSLApp({ cert_file_name: opts.tls.certFile, key_file_name: opts.tls.keyFile }) : uWS.App();
    this.serveAgents();
    this.serveHttp();
    state.setListener({
      onDelta: (frame) => this.publishDelta(frame),
      onProgress: (rev, stale) => this.publishProgress(rev, stale),
      onReset: () => this.resetAll(),
      onCorrected: () => this.resendAll(),
      onSnapshotReady: () => this.pumpAll(),
      onGaps: () => this.pumpAll(),
    });
  }

  /** The WebSocket agents connect to, on every path. */
  private serveAgents(): void {
    this.app.ws<AgentConn>('/*', {
      compression: uWS.DISABLED,
      maxPayloadLength: Math.max(this.opts.maxAgentFrameBytes, HUB_DEFAULTS.minWsPayloadBytes),
      maxBackpressure: this.opts.maxBackpressure,
      closeOnBackpressureLimit: 1,
      idleTimeout: HUB_DEFAULTS.wsIdleTimeoutSec,
      sendPingsAutomatically: true,
      upgrade: (res, req, context) => this.upgrade(res, req, context),
      open: (ws) => this.open(ws),
      message: (ws, message, isBinary) => this.message(ws, message, isBinary),
      drain: (ws) => { if (ws.getUserData().phase === 'catchup') this.pump(ws); },
      close: (ws, code, message) => this.closed(ws, code, message),
    });
  }

  /** Plain HTTP beside the WebSocket: /healthz, the extra routes (e.g. /metrics), 404 for the rest. */
  private serveHttp(): void {
    // 200 only when the hub is fit to take agents: loaded, current and in touch with its store
    // (a rolling upgrade waits for this before moving on to the next hub).
    this.app.get('/healthz', (res) => {
      const ok = this.state.loaded && !this.state.stale && this.isCurrent();
      res.writeStatus(ok ? '200 OK' : '503 Service Unavailable').writeHeader('Content-Type', 'application/json')
        .end(JSON.stringify({ ok, revision: this.state.revision, stale: this.state.stale, current: this.isCurrent(), agents: this.opts.hubAgentCount?.() ?? this.conns.size }));
    });
    for (const [path, handler] of Object.entries(this.opts.routes ?? {})) {
      this.app.get(path, (res) => this.serveRoute(path, handler, res));
    }
    this.app.any('/*', (res) => { res.writeStatus('404 Not Found').end('not found'); });
  }

  /**
   * One extra route's answer. A route that throws, or whose body rejects, is answered 500 and
   * logged: left alone, its request would never be answered and its rejection go unhandled.
   */
  private serveRoute(path: string, handler: RouteHandler, res: uWS.HttpResponse): void {
    let aborted = false;
    // uWebSockets.js requires this before answering later than in this call.
    res.onAborted(() => { aborted = true; });
    const answer = (status: string, contentType: string, body: string) => {
      if (aborted) return;
      res.cork(() => res.writeStatus(status).writeHeader('Content-Type', contentType).end(body));
    };
    void (async () => {
      const out = await handler();
      return { ...out, body: await out.body };
    })().then(
      (out) => answer(String(out.status), out.contentType, out.body),
      (err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        this.log.error({ path, err: message }, 'hub route failed; answered 500');
        answer('500 Internal Server Error', 'text/plain; charset=utf-8', `internal error: ${message}`);
      },
    );
  }

  async listen(): Promise<number> {
    // uWebSockets.js listens with SO_REUSEPORT on Linux: a second hub on a served port would
    // start and silently share the connections (DESIGN.md, Known traps). A plain bind without
    // that option fails on a port someone else holds: refuse to start then.
    if (this.opts.port !== 0 && !this.opts.sharedPort) await assertPortFree(this.opts.host, this.opts.port);
    return new Promise((resolve, reject) => {
      this.app.listen(this.opts.host, this.opts.port, (sock) => {
        if (!sock) { reject(new Error(`cannot listen on ${this.opts.host}:${this.opts.port}`)); return; }
        this.listenSocket = sock;
        this.port = uWS.us_socket_local_port(sock);
        this.progressTimer = setInterval(() => this.publishProgress(this.state.revision, this.state.stale), this.opts.progressIntervalMs);
        this.sweepTimer = setInterval(() => this.sweepBackpressure(), HUB_DEFAULTS.totalBackpressureSweepMs);
        this.sweepTimer.unref();
        resolve(this.port);
      });
    });
  }

  get agentCount(): number { return this.conns.size; }

  /** Agents told to move that are still connected. */
  movingCount = 0;
  private membersFrame?: Buffer;

  /** The hub tier's members changed: agents of protocol 2 are told now, and when they go live. */
  setMembers(frame: Buffer): void {
    this.membersFrame = frame;
    this.app.publish(MEMBERS_TOPIC, frame, true);
  }

  /**
   * Asks up to `count` live agents of protocol 2 to move, the i-th to targets[i % n], each at a
   * random moment within `spreadMs` (moves are paced: no hub sees a storm).
   * They resume on the target from their revision. Returns how many were asked.
   */
  moveAgents(count: number, targets: readonly string[], reason: string, spreadMs: number): number {
    if (targets.length === 0) return 0;
    let asked = 0;
    for (const ws of this.conns) {
      if (asked >= count) break;
      const conn = ws.getUserData();
      if (conn.phase !== 'live' || conn.protocol < 2 || conn.moving) continue;
      this.tellToMove(ws, Math.round(Math.random() * spreadMs), reason, targets[asked % targets.length]);
      asked++;
    }
    return asked;
  }

  private tellToMove(ws: uWS.WebSocket<AgentConn>, afterMs: number, reason: string, to?: string): void {
    const conn = ws.getUserData();
    if (!conn.moving) { conn.moving = true; this.movingCount++; }
    const frame: HubFrame = { t: 'move', afterMs, reason };
    if (to && conn.protocol >= 2) frame.to = to;
    this.sendFrame(ws, frame);
  }

  /** This server's agents, for /status. */
  agents(): AgentInfo[] {
    const out: AgentInfo[] = [];
    for (const ws of this.conns) {
      const c = ws.getUserData();
      if (c.phase === 'closed') continue;
      out.push({ id: c.id, node: c.node, version: c.version, remote: c.remote, phase: c.phase, rev: c.phase === 'live' ? this.state.revision : c.rev, since: c.since, queuedBytes: ws.getBufferedAmount(), protocol: c.protocol });
    }
    return out;
  }

  /** Stops accepting connections (existing ones stay). */
  stopListening(): void {
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = undefined;
  }

  /**
   * Graceful shutdown: tell every agent to move, spread over `spreadMs` so they do not all land
   * on the other hubs at once, then wait for them to leave (or `spreadMs + graceMs`).
   */
  async drainAgents(spreadMs: number, graceMs: number, targets: readonly string[] = []): Promise<void> {
    this.stopListening();
    const deadline = Date.now() + spreadMs + graceMs;
    // Agents of protocol 2 are sent to the other members in turn, least loaded first, so they
    // spread evenly; the others pick the next hub of their own list.
    let i = 0;
    for (const ws of this.conns) {
      const afterMs = Math.round(Math.random() * spreadMs);
      this.tellToMove(ws, afterMs, 'hub shutting down', targets.length > 0 ? targets[i++ % targets.length] : undefined);
    }
    while (this.conns.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, HUB_DEFAULTS.drainCheckMs));
  }

  /** Stops the hub's server: no more connections, progress frames or agents. */
  close(): Promise<void> {
    clearInterval(this.progressTimer);
    clearInterval(this.sweepTimer);
    this.stopListening();
    for (const c of [...this.conns]) c.close();
    return Promise.resolve();
  }

  /**
   * Closes every connection at once, listen socket included, without sending anything: for a
   * worker thread that must end now (its agents reconnect and resume).
   */
  abort(): void {
    clearInterval(this.progressTimer);
    clearInterval(this.sweepTimer);
    this.stopListening();
    // TemplatedApp.close() (closes every socket of the app) is in this build but not in its types.
    (this.app as unknown as { close(): void }).close();
  }

  /** Closes every agent connection with `code`/`reason` (they resume from their revision). */
  closeAll(code: number, reason: string): void {
    for (const ws of [...this.conns]) ws.end(code, reason);
  }

  /** uWebSockets.js says a connection is gone (whoever closed it). */
  private closed(ws: uWS.WebSocket<AgentConn>, code: number, message: ArrayBuffer): void {
    const conn = ws.getUserData();
    clearTimeout(conn.helloTimer);
    clearTimeout(conn.waitTimer);
    if (conn.phase === 'live') this.liveCount--;
    if (conn.moving) this.movingCount--;
    const wasPhase = conn.phase;
    conn.phase = 'closed';
    this.conns.delete(ws);
    this.opts.onAgentCount?.(this.conns.size);
    this.waiting.delete(ws);
    const reason = message ? Buffer.from(message).toString() : '';
    // Only closes the hub decided for slowness count as slow: a 1006 is any broken connection
    // (a killed agent, a network cut). uWebSockets.js's own close at maxBackpressure is seen
    // by the sweep (see sweepBackpressure) before it happens, or by the send status.
    if (conn.closedSlow) this.counters.slowAgentDisconnects++;
    this.logConn('info', { agent: conn.id, node: conn.node, remote: conn.remote, code, reason, phase: wasPhase }, 'agent disconnected');
  }

  /** A per-connection log line, under the connection log's rate. */
  private logConn(level: 'info' | 'warn', fields: Record<string, unknown>, line: string): void {
    const left = this.connLog.take();
    if (left < 0) return;
    this.log[level](left > 0 ? { ...fields, suppressedLines: left } : fields, line);
  }

  private upgrade(res: uWS.HttpResponse, req: uWS.HttpRequest, context: uWS.us_socket_context_t): void {
    const key = req.getHeader('sec-websocket-key');
    const protocol = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    const authorization = req.getHeader('authorization');
    const remote = Buffer.from(res.getRemoteAddressAsText()).toString();
    if (this.opts.authorize && !this.opts.authorize(authorization)) {
      this.counters.rejectedClients++;
      this.logConn('warn', { remote }, 'agent refused: missing or wrong token');
      res.writeStatus('401 Unauthorized').writeHeader('WWW-Authenticate', 'Bearer').end('unauthorized');
      return;
    }
    const conn: AgentConn = { id: this.nextId++, remote, node: '', phase: 'hello', rev: 0, helloSeq: 0, protocol: 1, version: '', since: Date.now() };
    res.upgrade(conn, key, protocol, extensions, context);
  }

  private open(ws: uWS.WebSocket<AgentConn>): void {
    const conn = ws.getUserData();
    this.conns.add(ws);
    this.opts.onAgentCount?.(this.conns.size);
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
      conn.protocol = Math.max(PROTOCOL_VERSION, Math.min(this.opts.protocolMax ?? PROTOCOL_VERSION_MAX, Math.floor(frame.vmax ?? PROTOCOL_VERSION)));
      if (conn.protocol >= 2) conn.version = (frame.ver ?? '').slice(0, 64);
      conn.helloSeq = ++this.helloSeq;
      this.logConn('info', { agent: conn.id, node: conn.node, remote: conn.remote, rev: frame.rev, hubRev: this.state.revision }, 'agent connected');
      if (!this.state.loaded || !this.isCurrent()) {
        this.wait(ws, 'the hub is not current yet');
        return;
      }
      if (frame.epoch && this.state.epoch && frame.epoch !== this.state.epoch) {
        // The agent's state is from another etcd cluster (rebuilt): its revisions mean nothing here.
        this.log.warn({ agent: conn.id, node: conn.node, agentEpoch: frame.epoch, epoch: this.state.epoch }, 'agent state is from another store: sending a reset snapshot');
        this.startCatchup(ws, true);
        return;
      }
      if (frame.rev > this.state.revision) {
        this.wait(ws, `the agent is ahead (revision ${frame.rev}, ours ${this.state.revision})`);
        this.checkAhead();
        return;
      }
      this.startCatchup(ws);
    } catch (err) {
      const e = err instanceof ProtocolError ? err : new ProtocolError('internal', (err as Error).message);
      this.reject(ws, e.code, e.message);
    }
  }

  private reject(ws: uWS.WebSocket<AgentConn>, code: string, detail: string): void {
    const conn = ws.getUserData();
    if (conn.phase === 'closed') return;
    this.counters.rejectedClients++;
    // `detail`, not `msg`: pino's own message key is msg, and two of them hide the reason.
    this.logConn('warn', { agent: conn.id, remote: conn.remote, code, detail }, 'agent rejected');
    this.sendFrame(ws, { t: 'err', code, msg: detail });
    ws.end(1008, code);
  }

  /** The agent waits for the hub to be current and at its revision, for at most aheadTimeoutMs. */
  private wait(ws: uWS.WebSocket<AgentConn>, why: string): void {
    const conn = ws.getUserData();
    conn.phase = 'waiting';
    this.waiting.add(ws);
    const timeoutMs = this.opts.aheadTimeoutMs ?? HUB_DEFAULTS.aheadTimeoutMs(this.opts.progressIntervalMs);
    conn.waitTimer = setTimeout(() => {
      if (conn.phase !== 'waiting') return;
      this.waiting.delete(ws);
      this.counters.waitTimeouts++;
      this.logConn('warn', { agent: conn.id, node: conn.node, rev: conn.rev, hubRev: this.state.revision, why }, 'agent waited too long for this hub; sending it away');
      this.sendFrame(ws, { t: 'err', code: 'not_ready', msg: `hub could not serve revision ${conn.rev} within ${timeoutMs} ms: ${why}` });
      ws.end(1013, 'not_ready');
    }, timeoutMs);
  }

  private aheadCheckRunning = false;

  /**
   * Agents are waiting at revisions past ours. One store read (shared by all of them, sent
   * after their hellos) tells which case each is in: at or below the store's revision, we are
   * just late — list the present (rate-limited: clients never drive store load); above it, the
   * agent's revision does not exist in the store's history — send it a reset snapshot.
   */
  private checkAhead(): void {
    if (this.aheadCheckRunning || !this.probeStore) return;
    this.aheadCheckRunning = true;
    const judgedUpTo = this.helloSeq;
    void this.probeStore().then((probe) => {
      let late = false;
      for (const ws of [...this.waiting]) {
        const conn = ws.getUserData();
        if (conn.helloSeq > judgedUpTo || conn.rev <= this.state.revision) continue;
        if (conn.rev > probe.revision) {
          this.waiting.delete(ws);
          clearTimeout(conn.waitTimer);
          this.logConn('warn', { agent: conn.id, node: conn.node, rev: conn.rev, storeRev: probe.revision }, 'agent revision is beyond the store (another history): sending a reset snapshot');
          this.startCatchup(ws, true);
        } else {
          late = true;
        }
      }
      if (late) this.listPresent?.('an agent is ahead of us', () => this.anyWaitingAhead());
    }, () => { /* the wait timeout sends them elsewhere */ }).finally(() => {
      this.aheadCheckRunning = false;
      for (const ws of this.waiting) {
        const conn = ws.getUserData();
        if (conn.helloSeq > judgedUpTo && conn.rev > this.state.revision) { this.checkAhead(); break; }
      }
    });
  }

  /** The highest revision an agent waits for this hub to reach (0 = none waits ahead). */
  get maxWaitingRev(): number {
    let max = 0;
    for (const ws of this.waiting) max = Math.max(max, ws.getUserData().rev);
    return max > this.state.revision ? max : 0;
  }

  private anyWaitingAhead(): boolean {
    for (const ws of this.waiting) if (ws.getUserData().rev > this.state.revision) return true;
    return false;
  }

  private startCatchup(ws: uWS.WebSocket<AgentConn>, reset = false): void {
    const conn = ws.getUserData();
    clearTimeout(conn.waitTimer);
    conn.phase = 'catchup';
    const agentRev = conn.rev;
    conn.catchUp = new CatchUp(this.state, agentRev, (why) => {
      this.counters.snapshotsSent++;
      // A first sync needs no line; a reset is logged (warn) where it is found; an agent that
      // had a state and cannot resume here is.
      if (why !== 'no state' && why !== 'reset') this.logConn('info', { agent: conn.id, node: conn.node, rev: agentRev, hubRev: this.state.revision, lastChangeRev: this.state.lastChangeRev, why }, 'agent cannot resume here: sending a snapshot');
    }, reset);
    if (reset) this.counters.resetSnapshots++;
    else if (!conn.catchUp.needsSnapshot) this.counters.resumes++;
    this.pump(ws);
  }

  /** The store's history was reset: every agent connected holds old-history state. */
  private resetAll(): void {
    for (const ws of [...this.conns]) {
      const conn = ws.getUserData();
      if (conn.phase === 'hello' || conn.phase === 'closed') continue;
      if (conn.phase === 'live') { ws.unsubscribe(TOPIC); this.liveCount--; }
      this.waiting.delete(ws);
      if (!this.isCurrent()) { this.wait(ws, 'store reset; the hub is not current yet'); continue; }
      this.startCatchup(ws, true);
    }
  }

  /**
   * The state was corrected at its own revision (HubState.correct): every connected agent holds
   * the uncorrected state at a revision now marked unknown, so its catch-up starts over — with a
   * snapshot (not a reset one: the history is the same, only our copy of it was wrong).
   */
  private resendAll(): void {
    for (const ws of [...this.conns]) {
      const conn = ws.getUserData();
      if (conn.phase === 'hello' || conn.phase === 'closed' || conn.phase === 'waiting') continue;
      if (conn.phase === 'live') { ws.unsubscribe(TOPIC); this.liveCount--; }
      this.startCatchup(ws);
    }
  }

  /** Sends catch-up frames while the socket's queue is short; goes live once current. */
  private pump(ws: uWS.WebSocket<AgentConn>): void {
    const conn = ws.getUserData();
    ws.cork(() => {
      let buffered: number;
      while (conn.phase === 'catchup' && (buffered = ws.getBufferedAmount()) < this.lowWater) {
        const frames = conn.catchUp!.next(this.lowWater - buffered);
        if (frames !== null && frames.length === 0) return; // its snapshot is on the way (onSnapshotReady)
        if (frames === null) {
          // Current: from here on pub/sub carries every delta. Tell the agent where the hub is.
          ws.subscribe(TOPIC);
          conn.phase = 'live';
          conn.catchUp = undefined;
          this.liveCount++;
          this.send(ws, this.progressFrame(this.state.revision, this.state.stale));
          if (conn.protocol >= 2) {
            ws.subscribe(MEMBERS_TOPIC);
            if (this.membersFrame) this.send(ws, this.membersFrame);
          }
          return;
        }
        for (const f of frames) if (!this.send(ws, f)) return;
      }
    });
  }

  /** A snapshot some catch-ups were waiting for is there: they go on. */
  private pumpAll(): void {
    for (const ws of [...this.conns]) if (ws.getUserData().phase === 'catchup') this.pump(ws);
  }

  /** Returns false when the frame could not be queued (the socket is being closed). */
  private send(ws: uWS.WebSocket<AgentConn>, frame: Buffer): boolean {
    const status = ws.send(frame, true);
    if (status === 2) {
      const conn = ws.getUserData();
      this.logConn('warn', { agent: conn.id, node: conn.node }, 'agent too slow during catch-up; disconnecting');
      conn.closedSlow = true;
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
      this.beforePublish(frame.length);
      this.app.publish(TOPIC, frame, true);
      this.counters.deltasSentFrames += this.liveCount;
      this.counters.bytesSent += frame.length * this.liveCount;
    }
    this.wakeWaiting();
  }

  /**
   * Sweeps the send queues whenever a quarter of the per-agent limit has been published since
   * the last sweep (or the next frame would make it so). Between two sweeps no queue grows by
   * more than that, so every agent that could reach the limit is closed here first — as slow,
   * and counted — before uWebSockets.js would close it with a 1006 that looks like any broken
   * connection. One pass over the agents per maxBackpressure/4 bytes published: cheap.
   */
  private beforePublish(bytes: number): void {
    if (this.publishedSinceSweep + bytes > this.sweepEveryBytes) this.sweepBackpressure(bytes);
    this.publishedSinceSweep += bytes;
  }

  private progressFrame(rev: number, stale: boolean): Buffer {
    return encodeFrame({ t: 'prog', rev, stale, pi: this.opts.progressIntervalMs, epoch: this.state.epoch });
  }

  private publishProgress(rev: number, stale: boolean): void {
    if (this.liveCount > 0) {
      const frame = this.progressFrame(rev, stale);
      this.beforePublish(frame.length);
      this.app.publish(TOPIC, frame, true);
    }
    this.wakeWaiting();
  }

  /**
   * Bounds what each agent and all agents together have queued (a few non-reading clients and
   * some big deltas would otherwise hold maxBackpressure each). An agent whose queue could pass
   * its limit before the next sweep is closed; over the hub-wide bound, the agents with the
   * most queued are closed until the total is under it. They resume from their revision.
   * @param incoming bytes about to be published to every live agent
   */
  private sweepBackpressure(incoming = 0): void {
    this.publishedSinceSweep = 0;
    let total = 0;
    const queued: Array<[number, uWS.WebSocket<AgentConn>]> = [];
    const perAgentLimit = this.opts.maxBackpressure - Math.max(incoming, this.sweepEveryBytes);
    for (const ws of this.conns) {
      const conn = ws.getUserData();
      if (conn.phase === 'closed') continue;
      const n = ws.getBufferedAmount();
      if (n === 0) continue;
      if (conn.phase === 'live' && n > perAgentLimit) {
        conn.closedSlow = true;
        this.logConn('warn', { agent: conn.id, node: conn.node, queuedBytes: n }, 'agent not keeping up; disconnecting (it resumes from its revision)');
        ws.end(1013, 'too slow');
        continue;
      }
      total += n;
      queued.push([n, ws]);
    }
    if (total <= this.maxTotalBackpressure) return;
    queued.sort((a, b) => b[0] - a[0]);
    for (const [n, ws] of queued) {
      if (total <= this.maxTotalBackpressure) break;
      const conn = ws.getUserData();
      conn.closedSlow = true;
      this.counters.totalBackpressureDisconnects++;
      this.logConn('warn', { agent: conn.id, node: conn.node, queuedBytes: n, totalQueuedBytes: total }, 'hub-wide send queue over its bound; disconnecting the most backed-up agent');
      ws.end(1013, 'too slow');
      total -= n;
    }
  }

  private wakeWaiting(): void {
    if (this.waiting.size === 0 || !this.state.loaded || !this.isCurrent()) return;
    for (const ws of [...this.waiting]) {
      if (ws.getUserData().rev <= this.state.revision) {
        this.waiting.delete(ws);
        this.startCatchup(ws);
      }
    }
  }

  /** The hub became current (or was reset): agents waiting for that can be served. */
  notifyCurrent(): void {
    this.wakeWaiting();
    if (this.waiting.size > 0 && this.isCurrent()) this.checkAhead();
  }
}

/** Rejects when something on this machine already listens on host:port. */
export function assertPortFree(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      reject(new Error(err.code === 'EADDRINUSE'
        ? `${host}:${port} is already in use (another hub, or another program, listens there); refusing to share it`
        : `cannot listen on ${host}:${port}: ${err.message}`));
    });
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}
