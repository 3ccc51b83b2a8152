// A TCP fault proxy between a client and a server on loopback: a network a test can break.
//
//   cut()        partition: every connection destroyed, the port stops listening (ECONNREFUSED)
//   refuse()     the port listens, but every new connection is reset at once (old ones live on)
//   restore()    undo cut() and refuse()
//   delay(ms)    added latency per chunk, both directions (order kept)
//   throttle(r)  at most r bytes/s per direction per connection (0 = unlimited)
//   drop()       destroy the open connections, keep listening (the client reconnects at once)
//   cutAfter(n)  let n bytes through, then destroy the connection(s) — e.g. break an etcd watch
//                stream right after it is re-created, in the middle of its backlog
//   heal()       restore() + no delay, no throttle, no pending budget
//
// Counters (stats()) and events ('connection', 'refused', 'budget-exhausted', 'cut') let a test
// synchronise on what happened instead of sleeping. No test framework imports: bench/ and the
// soak use it too.
import { EventEmitter } from 'node:events';
import net from 'node:net';

/** Which bytes a budget counts: upstream→client only ('down') or both directions. */
export type BudgetDirection = 'down' | 'both';
/** Which connections a budget covers. */
export type BudgetTarget = 'next' | 'current' | 'current+next';

export interface BudgetOptions {
  direction?: BudgetDirection;
  /** 'next' (default): the next accepted connection; 'current': the ones open now; or both. */
  connections?: BudgetTarget;
}

export interface BudgetResult {
  /** true when the budget ran out and its connections were destroyed; false when cancelled. */
  cut: boolean;
  /** Bytes counted against the budget (== the budget when cut). */
  bytes: number;
  /** How many connections were destroyed. */
  connections: number;
}

export interface Budget {
  /** Resolves when the budget is exhausted (cut: true) or cancelled (cut: false). */
  readonly exhausted: Promise<BudgetResult>;
  cancel(): void;
}

export interface ConnectionInfo {
  /** 1, 2, … in order of acceptance. */
  id: number;
}

export interface ProxyStats {
  /** Connections accepted and forwarded (refused ones not included). */
  connections: number;
  /** Connections open right now. */
  active: number;
  /** Connections reset by refuse(). */
  refused: number;
  /** Bytes forwarded client→upstream. */
  bytesUp: number;
  /** Bytes forwarded upstream→client. */
  bytesDown: number;
  /** Calls of cut() that found the proxy listening. */
  cuts: number;
  /** Budgets that ran out. */
  budgetCuts: number;
}

/** The original API: a network partition between a hub and etcd. */
export interface CuttableProxy {
  port: number;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export interface FaultProxy extends CuttableProxy {
  readonly targetPort: number;
  /** 'connection' (ConnectionInfo), 'refused', 'budget-exhausted' (BudgetResult), 'cut'. */
  readonly events: EventEmitter;
  refuse(): void;
  /** Destroys every open connection but keeps listening; returns how many were dropped. */
  drop(): number;
  delay(ms: number): void;
  throttle(bytesPerSecond: number): void;
  cutAfter(bytes: number, opts?: BudgetOptions): Budget;
  heal(): Promise<void>;
  stats(): ProxyStats;
  /** Resolves at the next accepted connection (one accepted after this call). */
  nextConnection(timeoutMs?: number): Promise<ConnectionInfo>;
  /** Resolves once `stats().connections >= n` (already true or still to come). */
  waitForConnections(n: number, timeoutMs?: number): Promise<void>;
  readonly listening: boolean;
  readonly refusing: boolean;
}

/** Reading pauses while this many bytes wait in one direction (delay/throttle), so memory stays bounded. */
const QUEUE_HIGH_WATER = 1 << 20;
/** A throttled direction writes pieces worth this long at its rate, so the rate holds within ~50 ms. */
const THROTTLE_SLICE_MS = 50;
/** restore() retries the bind this often: the port was ours a moment ago, another bind may race. */
const RELISTEN_ATTEMPTS = 20;
const DEFAULT_WAIT_MS = 10_000;
/** After a budget's last bytes are written, how long the peer gets to take them before the cut. */
const LAST_FLUSH_MS = 2000;

class BudgetState {
  remaining: number;
  counted = 0;
  coversNext: boolean;
  readonly conns = new Set<ProxiedConnection>();
  done = false;
  resolve!: (r: BudgetResult) => void;
  readonly exhausted: Promise<BudgetResult>;
  constructor(readonly bytes: number, readonly direction: BudgetDirection, coversNext: boolean) {
    this.remaining = bytes;
    this.coversNext = coversNext;
    this.exhausted = new Promise((r) => (this.resolve = r));
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** One direction of one connection: a FIFO of chunks with their due times, pumped to `dst`. */
class Lane {
  private readonly queue: { buf: Buffer; due: number }[] = [];
  private queuedBytes = 0;
  private pumping = false;
  private sourceEnded = false;
  /** Throttle: when the link is free again (ms, Date.now() clock). */
  private linkFreeAt = 0;

  constructor(
    private readonly conn: ProxiedConnection,
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
    readonly dir: 'up' | 'down',
  ) {
    src.on('data', (buf: Buffer) => this.push(buf));
    src.on('end', () => {
      this.sourceEnded = true;
      void this.pump();
    });
  }

  private push(buf: Buffer): void {
    this.queue.push({ buf, due: Date.now() + this.conn.proxy.delayMs });
    this.queuedBytes += buf.length;
    if (this.queuedBytes > QUEUE_HIGH_WATER) this.src.pause();
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    const signal = this.conn.abort.signal;
    try {
      while (!signal.aborted && !this.conn.stopped) {
        const item = this.queue[0];
        if (!item) {
          if (this.sourceEnded) this.dst.end();
          return;
        }
        await sleep(item.due - Date.now(), signal);
        if (signal.aborted || this.conn.stopped) return;
        let piece = item.buf;
        const rate = this.conn.proxy.bytesPerSecond;
        if (rate > 0) {
          piece = piece.subarray(0, Math.max(1, Math.floor((rate * THROTTLE_SLICE_MS) / 1000)));
          await sleep(this.linkFreeAt - Date.now(), signal);
          if (signal.aborted || this.conn.stopped) return;
          this.linkFreeAt = Math.max(Date.now(), this.linkFreeAt) + (piece.length * 1000) / rate;
        }
        const { allowed, last } = this.conn.allowance(this.dir, piece.length);
        piece = piece.subarray(0, allowed);
        item.buf = item.buf.subarray(piece.length);
        if (item.buf.length === 0) this.queue.shift();
        this.queuedBytes -= piece.length;
        if (this.queuedBytes <= QUEUE_HIGH_WATER && !this.sourceEnded) this.src.resume();
        if (last) {
          // The budget's last bytes reach the peer before the connection is destroyed; a peer
          // that stops reading does not keep it alive past LAST_FLUSH_MS.
          let ranOut = false;
          const runOut = () => {
            if (ranOut) return;
            ranOut = true;
            this.conn.budgetRanOut();
          };
          this.conn.stopForwarding();
          if (piece.length > 0) {
            this.conn.proxy.count(this.dir, piece.length);
            this.dst.write(piece, runOut);
            setTimeout(runOut, LAST_FLUSH_MS).unref();
          } else {
            runOut();
          }
          return;
        }
        const flushed = this.dst.write(piece);
        this.conn.proxy.count(this.dir, piece.length);
        if (!flushed) {
          await new Promise<void>((resolve) => {
            const done = () => {
              this.dst.off('drain', done);
              signal.removeEventListener('abort', done);
              resolve();
            };
            this.dst.once('drain', done);
            signal.addEventListener('abort', done, { once: true });
          });
        }
      }
    } finally {
      this.pumping = false;
    }
  }
}

class ProxiedConnection {
  readonly abort = new AbortController();
  /** Set once a budget ran out: the other direction must not forward another byte. */
  stopped = false;
  readonly budgets = new Set<BudgetState>();
  private closed = false;

  constructor(
    readonly proxy: Proxy,
    readonly id: number,
    readonly client: net.Socket,
    readonly upstream: net.Socket,
  ) {
    new Lane(this, client, upstream, 'up');
    new Lane(this, upstream, client, 'down');
    const drop = () => this.destroy();
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  }

  /**
   * How many of `n` bytes in direction `dir` the budgets let through (all of them when none
   * applies), and whether a budget ran out with them: then these are the last bytes.
   */
  allowance(dir: 'up' | 'down', n: number): { allowed: number; last: boolean } {
    const applicable = [...this.budgets].filter((b) => !b.done && (dir === 'down' || b.direction === 'both'));
    let allowed = n;
    for (const b of applicable) allowed = Math.min(allowed, b.remaining);
    let last = false;
    for (const b of applicable) {
      b.remaining -= allowed;
      b.counted += allowed;
      if (b.remaining <= 0) last = true;
    }
    return { allowed, last };
  }

  /** A budget reached 0: forwarding stops at once; its connections are destroyed by the caller's flush. */
  budgetRanOut(): void {
    const exhausted = [...this.budgets].filter((b) => !b.done && b.remaining <= 0);
    this.abort.abort();
    for (const b of exhausted) this.proxy.exhaust(b);
  }

  stopForwarding(): void {
    this.stopped = true;
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.client.destroy();
    this.upstream.destroy();
    this.proxy.forget(this);
  }
}

class Proxy implements FaultProxy {
  readonly events = new EventEmitter();
  port = 0;
  delayMs = 0;
  bytesPerSecond = 0;
  private server: net.Server | undefined;
  private refusingNew = false;
  private readonly conns = new Set<ProxiedConnection>();
  private readonly budgets = new Set<BudgetState>();
  private readonly counters: Omit<ProxyStats, 'active'> = { connections: 0, refused: 0, bytesUp: 0, bytesDown: 0, cuts: 0, budgetCuts: 0 };

  constructor(readonly targetPort: number) {
    this.events.setMaxListeners(0);
  }

  get listening(): boolean { return this.server !== undefined; }
  get refusing(): boolean { return this.refusingNew; }

  async listen(port: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        this.port = await this.bind(port);
        return;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (port === 0 || code !== 'EADDRINUSE' || attempt >= RELISTEN_ATTEMPTS) throw error;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private bind(port: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const server = net.createServer({ allowHalfOpen: true }, (client) => this.accept(client));
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        this.server = server;
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  private accept(client: net.Socket): void {
    if (this.refusingNew) {
      this.counters.refused++;
      client.on('error', () => {});
      client.resetAndDestroy();
      this.events.emit('refused');
      return;
    }
    const upstream = net.connect({ port: this.targetPort, host: '127.0.0.1', allowHalfOpen: true });
    const id = ++this.counters.connections;
    const conn = new ProxiedConnection(this, id, client, upstream);
    this.conns.add(conn);
    for (const b of this.budgets) {
      if (b.coversNext) {
        b.coversNext = false;
        b.conns.add(conn);
        conn.budgets.add(b);
      }
    }
    this.events.emit('connection', { id } satisfies ConnectionInfo);
  }

  count(dir: 'up' | 'down', n: number): void {
    if (dir === 'up') this.counters.bytesUp += n;
    else this.counters.bytesDown += n;
  }

  forget(conn: ProxiedConnection): void {
    this.conns.delete(conn);
  }

  exhaust(b: BudgetState): void {
    if (b.done) return;
    b.done = true;
    this.budgets.delete(b);
    let n = 0;
    for (const conn of b.conns) {
      n++;
      conn.destroy();
    }
    this.counters.budgetCuts++;
    const result: BudgetResult = { cut: true, bytes: b.counted, connections: n };
    b.resolve(result);
    this.events.emit('budget-exhausted', result);
  }

  async cut(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) this.counters.cuts++;
    for (const conn of [...this.conns]) conn.destroy();
    if (s) {
      await new Promise<void>((r) => s.close(() => r()));
      this.events.emit('cut');
    }
  }

  refuse(): void {
    this.refusingNew = true;
  }

  drop(): number {
    const open = [...this.conns];
    for (const conn of open) conn.destroy();
    return open.length;
  }

  async restore(): Promise<void> {
    this.refusingNew = false;
    if (!this.server) await this.listen(this.port);
  }

  delay(ms: number): void {
    this.delayMs = Math.max(0, ms);
  }

  throttle(bytesPerSecond: number): void {
    this.bytesPerSecond = Math.max(0, bytesPerSecond);
  }

  cutAfter(bytes: number, { direction = 'down', connections = 'next' }: BudgetOptions = {}): Budget {
    const b = new BudgetState(Math.max(0, Math.floor(bytes)), direction, connections !== 'current');
    this.budgets.add(b);
    if (connections !== 'next') {
      for (const conn of this.conns) {
        b.conns.add(conn);
        conn.budgets.add(b);
      }
    }
    if (b.remaining === 0 && b.conns.size > 0) this.exhaust(b);
    return {
      exhausted: b.exhausted,
      cancel: () => {
        if (b.done) return;
        b.done = true;
        this.budgets.delete(b);
        for (const conn of b.conns) conn.budgets.delete(b);
        b.resolve({ cut: false, bytes: b.counted, connections: 0 });
      },
    };
  }

  async heal(): Promise<void> {
    this.delayMs = 0;
    this.bytesPerSecond = 0;
    this.cancelBudgets();
    await this.restore();
  }

  private cancelBudgets(): void {
    for (const b of [...this.budgets]) {
      b.done = true;
      for (const conn of b.conns) conn.budgets.delete(b);
      b.resolve({ cut: false, bytes: b.counted, connections: 0 });
    }
    this.budgets.clear();
  }

  stats(): ProxyStats {
    return { ...this.counters, active: this.conns.size };
  }

  nextConnection(timeoutMs = DEFAULT_WAIT_MS): Promise<ConnectionInfo> {
    return new Promise((resolve, reject) => {
      const onConn = (info: ConnectionInfo) => {
        clearTimeout(timer);
        resolve(info);
      };
      const timer = setTimeout(() => {
        this.events.off('connection', onConn);
        reject(new Error(`proxy :${this.port} → :${this.targetPort}: no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      this.events.once('connection', onConn);
    });
  }

  waitForConnections(n: number, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    if (this.counters.connections >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onConn = () => {
        if (this.counters.connections < n) return;
        clearTimeout(timer);
        this.events.off('connection', onConn);
        resolve();
      };
      const timer = setTimeout(() => {
        this.events.off('connection', onConn);
        reject(new Error(`proxy :${this.port}: ${this.counters.connections} of ${n} connections within ${timeoutMs} ms`));
      }, timeoutMs);
      this.events.on('connection', onConn);
    });
  }

  async close(): Promise<void> {
    this.cancelBudgets();
    await this.cut();
  }
}

/** A fault proxy on 127.0.0.1:`port` (0 = a free port) forwarding to 127.0.0.1:`targetPort`. */
export async function startProxy(targetPort: number, port = 0): Promise<FaultProxy> {
  const proxy = new Proxy(targetPort);
  await proxy.listen(port);
  return proxy;
}
