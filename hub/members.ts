// The hub tier's membership and balance (DESIGN.md, "Scaling the hub tier out").
//
// Each hub registers itself in the store under a lease — a key outside the ranges agents are
// sent (default /lainlet/hubs/<id>), holding its advertised URL, agent count, revision,
// version and start time; the lease (HUB_DEFAULTS.memberTtlSec) is kept alive while the hub
// runs and revoked when it stops. Every membersRefreshMs the hub writes its record and reads
// everyone's (one small range read: no watch, so etcd still holds exactly one watch per hub).
//
// From the members' agent counts each hub derives the fair share (total / live hubs). Above it
// by more than the slack, it asks its excess agents — a few per round — to move to the hubs
// furthest below it (the `move` frame with a target). A move costs an agent nothing: it
// resumes on the other hub from its revision. The agents are told the members (the `members`
// frame) and fail over to any of them, so a node's -hub list is only a seed.
import { randomBytes } from 'node:crypto';
import { Etcd3, type Lease } from 'etcd3';
import type { Logger } from '../shared/log.js';
import { LogLimiter } from '../shared/log-limit.js';
import { encodeFrame, type MemberInfo } from '../shared/protocol.js';
import { VERSION } from '../shared/version.js';
import { HUB_DEFAULTS } from './defaults.js';
import type { HubState } from './state.js';
import { ETCD3_REVISION_DEADLINE_MS, etcd3GrpcOptions } from './store/etcd3.js';
import type { MemoryStore } from './store/memory.js';

/** What a hub writes about itself in the registry. */
export interface MemberRecord {
  id: string;
  url: string;
  agents: number;
  revision: number;
  stale: boolean;
  version: string;
  startedAt: number;
  /** When the record was written (the writer's clock). */
  at: number;
  /** Shutting down: its agents are leaving; no agent is sent to it, and they count until gone. */
  draining?: boolean;
}

/** A member as this hub sees it: its record, and how far it is behind the store. */
export interface Member extends MemberRecord { self: boolean; lag: number }

/** The registry: a key under a lease, and a read of all keys under the prefix. */
export interface MembersBackend {
  readonly description: string;
  /** Writes `value` under `key`, under a lease of `ttlSec` kept alive from then on (a new one if it was lost). */
  put(key: string, value: string, ttlSec: number): Promise<void>;
  /** Removes `key` and ends its lease. */
  remove(key: string): Promise<void>;
  /** Every key under `prefix`, and the store's revision. */
  list(prefix: string): Promise<{ revision: number; kvs: Array<[string, string]> }>;
  close(): Promise<void>;
}

/** The part of the fan-out membership drives. */
export interface BalancedFanout {
  readonly agentCount: number;
  /** Agents told to move that have not left yet. */
  readonly movingCount: number;
  /** Tells every agent of protocol version 2 who the members are (and agents that go live later). */
  setMembers(frame: Buffer): void;
  /** Asks up to `count` agents to move, the i-th to targets[i % targets.length]; returns how many were asked. */
  moveAgents(count: number, targets: readonly string[], reason: string, spreadMs: number): number | Promise<number>;
}

export interface MembershipOptions {
  backend: MembersBackend;
  prefix: string;
  /** This hub's advertised URL; undefined: not registered (it still reads the members and tells its agents). */
  advertise?: string;
  refreshMs?: number;
  ttlSec?: number;
  /** Balancing on (default); off: the hub only registers and tells. */
  balance?: boolean;
  /**
   * Whether the hub can serve agents now (loaded, current, in touch with its store). It
   * registers only then: agents sent to a hub still replaying its history would wait, or get a
   * snapshot across the span its first list jumps (HubState gaps).
   */
  serving?: () => boolean;
}

export class Membership {
  readonly id = randomBytes(6).toString('hex');
  private readonly startedAt = Date.now();
  private readonly key: string;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private draining = false;
  private lastUrls = '';
  private readonly warnings = new LogLimiter(5, 0.2);
  /** The members as of the last read (this hub among them when registered). */
  members: Member[] = [];
  /** The store's revision at the last read of the registry. */
  storeRevision = 0;
  /** Each record's `at` as last read, and when (our clock) it last changed: a hub that stopped writing is gone, whatever its lease says. */
  private readonly lastWrites = new Map<string, { at: number; changedAt: number }>();
  /** Agents asked to move for balance, and registry rounds that failed (metrics). */
  balanceMoves = 0;
  refreshFailures = 0;

  constructor(private readonly opts: MembershipOptions, private readonly state: HubState, private readonly fanout: BalancedFanout, private readonly log: Logger) {
    const prefix = opts.prefix.endsWith('/') ? opts.prefix : opts.prefix + '/';
    this.key = prefix + this.id;
  }

  get refreshMs(): number { return this.opts.refreshMs ?? HUB_DEFAULTS.membersRefreshMs; }

  start(): void { void this.round(); }

  /**
   * The hub is shutting down: from now on its record says so — no hub sends agents here, and
   * the others count the agents still here into the total (so that agents arriving from here
   * do not look like an excess to move on again). Written at once.
   */
  async drain(): Promise<void> {
    this.draining = true;
    await this.refresh().catch(() => {});
  }

  /** Leaves the registry, then stops. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.opts.advertise) await this.opts.backend.remove(this.key).catch(() => {});
    await this.opts.backend.close();
  }

  /** The other live members' URLs, least loaded first (where a draining hub sends its agents). */
  othersByLoad(): string[] {
    return this.members.filter((m) => !m.self && !m.draining).sort((a, b) => a.agents - b.agents).map((m) => m.url);
  }

  private async round(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.refresh();
      await this.balance();
    } catch (err) {
      this.refreshFailures++;
      if (this.warnings.take() >= 0) this.log.warn({ err: (err as Error).message, registry: this.opts.backend.description }, 'hub membership: the registry could not be read or written; keeping the last members');
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.round(), this.refreshMs);
  }

  /** Writes our record and reads everyone's. */
  async refresh(): Promise<void> {
    const prefix = this.key.slice(0, this.key.length - this.id.length);
    if (this.opts.advertise && (this.opts.serving?.() ?? true)) {
      const record: MemberRecord = {
        id: this.id, url: this.opts.advertise, agents: this.fanout.agentCount, revision: this.state.revision,
        stale: this.state.stale, version: VERSION, startedAt: this.startedAt, at: Date.now(),
      };
      if (this.draining) record.draining = true;
      await this.opts.backend.put(this.key, JSON.stringify(record), this.opts.ttlSec ?? HUB_DEFAULTS.memberTtlSec);
    }
    const listed = await this.opts.backend.list(prefix);
    if (this.stopped) return;
    this.storeRevision = listed.revision;
    const byUrl = new Map<string, Member>();
    const now = Date.now();
    const seen = new Set<string>();
    for (const [key, value] of listed.kvs) {
      const rec = parseRecord(value);
      if (!rec) {
        if (this.warnings.take() >= 0) this.log.warn({ key }, 'hub membership: a registry record is not a hub record; ignored');
        continue;
      }
      const self = rec.id === this.id;
      // A hub killed without a word keeps its key until its lease ends (--members-ttl); its
      // record stops changing at once. Not rewritten for 2.5 rounds, and at least
      // memberSilentMinMs (by our clock, so no clock skew between hubs matters; a busy hub may
      // be a round late): gone — no agent is sent there, its agents are not counted.
      seen.add(rec.id);
      const last = this.lastWrites.get(rec.id);
      if (!last || last.at !== rec.at) this.lastWrites.set(rec.id, { at: rec.at, changedAt: now });
      else if (!self && now - last.changedAt > Math.max(2.5 * this.refreshMs, HUB_DEFAULTS.memberSilentMinMs)) continue;
      // Our own count is read now, not from the record we just wrote.
      const member: Member = { ...rec, agents: self ? this.fanout.agentCount : rec.agents, self, lag: Math.max(0, listed.revision - rec.revision) };
      // A restarted hub may show twice until its old lease ends: the newer record wins.
      const have = byUrl.get(rec.url);
      if (!have || have.startedAt < rec.startedAt || self) byUrl.set(rec.url, member);
    }
    for (const id of this.lastWrites.keys()) if (!seen.has(id)) this.lastWrites.delete(id);
    this.members = [...byUrl.values()].sort((a, b) => a.url.localeCompare(b.url));
    // Agents are told the hubs they may go to: not one that is shutting down.
    const open = this.members.filter((m) => !m.draining);
    const urls = open.map((m) => m.url).join(' ');
    if (urls !== this.lastUrls) {
      this.log.info({ members: open.map((m) => m.url) }, 'hub members changed');
      this.lastUrls = urls;
      const hubs: MemberInfo[] = open.map((m) => ({ url: m.url, agents: m.agents }));
      this.fanout.setMembers(encodeFrame({ t: 'members', hubs }));
    }
  }

  /**
   * Above the fair share (see below): ask the excess (at most balanceMovesPerRound) to move,
   * each to the member furthest below the share at that point.
   */
  async balance(): Promise<void> {
    if (this.opts.balance === false || !this.opts.advertise || this.draining) return;
    const members = this.members;
    // Draining hubs' agents count (they are on their way to us), the hubs themselves do not.
    const open = members.filter((m) => !m.draining);
    if (open.length < 2 || !open.some((m) => m.self)) return;
    const mine = this.fanout.agentCount - this.fanout.movingCount;
    const total = members.reduce((n, m) => n + (m.self ? mine : m.agents), 0);
    const fair = total / open.length;
    const slack = Math.max(HUB_DEFAULTS.balanceSlackAgents, fair * HUB_DEFAULTS.balanceSlackFraction);
    // Never to a hub that has lost its store: it serves its last state, marked stale.
    const load = new Map(open.filter((m) => !m.self && !m.stale).map((m) => [m.url, m.agents]));
    // Above the share by more than the slack: down to the share. Above the share at all while
    // another hub is below it by more than the slack (nobody else is far above to fill it): one
    // agent above the share's ceiling each, so the tier ends within the slack on both sides.
    const starved = [...load.values()].some((n) => n < fair - slack);
    const excess = Math.min(HUB_DEFAULTS.balanceMovesPerRound,
      mine > fair + slack ? Math.floor(mine - fair) : starved ? mine - Math.ceil(fair) : 0);
    if (excess <= 0) return;
    const targets: string[] = [];
    for (let i = 0; i < excess; i++) {
      let best: string | undefined;
      for (const [url, n] of load) if (n < fair && (best === undefined || n < load.get(best)!)) best = url;
      if (best === undefined) break;
      targets.push(best);
      load.set(best, load.get(best)! + 1);
    }
    if (targets.length === 0) return;
    const asked = await this.fanout.moveAgents(targets.length, targets, 'balancing the hub tier', this.refreshMs);
    this.balanceMoves += asked;
    if (asked > 0) this.log.info({ agents: mine, fair: Math.round(fair), asked, to: [...new Set(targets)] }, 'above the fair share: asking agents to move');
  }
}

function parseRecord(value: string): MemberRecord | undefined {
  let r: Partial<MemberRecord>;
  try { r = JSON.parse(value) as Partial<MemberRecord>; } catch { return undefined; }
  if (!r || typeof r.id !== 'string' || typeof r.url !== 'string' || !/^wss?:\/\//.test(r.url) || typeof r.agents !== 'number'
    || typeof r.revision !== 'number' || typeof r.startedAt !== 'number') return undefined;
  return {
    id: r.id, url: r.url, agents: r.agents, revision: r.revision, stale: r.stale === true, version: String(r.version ?? ''),
    startedAt: r.startedAt, at: Number(r.at ?? 0), ...(r.draining === true ? { draining: true } : {}),
  };
}

// --- registries --------------------------------------------------------------------------

/** etcd v3: a lease kept alive by the client, the record put under it; one range read per round. */
export class Etcd3Members implements MembersBackend {
  readonly description: string;
  private readonly client: Etcd3;
  private lease?: Lease;

  constructor(endpoints: string[]) {
    this.description = `etcd3 ${endpoints.join(',')}`;
    // Its own client (one more connection, no watch): the store's stays the store's. Its channel
    // is set up as the store's: with grpc-js's defaults it waited up to 120 s between connection
    // attempts after an outage (the hub unlisted meanwhile), and a call to a member that stopped
    // answering waited for ever, and with it every later round.
    this.client = new Etcd3({ hosts: endpoints, dialTimeout: HUB_DEFAULTS.etcd3DialTimeoutMs, grpcOptions: etcd3GrpcOptions() });
  }

  /** Every call's deadline: a round waits no longer than this for any one answer. */
  private deadline(): { deadline: number } { return { deadline: Date.now() + ETCD3_REVISION_DEADLINE_MS }; }

  async put(key: string, value: string, ttlSec: number): Promise<void> {
    if (!this.lease || this.lease.revoked()) {
      const lease = this.client.lease(ttlSec, { autoKeepAlive: true, ...this.deadline() });
      // A lease lost (etcd away longer than the TTL, or its grant failed) is replaced on the next round.
      lease.on('lost', () => { if (this.lease === lease) this.lease = undefined; });
      this.lease = lease;
    }
    await this.lease.put(key).value(value).options(this.deadline()).exec();
  }

  async remove(key: string): Promise<void> {
    await this.client.delete().key(key).options(this.deadline()).exec();
    await this.lease?.revoke(this.deadline()).catch(() => {});
    this.lease = undefined;
  }

  async list(prefix: string): Promise<{ revision: number; kvs: Array<[string, string]> }> {
    const res = await this.client.getAll().prefix(prefix).options(this.deadline()).exec();
    return { revision: Number(res.header.revision), kvs: res.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]) };
  }

  close(): Promise<void> { this.client.close(); return Promise.resolve(); }
}

/** etcd v2: a key with a TTL, written again every round (which renews it); a recursive GET. */
export class Etcd2Members implements MembersBackend {
  readonly description: string;
  private readonly endpoints: string[];
  private active = 0;

  constructor(endpoints: string[]) {
    this.endpoints = endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`).replace(/\/+$/, ''));
    this.description = `etcd2 ${this.endpoints.join(',')}`;
  }

  /** One request, on the endpoint that answered last, then on the others. */
  private async request(path: string, init: RequestInit): Promise<Response> {
    let lastError: unknown;
    for (let i = 0; i < this.endpoints.length; i++) {
      const at = (this.active + i) % this.endpoints.length;
      try {
        const res = await fetch(this.endpoints[at] + path, { ...init, signal: AbortSignal.timeout(HUB_DEFAULTS.etcd2RequestTimeoutMs) });
        this.active = at;
        return res;
      } catch (err) { lastError = err; }
    }
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  }

  async put(key: string, value: string, ttlSec: number): Promise<void> {
    const res = await this.request(`/v2/keys${key}`, {
      method: 'PUT', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ value, ttl: String(ttlSec) }).toString(),
    });
    if (!res.ok) throw new Error(`etcd2 registry put: HTTP ${res.status}`);
  }

  async remove(key: string): Promise<void> { await this.request(`/v2/keys${key}`, { method: 'DELETE' }); }

  async list(prefix: string): Promise<{ revision: number; kvs: Array<[string, string]> }> {
    const res = await this.request(`/v2/keys${prefix.replace(/\/$/, '')}?recursive=true`, {});
    const revision = Number(res.headers.get('x-etcd-index') ?? 0);
    if (res.status === 404) return { revision, kvs: [] };
    if (!res.ok) throw new Error(`etcd2 registry list: HTTP ${res.status}`);
    const body = await res.json() as { node?: { nodes?: Array<{ key: string; value?: string; dir?: boolean }> } };
    const kvs: Array<[string, string]> = [];
    for (const n of body.node?.nodes ?? []) if (!n.dir && typeof n.value === 'string') kvs.push([n.key, n.value]);
    return { revision, kvs };
  }

  close(): Promise<void> { return Promise.resolve(); }
}

/** In memory, shared by the hubs of one MemoryStore (the demo, in-process tests); TTLs by the clock. */
export class MemoryMembers implements MembersBackend {
  readonly description = 'memory';
  private static readonly registries = new WeakMap<MemoryStore, Map<string, { value: string; expires: number }>>();
  private readonly registry: Map<string, { value: string; expires: number }>;

  constructor(private readonly store: MemoryStore) {
    let r = MemoryMembers.registries.get(store);
    if (!r) { r = new Map(); MemoryMembers.registries.set(store, r); }
    this.registry = r;
  }

  put(key: string, value: string, ttlSec: number): Promise<void> {
    this.registry.set(key, { value, expires: Date.now() + ttlSec * 1000 });
    return Promise.resolve();
  }

  remove(key: string): Promise<void> { this.registry.delete(key); return Promise.resolve(); }

  list(prefix: string): Promise<{ revision: number; kvs: Array<[string, string]> }> {
    const now = Date.now();
    const kvs: Array<[string, string]> = [];
    for (const [k, e] of this.registry) {
      if (e.expires <= now) this.registry.delete(k);
      else if (k.startsWith(prefix)) kvs.push([k, e.value]);
    }
    return Promise.resolve({ revision: this.store.lastRevision, kvs });
  }

  close(): Promise<void> { return Promise.resolve(); }
}
