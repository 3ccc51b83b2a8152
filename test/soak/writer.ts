// The soak's only writer. Every operation is one etcd transaction guarded by the op counter
// (MARKER_KEY == previous op id), which also puts the new id: an outcome lost to a fault
// (timeout, etcd restart) is settled by reading the counter back, and a late commit of an
// abandoned attempt can never apply twice. The committed sequence is a function of the seed.
import { Etcd3, type IRequestOp } from 'etcd3';
import { noop } from 'cockatiel';
import { History } from './history.js';
import { MARKER_KEY, nextOp, type Op, type State, type SubOp } from './model.js';
import type { Rng } from './prng.js';

/** A call that has not answered within this long is treated as an unknown outcome. */
const CALL_DEADLINE_MS = 3000;

function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  b[b.length - 1] += 1;
  return b;
}

function requestOf(s: SubOp): IRequestOp {
  if (s.type === 'put') return { request_put: { key: Buffer.from(s.key), value: Buffer.from(s.value) } };
  if (s.type === 'del') return { request_delete_range: { key: Buffer.from(s.key) } };
  return { request_delete_range: { key: Buffer.from(s.prefix), range_end: prefixEnd(s.prefix) } };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(timer); resolve(v); }, (e: Error) => { clearTimeout(timer); reject(e); });
  });
}

export interface WriterStats { committed: number; attempts: number; uncertain: number; lateCommits: number }

export class Writer {
  private client: Etcd3;
  private lastId = 0;
  readonly stats: WriterStats = { committed: 0, attempts: 0, uncertain: 0, lateCommits: 0 };
  history!: History;
  private aborted = false;

  constructor(private readonly url: string | string[], private readonly rng: Rng, private readonly pace: Rng) {
    this.client = this.newClient();
  }

  private newClient(): Etcd3 {
    return new Etcd3({
      hosts: this.url,
      dialTimeout: CALL_DEADLINE_MS,
      // No hidden retries: the writer settles every outcome itself.
      faultHandling: { host: () => noop, global: noop },
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
    });
  }

  /** Writes the seed state and the counter in one transaction; returns the history it starts. */
  async seed(state: State): Promise<History> {
    const response = await this.client.kv.txn({
      success: [...state].map(([key, value]) => requestOf({ type: 'put', key, value })).concat(requestOf({ type: 'put', key: MARKER_KEY, value: '0' })),
    });
    this.history = new History(state, Number(response.header.revision));
    return this.history;
  }

  /** Writes operations until `running()` turns false; an operation in flight is settled first. */
  async run(running: () => boolean): Promise<void> {
    while (running() && !this.aborted) {
      const op = nextOp(this.lastId + 1, this.history.state, this.rng);
      try {
        await this.commit(op);
      } catch (error) {
        if (this.aborted) return; // the soak is being torn down
        throw error;
      }
      // Pacing: mostly 20–70 ms apart, sometimes a burst.
      if (!this.pace.bool(0.15)) await new Promise((r) => setTimeout(r, this.pace.int(20, 70)));
    }
  }

  /** Retries `op` until it is committed (once). */
  private async commit(op: Op): Promise<void> {
    for (;;) {
      if (this.aborted) throw new Error('writer aborted');
      this.stats.attempts++;
      try {
        const response = await withTimeout(this.client.kv.txn({
          compare: [{ key: Buffer.from(MARKER_KEY), target: 'Value', result: 'Equal', value: Buffer.from(String(this.lastId)) }],
          success: [...op.subs.map(requestOf), requestOf({ type: 'put', key: MARKER_KEY, value: String(op.id) })],
        }), CALL_DEADLINE_MS + 500, `op ${op.id}`);
        if (response.succeeded) return this.committed(op, Number(response.header.revision));
        // The guard failed: an earlier attempt of this very op committed late.
        const at = await this.settle(op);
        if (at === undefined) throw new Error(`soak internal: counter guard failed for op ${op.id} but the counter is not ${op.id}`);
        this.stats.lateCommits++;
        return this.committed(op, at);
      } catch (error) {
        if ((error as Error).message.startsWith('soak internal')) throw error;
        this.stats.uncertain++;
        const at = await this.settle(op);
        if (at !== undefined) return this.committed(op, at);
        // Not committed: try again (settle() only returns once etcd answered). Even after the
        // run's end: the op in flight is committed, so the final state is the model's.
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private committed(op: Op, revision: number): void {
    this.lastId = op.id;
    this.stats.committed++;
    this.history.record(revision, op);
  }

  /**
   * Reads the counter with a fresh client until etcd answers: the revision op committed at,
   * or undefined when it did not commit.
   */
  private async settle(op: Op): Promise<number | undefined> {
    for (;;) {
      if (this.aborted) throw new Error('writer aborted');
      this.client.close();
      this.client = this.newClient();
      try {
        const response = await withTimeout(this.client.kv.range({ key: Buffer.from(MARKER_KEY) }), CALL_DEADLINE_MS + 500, 'counter read');
        const kv = response.kvs[0];
        const value = kv ? kv.value.toString() : '';
        if (value === String(op.id)) return Number(kv.mod_revision);
        if (value === String(this.lastId)) return undefined;
        throw new Error(`soak internal: counter is ${JSON.stringify(value)}, expected ${this.lastId} or ${op.id}`);
      } catch (error) {
        if ((error as Error).message.startsWith('soak internal')) throw error;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** A client for one-off reads (the final comparison); the caller closes it. */
  reader(): Etcd3 {
    return this.newClient();
  }

  /** Gives up on an operation in flight (etcd never came back). */
  abort(): void {
    this.aborted = true;
  }

  close(): void {
    this.client.close();
  }
}
