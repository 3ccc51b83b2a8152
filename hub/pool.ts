// The hub's fan-out across worker threads (DESIGN.md, "Scaling the hub across cores"). The
// main thread keeps the store sync and the HubState — one etcd watch, each frame encoded
// once — and writes every delta and state change into the frame ring (hub/ring.ts); N worker
// threads (hub/worker.ts) each serve a share of the agents from it, on one port.
//
// The main thread also answers what only it can: where a (re)starting worker begins reading
// the ring (a summary at a ring sequence), snapshots (encoded once per revision by HubState,
// copied once into shared memory for all workers), store reads, /metrics. A worker that
// crashes is started again; its agents reconnect — to any worker — and resume.
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../shared/log.js';
import { HUB_DEFAULTS } from './defaults.js';
import type { AgentInfo, Fanout, HubCounters } from './fanout.js';
import { counterBlocks, hubAgents, hubMoving, summedCounters, workerCounters, type MainToWorker, type WorkerGauges, type WorkerInit, type WorkerToMain } from './pool-protocol.js';
import { RECORD_DELTA, RECORD_STATE, RingWriter, type RingSize } from './ring.js';
import { assertPortFree, type RouteHandler } from './server.js';
import type { HubState } from './state.js';
import type { StateSummary } from './worker-state.js';

export interface PoolOptions {
  workers: number;
  ring: RingSize;
  server: WorkerInit['server'];
  token?: string;
  routes?: Record<string, RouteHandler>;
}

interface Slot {
  worker?: Worker;
  listening?: Promise<number>;
  exited: Promise<void>;
  drained?: () => void;
  stalling?: () => void;
  restarts: number;
  /** Consecutive crashes without a successful listen (backs off the restarts). */
  failures: number;
}

/**
 * Starts a worker thread on hub/worker: compiled (dist/), or from the sources when this module
 * runs under tsx (the tests) — a worker thread does not inherit tsx's loader on Node 20, so it
 * registers it first.
 */
function spawnWorker(workerData: WorkerInit): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./worker.js', import.meta.url), { workerData });
  const url = new URL('./worker.ts', import.meta.url).href;
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(url)}); })`, { eval: true, workerData });
}

export class WorkerPool implements Fanout {
  port = 0;
  private readonly ring: RingPublisher;
  private readonly counterSab: SharedArrayBuffer;
  private readonly slots: Slot[];
  private closing = false;
  /** The last snapshot copied into shared memory, per kind (HubState caches one per revision). */
  private shared: { plain?: SharedSnapshot; reset?: SharedSnapshot } = {};
  probeStore?: () => Promise<{ revision: number }>;
  listPresent?: (why: string, stillNeeded: () => boolean) => void;
  isCurrent: () => boolean = () => true;

  constructor(private readonly state: HubState, private readonly opts: PoolOptions, private readonly log: Logger) {
    if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new Error(`a worker pool needs at least one worker (got ${opts.workers})`);
    this.ring = new RingPublisher(state, opts.ring, () => this.isCurrent(), log);
    this.counterSab = counterBlocks(opts.workers);
    this.slots = Array.from({ length: opts.workers }, () => ({ restarts: 0, failures: 0, exited: Promise.resolve() }));
  }

  get workers(): number { return this.slots.length; }
  /** Records written to the ring. */
  get ringRecords(): number { return this.ring.written; }
  /** Deltas too large for the ring, sent as a snapshot to every agent instead. */
  get oversizeRecords(): number { return this.ring.oversize; }
  get agentCount(): number { return hubAgents(this.counterSab); }
  get counters(): HubCounters { return summedCounters(this.counterSab); }
  get movingCount(): number { return hubMoving(this.counterSab); }

  private membersFrame?: Buffer;
  private requestId = 0;
  private readonly replies = new Map<number, (m: WorkerToMain) => void>();

  setMembers(frame: Buffer): void {
    this.membersFrame = frame;
    for (const slot of this.slots) this.send(slot, { t: 'members', frame });
  }

  /** Splits the moves over the workers by their agent counts. */
  async moveAgents(count: number, targets: readonly string[], reason: string, spreadMs: number): Promise<number> {
    const total = this.agentCount;
    if (total === 0 || count <= 0) return 0;
    let left = count;
    const shares = this.slots.map((_, i) => {
      const share = Math.min(left, Math.ceil((count * this.workerStats(i).gauges.agents) / total));
      left -= share;
      return share;
    });
    let offset = 0;
    const asked = await Promise.all(this.slots.map(async (slot, i) => {
      if (shares[i] === 0 || !slot.worker) return 0;
      const mine = targets.slice(offset).concat(targets.slice(0, offset));
      offset = (offset + shares[i]) % targets.length;
      const [answer] = await this.askOne(slot, (id) => ({ t: 'move', id, count: shares[i], targets: mine, reason, spreadMs }));
      return answer?.t === 'moved' ? answer.asked : 0;
    }));
    return asked.reduce((a, b) => a + b, 0);
  }

  /** Asks one worker; resolves with its answer, or nothing if it exits first. */
  private askOne(slot: Slot, question: (id: number) => MainToWorker): Promise<WorkerToMain[]> {
    return new Promise((resolve) => {
      const id = ++this.requestId;
      this.replies.set(id, (m) => resolve([m]));
      void slot.exited.then(() => { if (this.replies.delete(id)) resolve([]); });
      this.send(slot, question(id));
    });
  }

  async agents(): Promise<AgentInfo[]> {
    const answers = await Promise.all(this.slots.filter((s) => s.worker).map((slot) => this.askOne(slot, (id) => ({ t: 'agents?', id }))));
    return answers.flat().flatMap((a) => (a.t === 'agents' ? a.agents : []));
  }
  /** Worker `i`'s own counters and gauges (metrics per worker). */
  workerStats(i: number): { counters: HubCounters; gauges: WorkerGauges; restarts: number } {
    const c = workerCounters(this.counterSab, i);
    return { counters: { ...c.counters }, gauges: { ...c.gauges }, restarts: this.slots[i].restarts };
  }

  /** Starts the workers: the first on the configured port (0 = any), the rest on the port it got. */
  async listen(): Promise<number> {
    const { host, port } = this.opts.server;
    // The workers share the port on purpose (SO_REUSEPORT); another hub must not (DESIGN.md).
    // uWebSockets.js does not share a port it was given as 0 (the kernel's pick is not
    // reusable): a free port is picked here instead, and every worker listens on it.
    this.port = port !== 0 ? port : await freePort(host);
    await assertPortFree(host, this.port);
    try {
      await Promise.all(this.slots.map((_, i) => this.start(i, this.port)));
    } catch (err) {
      await this.close(); // the workers that did start must not outlive a hub that failed to
      throw err;
    }
    return this.port;
  }

  notifyCurrent(): void { this.ring.writeState('current'); }

  async drainAgents(spreadMs: number, graceMs: number, targets: readonly string[] = []): Promise<void> {
    await Promise.all(this.slots.map((slot) => new Promise<void>((resolve) => {
      if (!slot.worker) { resolve(); return; }
      slot.drained = resolve;
      this.send(slot, { t: 'drain', spreadMs, graceMs, targets: [...targets] });
    })));
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const slot of this.slots) this.send(slot, { t: 'close' });
    await Promise.all(this.slots.map((s) => s.exited));
  }

  /** Fault injection (tests): worker `i` throws as a bug would. */
  crashWorker(i: number, why: string): void { this.send(this.slots[i], { t: 'crash', why }); }

  /** Fault injection (tests): worker `i` blocks for `ms`; resolves when it has begun to. */
  stallWorker(i: number, ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.slots[i].stalling = resolve;
      this.send(this.slots[i], { t: 'stall', ms });
    });
  }

  private send(slot: Slot, m: MainToWorker): void { slot.worker?.postMessage(m); }

  private start(index: number, port: number): Promise<number> {
    const slot = this.slots[index];
    const init: WorkerInit = {
      index,
      ring: { sab: this.ring.sab, size: this.opts.ring },
      counters: this.counterSab,
      server: { ...this.opts.server, port },
      token: this.opts.token,
      routes: Object.keys(this.opts.routes ?? {}),
      logLevel: this.log.level,
    };
    const worker = spawnWorker(init);
    slot.worker = worker;
    let listened: (port: number) => void = () => {};
    let failed: (err: Error) => void = () => {};
    slot.listening = new Promise<number>((resolve, reject) => { listened = resolve; failed = reject; });
    slot.listening.catch(() => { /* a restart that fails is logged, and retried */ });
    slot.exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.on('message', (m: WorkerToMain) => this.onMessage(slot, worker, m, listened));
    worker.on('error', (err) => this.log.error({ worker: index, err: err.message }, 'hub worker failed'));
    worker.once('exit', (code) => {
      slot.worker = undefined;
      workerCounters(this.counterSab, index).gauges.agents = 0;
      failed(new Error(`hub worker ${index} exited (code ${code}) before it listened`));
      slot.drained?.();
      if (this.closing) return;
      slot.restarts++;
      slot.failures++;
      const delay = Math.min(HUB_DEFAULTS.workerRestartCapMs, HUB_DEFAULTS.workerRestartBaseMs * 2 ** (slot.failures - 1));
      this.log.error({ worker: index, code, restartInMs: delay }, 'hub worker exited; starting it again (its agents reconnect and resume)');
      setTimeout(() => { if (!this.closing) void this.start(index, this.port).catch(() => {}); }, delay).unref();
    });
    return slot.listening;
  }

  private onMessage(slot: Slot, worker: Worker, m: WorkerToMain, listened: (port: number) => void): void {
    const reply = (r: MainToWorker) => worker.postMessage(r);
    switch (m.t) {
      case 'listening':
        slot.failures = 0;
        if (this.membersFrame) reply({ t: 'members', frame: this.membersFrame });
        listened(m.port);
        return;
      case 'moved':
      case 'agents': {
        const r = this.replies.get(m.id);
        this.replies.delete(m.id);
        r?.(m);
        return;
      }
      case 'summary?':
        // Everything before ring sequence `written` is in this summary; the worker reads on from there.
        reply({ t: 'summary', seq: this.ring.written, summary: this.ring.summary('summary') });
        return;
      case 'snap?': {
        const snap = this.sharedSnapshot(m.reset);
        reply({ t: 'snap', reset: m.reset, seq: this.ring.written, rev: snap.rev, sab: snap.sab, parts: snap.parts });
        return;
      }
      case 'probe?':
        if (!this.probeStore) { reply({ t: 'probe', id: m.id, revision: 0, error: 'no store to read' }); return; }
        this.probeStore().then(
          (p) => reply({ t: 'probe', id: m.id, revision: p.revision }),
          (err: Error) => reply({ t: 'probe', id: m.id, revision: 0, error: err.message }),
        );
        return;
      case 'list?':
        this.listPresent?.(m.why, () => this.state.revision < m.aheadRev);
        return;
      case 'route?':
        void this.route(m.path).then((a) => reply({ t: 'route', id: m.id, ...a }));
        return;
      case 'log':
        this.forwardLog(m.line, this.slots.indexOf(slot));
        return;
      case 'drained':
        slot.drained?.();
        slot.drained = undefined;
        return;
      case 'stalling':
        slot.stalling?.();
        slot.stalling = undefined;
        return;
      case 'crashed':
        this.log.error({ worker: this.slots.indexOf(slot), err: m.error }, 'hub worker stopped');
        return; // its exit follows (and restarts it)
    }
  }

  private async route(path: string): Promise<{ status: number; contentType: string; body: string }> {
    try {
      const out = await this.opts.routes![path]();
      return { status: out.status, contentType: out.contentType, body: await out.body };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.log.error({ path, err: message }, 'hub route failed; answered 500');
      return { status: 500, contentType: 'text/plain; charset=utf-8', body: `internal error: ${message}` };
    }
  }

  private forwardLog(line: string, worker: number): void {
    let rec: Record<string, unknown>;
    try { rec = JSON.parse(line) as Record<string, unknown>; } catch { return; }
    const { level, msg, time: _time, pid: _pid, hostname: _hostname, ...fields } = rec;
    const name = this.log.levels.labels[level as number] as 'info' | 'warn' | 'error' | 'debug' | undefined;
    const fn = name ? this.log[name] : undefined;
    if (fn) fn.call(this.log, { ...fields, worker }, typeof msg === 'string' ? msg : '');
  }

  private sharedSnapshot(reset: boolean): SharedSnapshot {
    const parts = reset ? this.state.resetSnapshotFrames() : this.state.snapshotFrames();
    const kind = reset ? 'reset' : 'plain';
    const have = this.shared[kind];
    if (have?.source === parts) return have;
    let total = 0;
    for (const f of parts.frames) total += f.length;
    const sab = new SharedArrayBuffer(total);
    const bytes = new Uint8Array(sab);
    const offsets: Array<[number, number]> = [];
    let off = 0;
    for (const f of parts.frames) { bytes.set(f, off); offsets.push([off, f.length]); off += f.length; }
    const snap = { source: parts, rev: parts.rev, sab, parts: offsets };
    this.shared[kind] = snap;
    return snap;
  }
}

/**
 * Writes a HubState's changes into a frame ring, in order: each delta as it is (its encoded
 * frame), and every other change as a STATE record carrying the state's scalars after it (a
 * StateSummary) — what a RingState on the other side needs to be the same state.
 */
export class RingPublisher {
  private readonly writer: RingWriter;
  /** Deltas larger than the whole ring, sent to every agent as a snapshot instead. */
  oversize = 0;

  constructor(private readonly state: HubState, readonly size: RingSize, private readonly isCurrent: () => boolean, private readonly log: Logger) {
    this.writer = new RingWriter(size);
    state.setListener({
      onDelta: (frame, prev, rev) => this.append(RECORD_DELTA, prev, rev, frame),
      onProgress: () => this.writeState('progress'),
      onReset: () => this.writeState('reset'),
      onCorrected: () => this.writeState('corrected'),
      onGaps: () => this.writeState('gaps'),
    });
  }

  get sab(): SharedArrayBuffer { return this.writer.sab; }
  /** Records written so far (the next record's sequence number). */
  get written(): number { return this.writer.written; }

  summary(ev: StateSummary['ev']): StateSummary {
    const s = this.state;
    return {
      ev, rev: s.revision, lastChangeRev: s.lastChangeRev, stale: s.stale, loaded: s.loaded,
      current: this.isCurrent(), epoch: s.epoch, gaps: s.unknownRevisions.map(([lo, hi]) => [lo, hi]),
      ...(s.pendingGap ? { pendingGap: [s.pendingGap[0], s.pendingGap[1]] as [number, number] } : {}),
    };
  }

  writeState(ev: StateSummary['ev']): void {
    this.append(RECORD_STATE, 0, this.state.revision, Buffer.from(JSON.stringify(this.summary(ev))));
  }

  private append(kind: number, prev: number, rev: number, bytes: Buffer): void {
    // Workers serve a revision from the ring only where this thread's history would (its gaps
    // are kept only as far back as the history reaches).
    this.writer.setFloor(this.state.history.oldestPrev ?? Number.MAX_SAFE_INTEGER);
    if (bytes.length <= this.writer.size.bytes) { this.writer.append(kind, prev, rev, bytes); return; }
    // A delta larger than the whole ring cannot reach the workers: every agent is sent the
    // state as a snapshot instead (as after a correction), and the history before it is cut.
    this.oversize++;
    this.log.warn({ rev, bytes: bytes.length, ringBytes: this.writer.size.bytes }, 'a delta is larger than the frame ring: sending every agent a snapshot instead');
    this.append(RECORD_STATE, 0, rev, Buffer.from(JSON.stringify(this.summary('corrected'))));
  }

}

/** A port nothing listens on now, picked by the kernel. */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen({ host, port: 0, exclusive: true }, () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

interface SharedSnapshot { source: object; rev: number; sab: SharedArrayBuffer; parts: Array<[number, number]> }
