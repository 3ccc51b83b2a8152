// The agent's connection to the hub tier: hello with our revision, then snapshot or missing
// deltas, then live deltas and progress frames. Fails over between hubs with exponential
// backoff and full jitter; treats three silent progress periods as a dead hub.
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { Backoff } from '../shared/backoff.js';
import type { Logger } from '../shared/log.js';
import { decodeFrame, encodeFrame, PROTOCOL_VERSION, PROTOCOL_VERSION_MAX, type HelloFrame, type HubFrame, type MemberInfo, type SnapshotFrame } from '../shared/protocol.js';
import { VERSION } from '../shared/version.js';
import type { Cache } from './cache.js';
import { AGENT_DEFAULTS } from './defaults.js';

export interface HubClientOptions {
  /** The -hub list: seeds. The hub tier's members are learnt from the hubs (protocol 2). */
  hubs: string[];
  /** Members learnt before (the state file): tried beside the seeds until a hub says who is live. */
  knownHubs?: string[];
  /** The highest protocol version to speak (default PROTOCOL_VERSION_MAX; 1 behaves as an agent from before version 2). */
  protocolMax?: number;
  node: string;
  token?: string;
  caFile?: string;
  /** A hub that sends nothing for this long is considered dead (3 × its progress interval). */
  silenceTimeoutMs: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  /** Largest frame accepted from a hub (snapshot parts are ~512 KB). */
  maxFrameBytes?: number;
}

export interface HubClientStatus {
  hub: string;
  connected: boolean;
  live: boolean;
  hubRevision: number;
  lastFrameAt: number;
  reconnects: number;
  snapshots: number;
  /** Reset snapshots taken (the store's history was replaced under us). */
  resets: number;
  lastError: string;
  /** The hub tier's live members, as the last hub said (empty: none said yet). */
  members: MemberInfo[];
  /** Moves a hub asked for (balance or shutdown). */
  moves: number;
}

export class HubClient {
  private ws?: WebSocket;
  /** Where to connect, in turn: the members (shuffled) and the seeds not among them. */
  private candidates: string[];
  private hubIndex: number;
  /** The next connection goes here (a hub's move frame said so). */
  private moveTo?: string;
  private readonly backoff: Backoff;
  private retryTimer?: NodeJS.Timeout;
  private silenceTimer?: NodeJS.Timeout;
  private moveTimer?: NodeJS.Timeout;
  private stopped = false;
  private pendingSnapshot?: { rev: number; parts: number; entries: Array<[string, string]> };
  private readonly ca?: Buffer;
  /** -silence-timeout until a hub tells us its progress interval (see the prog frame). */
  silenceTimeoutMs: number;
  readonly status: HubClientStatus = { hub: '', connected: false, live: false, hubRevision: 0, lastFrameAt: 0, reconnects: 0, snapshots: 0, resets: 0, lastError: '', members: [], moves: 0 };
  /** Called whenever the connection state changes (for staleness and metrics). */
  onStatus?: () => void;
  /** Called when the hub tier's members change (to persist them). */
  onMembers?: (urls: string[]) => void;

  constructor(private readonly opts: HubClientOptions, private readonly cache: Cache, private readonly log: Logger) {
    if (opts.hubs.length === 0) throw new Error('no hub address given');
    this.candidates = candidateList(opts.hubs, opts.knownHubs ?? []);
    // Start on a random hub so the agents of a cluster spread over the hub tier.
    this.hubIndex = Math.floor(Math.random() * this.candidates.length);
    this.backoff = new Backoff(opts.backoffBaseMs, opts.backoffCapMs);
    this.silenceTimeoutMs = opts.silenceTimeoutMs;
    if (opts.caFile) this.ca = readFileSync(opts.caFile);
  }

  start(): void { this.connect(); }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.moveTimer);
    clearTimeout(this.silenceTimer);
    this.ws?.terminate();
  }

  private connect(): void {
    if (this.stopped) return;
    const url = this.moveTo ?? this.candidates[this.hubIndex];
    this.moveTo = undefined;
    this.status.hub = url;
    const headers: Record<string, string> = {};
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    const ws = new WebSocket(url, {
      headers,
      ca: this.ca,
      handshakeTimeout: AGENT_DEFAULTS.hubHandshakeTimeoutMs,
      maxPayload: this.opts.maxFrameBytes ?? AGENT_DEFAULTS.maxHubFrameBytes,
      perMessageDeflate: false,
    });
    this.ws = ws;
    let attemptError = '';
    // Stryker disable next-line StringLiteral: 'nodebuffer' is ws's default binaryType and ws ignores a type it does not know, so the emptied string leaves it as it is
    ws.binaryType = 'nodebuffer';
    ws.on('open', () => {
      this.status.connected = true;
      this.status.lastError = '';
      this.pendingSnapshot = undefined;
      // v is the base version every hub checks; vmax lets a newer hub speak more (protocol.ts).
      const hello: HelloFrame = { t: 'hello', v: PROTOCOL_VERSION, node: this.opts.node, rev: this.cache.hasState ? this.cache.revision : 0 };
      const vmax = this.opts.protocolMax ?? PROTOCOL_VERSION_MAX;
      if (vmax > PROTOCOL_VERSION) { hello.vmax = vmax; hello.ver = VERSION; }
      if (this.cache.hasState && this.cache.epoch) hello.epoch = this.cache.epoch;
      ws.send(encodeFrame(hello));
      this.heard();
      this.log.info({ hub: url, rev: this.cache.revision }, 'connected to hub');
      this.onStatus?.();
    });
    ws.on('message', (data: Buffer, isBinary) => {
      // A connection we dropped (fail() terminates it) still delivers the frames that had
      // already arrived: acting on them — a progress frame after a refused gap delta — would
      // move our revision past changes we never got.
      if (ws !== this.ws || ws.readyState !== WebSocket.OPEN) return;
      this.heard();
      try {
        if (!isBinary) throw new Error('text frame from hub');
        this.handle(decodeFrame(data) as HubFrame);
      } catch (err) {
        this.fail(`bad frame from hub: ${(err as Error).message}`);
      }
    });
    ws.on('unexpected-response', (_req, res) => {
      attemptError = `hub answered HTTP ${res.statusCode}${res.statusCode === 401 ? ' (token missing or wrong)' : ''}`;
      this.status.lastError = attemptError;
      ws.terminate();
    });
    ws.on('error', (err) => {
      // The first error of this attempt says why it failed (later ones are its consequences).
      if (!attemptError) {
        attemptError = err.message;
        this.status.lastError = attemptError;
      }
    });
    ws.on('close', (code, reason) => {
      if (ws !== this.ws) return;
      this.closed(code, reason.toString());
    });
  }

  private handle(frame: HubFrame): void {
    switch (frame.t) {
      case 'snap': return this.snapshotPart(frame);
      case 'delta': {
        if (this.pendingSnapshot) throw new Error('delta in the middle of a snapshot');
        if (frame.rev <= this.cache.revision) return; // already have it
        if (frame.prev > this.cache.revision) {
          // A gap: resuming from our revision on a fresh connection fixes it.
          throw new Error(`delta ${frame.prev}→${frame.rev} does not follow our revision ${this.cache.revision}`);
        }
        this.cache.applyDelta(frame.rev, frame.puts, frame.dels);
        this.status.hubRevision = Math.max(this.status.hubRevision, frame.rev);
        return;
      }
      case 'prog': {
        if (this.pendingSnapshot) throw new Error('progress in the middle of a snapshot');
        this.status.hubRevision = frame.rev;
        this.cache.advance(frame.rev);
        this.cache.hubStale = frame.stale;
        if (frame.epoch) this.cache.epoch = frame.epoch;
        if (frame.pi !== undefined && frame.pi > 0) {
          // Three of the hub's own progress periods (plus a second for the network), never
          // less than we were configured with: a hub with a long interval is not "silent".
          const timeout = Math.max(this.opts.silenceTimeoutMs, 3 * frame.pi + 1000);
          if (timeout !== this.silenceTimeoutMs) { this.silenceTimeoutMs = timeout; this.heard(); }
        }
        if (!this.status.live) {
          // The hub sends its first progress frame when we are caught up: we are live, and
          // what we serve is the hub's present (also a state loaded from our file).
          this.status.live = true;
          this.cache.source = 'hub';
          this.backoff.reset();
          this.log.info({ hub: this.status.hub, rev: this.cache.revision, hubStale: frame.stale }, 'in sync with hub');
        }
        this.onStatus?.();
        return;
      }
      case 'move': {
        this.log.info({ hub: this.status.hub, afterMs: frame.afterMs, reason: frame.reason, to: frame.to }, 'hub asked us to move');
        this.status.moves++;
        this.moveAfter(frame.afterMs, frame.to);
        return;
      }
      case 'members':
        this.learnMembers(frame.hubs);
        return;
      case 'err':
        throw new Error(`hub error ${frame.code}: ${frame.msg}`);
    }
  }

  private snapshotPart(frame: SnapshotFrame): void {
    if (frame.part === 0) this.pendingSnapshot = { rev: frame.rev, parts: 0, entries: [] };
    const pending = this.pendingSnapshot;
    if (!pending || pending.rev !== frame.rev || pending.parts !== frame.part) throw new Error(`snapshot part ${frame.part} out of order`);
    for (const e of frame.puts) pending.entries.push(e);
    pending.parts++;
    if (!frame.last) return;
    this.pendingSnapshot = undefined;
    const before = this.cache.revision;
    if (!this.cache.replace(frame.rev, pending.entries, 'hub', frame.reset === true)) {
      throw new Error(`snapshot at ${frame.rev} is older than our revision ${this.cache.revision}`);
    }
    if (frame.epoch) this.cache.epoch = frame.epoch;
    if (frame.reset) {
      this.status.resets++;
      this.log.error({ hub: this.status.hub, oldRev: before, rev: frame.rev, epoch: frame.epoch },
        'the store was reset (etcd restored from an older backup or rebuilt): took the hub\'s state as the truth');
    }
    this.cache.hubStale = frame.stale;
    this.status.snapshots++;
    this.status.hubRevision = Math.max(this.status.hubRevision, frame.rev);
    this.log.info({ hub: this.status.hub, rev: frame.rev, keys: pending.entries.length }, 'snapshot applied');
  }

  private heard(): void {
    this.status.lastFrameAt = Date.now();
    clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => this.fail(`hub silent for ${this.silenceTimeoutMs} ms`), this.silenceTimeoutMs);
  }

  private fail(reason: string): void {
    this.status.lastError = reason;
    this.log.warn({ hub: this.status.hub, reason }, 'dropping hub connection');
    // Stryker disable next-line OptionalChaining: fail() runs from this.ws's own message handler or its silence timer, and moveAfter clears that timer when it clears this.ws: this.ws is always set here
    this.ws?.terminate();
  }

  /**
   * The hub is shutting down: keep using it until our turn (the hub spreads its agents over
   * time), then leave for the next hub in the list without counting it as a failure.
   */
  private moveAfter(afterMs: number, to?: string): void {
    const ws = this.ws;
    clearTimeout(this.moveTimer);
    this.moveTimer = setTimeout(() => {
      // Stryker disable next-line LogicalOperator: closed(), stop() and a later move frame all clear this timer, so when it fires ws is this.ws and set, and || and && both give false
      if (ws !== this.ws || !ws) return;
      this.ws = undefined;
      clearTimeout(this.silenceTimer);
      this.markDisconnected();
      ws.close(1000, 'moving');
      if (to) this.moveTo = to;
      else this.hubIndex = (this.hubIndex + 1) % this.candidates.length;
      this.connect();
    }, afterMs);
  }

  private closed(code: number, reason: string): void {
    clearTimeout(this.silenceTimer);
    clearTimeout(this.moveTimer);
    const wasLive = this.status.live;
    this.markDisconnected();
    if (this.stopped) return;
    this.status.reconnects++;
    // Next hub in the list: a dead hub is not retried before the others.
    this.moveTo = undefined;
    this.hubIndex = (this.hubIndex + 1) % this.candidates.length;
    const delay = this.backoff.next();
    this.log.warn({ code, reason, lastError: this.status.lastError, wasLive, next: this.candidates[this.hubIndex], retryInMs: Math.round(delay) }, 'hub connection closed');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /**
   * A hub said who the live members are: they (and the seeds) are where we go from now on; a
   * member that left the registry is forgotten. Persisted, so a restart finds the tier even
   * when every seed is gone.
   */
  private learnMembers(hubs: MemberInfo[]): void {
    this.status.members = hubs;
    const urls = hubs.map((h) => h.url);
    const next = candidateList(this.opts.hubs, urls);
    if ([...next].sort().join(' ') === [...this.candidates].sort().join(' ')) return;
    const current = this.candidates[this.hubIndex];
    this.candidates = shuffle(next);
    const at = this.candidates.indexOf(current);
    this.hubIndex = at >= 0 ? at : 0;
    this.log.info({ members: urls }, 'hub tier members');
    this.onMembers?.(urls);
  }

  /** Where this client may connect, in the order it tries them. */
  get hubs(): readonly string[] { return this.candidates; }

  private markDisconnected(): void {
    this.status.connected = false;
    this.status.live = false;
    this.pendingSnapshot = undefined;
    this.onStatus?.();
  }
}

/** The seeds in their order, then the members not among them, each once. */
function candidateList(seeds: readonly string[], members: readonly string[]): string[] {
  return [...new Set([...seeds, ...members])];
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}
