// A real etcd cluster of three (or five) members on loopback, for the tests, the soak and the
// benchmark: each member its own data dir and ports, bootstrapped with an --initial-cluster of
// all of them, and each member's peer URL behind a proxy of testkit/peer-net.ts so that a test
// can partition a member from the others. Controls per member: SIGKILL, SIGSTOP/SIGCONT,
// restart, replace with an empty data dir (removed and re-added: it rejoins by snapshot), and
// leader moves (the Maintenance MoveLeader call etcdctl move-leader makes).
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { EtcdProcess, makeTempDir, removeTempDir, type EtcdServer, type StartEtcdOptions } from './etcd.js';
import { startPeerNet, type PeerNet } from './peer-net.js';
import { freePorts } from './ports.js';
import { waitFor } from './procs.js';

export interface StartEtcdClusterOptions extends StartEtcdOptions {
  /** How many members (default 3). */
  members?: number;
  /**
   * etcd's --snapshot-count: applied entries between raft snapshots (etcd's default 100 000).
   * A replaced member is sent a snapshot only when the leader's raft log no longer reaches back
   * to its start (etcd keeps 5 000 entries after a snapshot).
   */
  snapshotCount?: number;
}

export interface EtcdCluster {
  readonly members: EtcdProcess[];
  /** "127.0.0.1:<client port>" of each member, in member order. */
  readonly endpoints: string[];
  /** A client of every member, closed by stop(). */
  readonly client: Etcd3;
  readonly net: PeerNet;
  /** Member i's etcd member id (decimal, as etcd3 reports it); changes when it is replaced. */
  memberId(i: number): string;
  /** Which member has this id (-1: none). */
  indexOf(memberId: string): number;
  /** The index of the leader, as a running member reports it (waits until there is one). */
  leader(opts?: { exclude?: number }): Promise<number>;
  /** Moves the leadership to member `to` (default: the next member after the leader); returns [from, to]. */
  moveLeader(to?: number): Promise<[number, number]>;
  kill(i: number): Promise<void>;
  pause(i: number, paused: boolean): void;
  restart(i: number): Promise<void>;
  /** SIGKILL member i, remove it from the cluster, empty its data dir, add it again and start it. */
  replaceWithEmpty(i: number): Promise<void>;
  /** Cut member i from the others (peer traffic only: clients still reach it). */
  isolate(i: number): void;
  heal(): void;
  /** Waits until every member is up and answers linearizable reads at least at `revision`. */
  waitConverged(revision?: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const MEMBER_START_MS = 30_000;

/**
 * Runs a membership change again while etcd refuses it as premature: with --strict-reconfig-check
 * (the default) a member refuses a change until it has heard from every voting member for 5 s
 * ("unhealthy cluster") or too few have started ("not enough started members"). Both are refused
 * before anything is proposed, so the retry cannot make the change twice. Any other error, or a
 * refusal past the deadline, is thrown with `what` in front.
 */
export async function retryPrematureReconfiguration<T>(
  what: string, change: () => Promise<T>, { timeoutMs = MEMBER_START_MS, intervalMs = 500 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await change();
    } catch (error) {
      if (!/unhealthy cluster|not enough started members/i.test(String(error)) || Date.now() >= deadline) {
        throw new Error(`${what}: ${String(error)}`);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export async function startEtcdCluster(opts: StartEtcdClusterOptions = {}): Promise<EtcdCluster> {
  const count = opts.members ?? 3;
  const { dir, onTmpfs } = await makeTempDir(opts.dataOnTmpfs === true);
  const ports = await freePorts(2 * count);
  const members: EtcdProcess[] = [];
  let peerNet: PeerNet | undefined;
  try {
    peerNet = await startPeerNet(ports.slice(count), (i) => (members[i]?.proc.running ? members[i].proc.pid : undefined));
    const names = [...Array(count).keys()].map((i) => `m${i}`);
    const advertised = peerNet.ports.map((p) => `http://127.0.0.1:${p}`);
    const initialCluster = names.map((name, i) => `${name}=${advertised[i]}`).join(',');
    const extraArgs = [
      `--initial-cluster-token=lainlet-test-${path.basename(dir)}`,
      ...(opts.snapshotCount !== undefined ? [`--snapshot-count=${opts.snapshotCount}`] : []),
    ];
    for (let i = 0; i < count; i++) {
      const memberDir = path.join(dir, names[i]);
      members.push(new EtcdProcess(memberDir, onTmpfs, {
        name: names[i], dataDir: path.join(memberDir, 'data'), clientPort: ports[i], peerPort: ports[count + i],
        advertisePeerUrl: advertised[i], initialCluster, extraArgs,
      }, opts));
    }
    // Every member waits for a quorum before it is healthy: they start together.
    await Promise.all(members.map((m) => m.start()));
    const cluster = new Cluster(dir, members, peerNet, advertised);
    await cluster.learnIds();
    return cluster;
  } catch (error) {
    await Promise.all(members.map((m) => m.stop().catch(() => {})));
    await peerNet?.close();
    await removeTempDir(dir);
    throw error;
  }
}

class Cluster implements EtcdCluster {
  readonly endpoints: string[];
  private readonly ids: string[] = [];
  private sharedClient?: Etcd3;

  constructor(
    private readonly dir: string,
    readonly members: EtcdProcess[],
    readonly net: PeerNet,
    private readonly peerUrls: string[],
  ) {
    this.endpoints = members.map((m) => m.endpoint);
  }

  get client(): Etcd3 {
    this.sharedClient ??= new Etcd3({ hosts: this.members.map((m) => m.url) });
    return this.sharedClient;
  }

  /** A fresh client of member i alone (no circuit breaker left open by an earlier outage). */
  private async withMember<T>(i: number, fn: (c: Etcd3) => Promise<T>): Promise<T> {
    const c = new Etcd3({ hosts: this.members[i].url, dialTimeout: 3000, defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5000 }) });
    try { return await fn(c); } finally { c.close(); }
  }

  async learnIds(): Promise<void> {
    for (let i = 0; i < this.members.length; i++) {
      this.ids[i] = await this.withMember(i, async (c) => String((await c.maintenance.status()).header.member_id));
    }
  }

  memberId(i: number): string { return this.ids[i]; }

  indexOf(memberId: string): number { return this.ids.indexOf(String(memberId)); }

  async leader({ exclude }: { exclude?: number } = {}): Promise<number> {
    let found = -1;
    await waitFor(async () => {
      for (let i = 0; i < this.members.length; i++) {
        if (i === exclude || !this.members[i].proc.running) continue;
        const status = await this.withMember(i, (c) => c.maintenance.status()).catch(() => undefined);
        const index = status ? this.indexOf(String(status.leader)) : -1;
        if (index >= 0 && index !== exclude) { found = index; return true; }
      }
      return false;
    }, { timeoutMs: 20_000, intervalMs: 100, message: 'an etcd leader' });
    return found;
  }

  async moveLeader(to?: number): Promise<[number, number]> {
    const from = await this.leader();
    const target = to ?? (from + 1) % this.members.length;
    await this.withMember(from, (c) => c.maintenance.moveLeader({ targetID: this.ids[target] }));
    await waitFor(async () => (await this.leader()) === target, { timeoutMs: 20_000, message: `member ${target} leading` });
    return [from, target];
  }

  kill(i: number): Promise<void> { return this.members[i].kill(); }

  pause(i: number, paused: boolean): void { this.members[i].pause(paused); }

  restart(i: number): Promise<void> { return this.members[i].restart(); }

  async replaceWithEmpty(i: number): Promise<void> {
    const member = this.members[i];
    await member.kill();
    const other = this.members.findIndex((m, j) => j !== i && m.proc.running);
    // A membership change is checked against the members the server has heard from lately: right
    // after a kill or a healed partition, etcd refuses it ("unhealthy cluster", "not enough started
    // members") before it proposes anything. A removal is retried on any error (one whose answer
    // was lost is then found already done); an addition only on those refusals, since a lost
    // answer to one that was made would make the retry fail on a peer URL already in use.
    await waitFor(async () => {
      try {
        await this.withMember(other, (c) => c.cluster.memberRemove({ ID: this.ids[i] }));
      } catch (error) {
        if (!/member not found/i.test(String(error))) throw error;
      }
      return true;
    }, { timeoutMs: MEMBER_START_MS, intervalMs: 500, message: `member ${i} removed` });
    await rm(member.dataDir, { recursive: true, force: true });
    const added = await retryPrematureReconfiguration(`member ${i} added back`,
      () => this.withMember(other, (c) => c.cluster.memberAdd({ peerURLs: [this.peerUrls[i]] })));
    const name = (j: number) => `m${j}`;
    const initialCluster = added.members
      .map((m) => `${String(m.ID) === String(added.member.ID) ? name(i) : m.name}=${m.peerURLs[0]}`)
      .join(',');
    setFlag(member.args, '--initial-cluster', initialCluster);
    setFlag(member.args, '--initial-cluster-state', 'existing');
    this.ids[i] = String(added.member.ID);
    await waitFor(async () => { await member.restart(); return true; }, { timeoutMs: MEMBER_START_MS, intervalMs: 500, message: `replaced member ${i} starting` });
  }

  isolate(i: number): void { this.net.isolate(i); }

  heal(): void { this.net.heal(); }

  async waitConverged(revision = 0, timeoutMs = 30_000): Promise<void> {
    for (let i = 0; i < this.members.length; i++) {
      await waitFor(async () => {
        const res = await this.withMember(i, (c) => c.kv.range({ key: Buffer.from('\0'), limit: 1, count_only: true }));
        return Number(res.header.revision) >= revision;
      }, { timeoutMs, intervalMs: 100, message: `member ${i} serving linearizable reads at revision ${revision}` });
    }
  }

  async stop(): Promise<void> {
    this.sharedClient?.close();
    this.net.heal();
    for (const m of this.members) m.pause(false);
    await Promise.all(this.members.map((m) => m.stop()));
    await this.net.close();
    await removeTempDir(this.dir);
  }
}

function setFlag(args: string[], flag: string, value: string): void {
  const at = args.findIndex((a) => a.startsWith(`${flag}=`));
  if (at >= 0) args[at] = `${flag}=${value}`;
  else args.push(`${flag}=${value}`);
}

/** The endpoints of a cluster as hubs take them (`--etcd a,b,c`). */
export function endpointsFlag(cluster: EtcdCluster): string {
  return cluster.endpoints.join(',');
}

export type { EtcdServer };
