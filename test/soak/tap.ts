// A tap on each hub: a protocol client connected straight to the hub (no fault proxy), which
// applies the hub's snapshots and deltas like an agent and holds the state the hub claims at
// every revision against etcd's. A finding here is the hub's; one only an agent shows is the
// agent's (or its link's).
import WebSocket from 'ws';
import { decodeFrame, encodeFrame, PROTOCOL_VERSION, type HubFrame } from '../../shared/protocol.js';
import type { Findings } from './checker.js';
import { StateHash, type History } from './history.js';
import { diffKeys, isKept, type State } from './model.js';
import type { ManagedProc } from './procs.js';

interface PendingClaim { revision: number; hash: bigint; state: State; what: string; recent: string }

/** How many mismatches per hub get a key-level diff (each costs a replay of the history). */
const DETAILED_MISMATCHES = 3;

export class HubTap {
  private ws: WebSocket | undefined;
  private running = true;
  private done: Promise<void> | undefined;
  private readonly state: State = new Map();
  private readonly hash = new StateHash();
  private revision = 0;
  private pendingSnapshot: Array<[string, string]> | undefined;
  private readonly pending: PendingClaim[] = [];
  private detailed = 0;
  frames = 0;
  claims = 0;
  /** The last frames, summarised, for the first detailed findings. */
  private readonly recent: string[] = [];
  private note(line: string): void {
    this.recent.push(line);
    if (this.recent.length > 8) this.recent.shift();
  }

  constructor(
    private readonly hub: ManagedProc,
    private readonly history: History,
    private readonly historyHash: (index: number) => bigint,
    private readonly findings: Findings,
    /** A hopping tap reconnects every hopMs, resuming from its revision each time (0: stays). */
    private readonly hopMs = 0,
  ) {}

  private get label(): string { return `${this.hub.name}${this.hopMs ? ' (resuming tap)' : ''}`; }

  start(): void { this.done = this.loop(); }

  async stop(): Promise<void> {
    this.running = false;
    this.ws?.terminate();
    await this.done;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      if (this.hub.state === 'up') await this.connectOnce();
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private connectOnce(): Promise<void> {
    return new Promise((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${this.hub.port}`, { handshakeTimeout: 3000, maxPayload: 256 * 1024 * 1024, perMessageDeflate: false });
      this.ws = ws;
      ws.binaryType = 'nodebuffer';
      let hop: NodeJS.Timeout | undefined;
      ws.on('open', () => {
        this.note(`hello rev ${this.revision}`);
        ws.send(encodeFrame({ t: 'hello', v: PROTOCOL_VERSION, node: 'soak-tap', rev: this.revision }));
        if (this.hopMs) hop = setTimeout(() => ws.terminate(), this.hopMs / 2 + Math.random() * this.hopMs);
      });
      ws.on('message', (data: Buffer) => {
        this.frames++;
        try {
          this.handle(decodeFrame(data) as HubFrame);
        } catch (error) {
          this.findings.add('hub-protocol', this.label, (error as Error).message);
          ws.terminate();
        }
      });
      ws.on('error', () => {});
      ws.on('close', () => { clearTimeout(hop); this.pendingSnapshot = undefined; resolve(); });
    });
  }

  private handle(frame: HubFrame): void {
    this.note(frame.t === 'snap' ? `snap rev ${frame.rev} part ${frame.part}${frame.last ? ' last' : ''} (${frame.puts.length} keys${frame.stale ? ', stale' : ''})`
      : frame.t === 'delta' ? `delta ${frame.prev}→${frame.rev} (${frame.puts.length} puts, ${frame.dels.length} dels)`
      : frame.t === 'prog' ? `prog ${frame.rev}${frame.stale ? ' stale' : ''}`
      : frame.t);
    switch (frame.t) {
      case 'snap': {
        if (frame.part === 0) this.pendingSnapshot = [];
        if (!this.pendingSnapshot) throw new Error(`snapshot part ${frame.part} without part 0`);
        this.pendingSnapshot.push(...frame.puts);
        if (!frame.last) return;
        const entries = this.pendingSnapshot.filter(([k]) => isKept(k));
        this.pendingSnapshot = undefined;
        if (frame.puts.some(([k]) => !isKept(k))) this.findings.add('hub-protocol', this.label, 'a snapshot carries keys outside the API ranges');
        if (frame.rev < this.revision) {
          this.findings.add('hub-snapshot-older', this.label, `snapshot at rev ${frame.rev} to a client that said hello at rev ${this.revision}`);
          return;
        }
        this.state.clear();
        for (const [k, v] of entries) this.state.set(k, v);
        this.hash.reset(entries);
        this.revision = frame.rev;
        this.claim(`snapshot at rev ${frame.rev}${frame.stale ? ' (stale)' : ''}`);
        return;
      }
      case 'delta': {
        if (this.pendingSnapshot) throw new Error('delta in the middle of a snapshot');
        if (frame.rev <= this.revision) return;
        if (frame.prev > this.revision) throw new Error(`delta ${frame.prev}→${frame.rev} does not follow rev ${this.revision} (a gap)`);
        for (const k of frame.dels) { this.state.delete(k); this.hash.delete(k); }
        for (const [k, v] of frame.puts) { this.state.set(k, v); this.hash.set(k, v); }
        this.revision = frame.rev;
        this.claim(`delta ${frame.prev}→${frame.rev} (${frame.puts.length} puts, ${frame.dels.length} dels)`);
        return;
      }
      case 'prog': {
        if (frame.rev < this.revision) return;
        if (frame.rev > this.revision) {
          this.revision = frame.rev;
          if (!frame.stale) this.claim(`progress to rev ${frame.rev}`);
        }
        return;
      }
      default:
        return; // move, err: the tap stays until the hub closes it
    }
  }

  /** The hub says: this is etcd's state (of the API ranges) at `this.revision`. */
  private claim(what: string): void {
    this.claims++;
    this.pending.push({ revision: this.revision, hash: this.hash.value, state: new Map(this.state), what, recent: this.recent.join(' | ') });
    this.drain(false);
  }

  drain(final: boolean): void {
    while (this.pending.length) {
      const c = this.pending[0];
      if (!final && c.revision >= this.history.lastRevision) return;
      this.pending.shift();
      const at = this.history.indexAt(c.revision);
      if (at >= 0 && this.historyHash(at) === c.hash) continue;
      let detail = '';
      if (at >= 0 && this.detailed < DETAILED_MISMATCHES) {
        this.detailed++;
        const state = this.history.stateAt(at);
        const keys = state ? diffKeys(Object.fromEntries(state), Object.fromEntries(c.state)) : ['(state no longer kept)'];
        detail = `: differs from etcd in ${keys.slice(0, 6).join(' ')}${keys.length > 6 ? ` …(${keys.length})` : ''}; frames: ${c.recent}`;
      }
      this.findings.add('hub-state', this.label, `after ${c.what} the hub's state is not etcd's at ${this.history.describe(at)}${detail}`);
    }
  }
}
