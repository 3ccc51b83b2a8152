// The network between the members of a test etcd cluster: one TCP proxy in front of each
// member's peer port (the member advertises the proxy's URL, so every peer connection to it
// goes through), with a link table that can cut member a from member b in both directions.
//
// A peer connection into member i is dialled by some member j, and carries raft messages both
// ways (etcd's stream readers dial the member they receive from), so the proxy has to know j:
// it finds the process that owns the connection's source port (/proc/net/tcp gives the socket
// inode, /proc/<pid>/fd the owner). Linux only, like the rest of the test setup. Connections
// from anyone else (no member owns the port) pass unless the target is cut off from everyone.
import { readdir, readFile, readlink } from 'node:fs/promises';
import net from 'node:net';

export interface PeerNet {
  /** The port member i's peers dial (its advertised peer URL). */
  readonly ports: number[];
  /** Cuts member x from every other member (both directions), existing connections included. */
  isolate(x: number): void;
  /** Cuts the link between members a and b (both directions). */
  cutLink(a: number, b: number): void;
  /** Every link up again. */
  heal(): void;
  /** True when some link is cut. */
  readonly partitioned: boolean;
  /** Connections refused or destroyed because their link was cut. */
  readonly cutConnections: number;
  close(): Promise<void>;
}

interface Tracked { socket: net.Socket; upstream?: net.Socket; from: number }

/**
 * Starts a proxy for each member: `targets[i]` is member i's listening peer port, `pidOf(i)` the
 * pid of member i's running process (undefined while it is down).
 */
export async function startPeerNet(targets: number[], pidOf: (i: number) => number | undefined): Promise<PeerNet> {
  const n = targets.length;
  const down = new Set<string>();
  const linkKey = (a: number, b: number) => (a < b ? `${a}-${b}` : `${b}-${a}`);
  const allowed = (to: number, from: number) => {
    if (from < 0) return ![...Array(n).keys()].some((j) => j !== to && down.has(linkKey(to, j)));
    return from === to || !down.has(linkKey(to, from));
  };
  const open: Array<Set<Tracked>> = targets.map(() => new Set());
  let cutConnections = 0;

  const sourceMember = async (remotePort: number, localPort: number): Promise<number> => {
    const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');
    const table = await readFile('/proc/net/tcp', 'utf8');
    const line = table.split('\n').find((l) => {
      const cols = l.trim().split(/\s+/);
      return cols[1] === `0100007F:${hex(remotePort)}` && cols[2] === `0100007F:${hex(localPort)}`;
    });
    if (!line) return -1;
    const socketLink = `socket:[${line.trim().split(/\s+/)[9]}]`;
    for (let j = 0; j < n; j++) {
      const pid = pidOf(j);
      if (pid === undefined) continue;
      const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
      for (const fd of fds) {
        if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) === socketLink) return j;
      }
    }
    return -1;
  };

  const enforce = () => {
    for (let i = 0; i < n; i++) {
      for (const c of open[i]) {
        if (allowed(i, c.from)) continue;
        cutConnections++;
        c.socket.destroy();
        c.upstream?.destroy();
        open[i].delete(c);
      }
    }
  };

  const servers = targets.map((target, i) => net.createServer((socket) => {
    socket.pause();
    socket.on('error', () => {});
    const tracked: Tracked = { socket, from: -1 };
    void sourceMember(socket.remotePort ?? 0, socket.localPort ?? 0).catch(() => -1).then((from) => {
      tracked.from = from;
      if (socket.destroyed) return;
      if (!allowed(i, from)) { cutConnections++; socket.destroy(); return; }
      const upstream = net.connect(target, '127.0.0.1');
      tracked.upstream = upstream;
      open[i].add(tracked);
      upstream.on('error', () => socket.destroy());
      const forget = () => { open[i].delete(tracked); socket.destroy(); upstream.destroy(); };
      socket.on('close', forget);
      upstream.on('close', forget);
      socket.pipe(upstream);
      upstream.pipe(socket);
      socket.resume();
    });
  }));
  await Promise.all(servers.map((s) => new Promise<void>((resolve, reject) => { s.once('error', reject); s.listen(0, '127.0.0.1', () => resolve()); })));
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);

  return {
    ports,
    isolate(x) { for (let j = 0; j < n; j++) if (j !== x) down.add(linkKey(x, j)); enforce(); },
    cutLink(a, b) { down.add(linkKey(a, b)); enforce(); },
    heal() { down.clear(); },
    get partitioned() { return down.size > 0; },
    get cutConnections() { return cutConnections; },
    async close() {
      for (const set of open) for (const c of set) { c.socket.destroy(); c.upstream?.destroy(); }
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}
