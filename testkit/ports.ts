import { readFileSync } from 'node:fs';
import net from 'node:net';

const LOOPBACK = '127.0.0.1';

/**
 * The kernel's ephemeral range (the source ports of outgoing connections). A port from it is
 * not safe to hand out: between freePort() and the program's listen() — seconds for a hub or
 * an agent starting under load — any outgoing connection of the machine may take it as its
 * source port, and the listen fails with EADDRINUSE (seen in the soak). Ports are chosen below
 * it instead. Undefined where the range cannot be read: the kernel picks, as bind(0) does.
 */
function ephemeralRange(): [number, number] | undefined {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return Number.isInteger(low) && Number.isInteger(high) && low > LOWEST_PORT + 1000 ? [low, high] : undefined;
  } catch {
    return undefined;
  }
}

/** Below the usual services' ports. */
const LOWEST_PORT = 10_000;
const EPHEMERAL = ephemeralRange();
/** Tries of random ports before giving the choice to the kernel. */
const TRIES = 50;

function listenOn(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(port, LOOPBACK, () => resolve(server));
  });
}

/** A listener on a port outside the ephemeral range when there is one, else where the kernel says. */
async function listenOnFreePort(): Promise<net.Server> {
  if (EPHEMERAL) {
    for (let i = 0; i < TRIES; i++) {
      const port = LOWEST_PORT + Math.floor(Math.random() * (EPHEMERAL[0] - LOWEST_PORT));
      try { return await listenOn(port); } catch { /* taken: another */ }
    }
  }
  return listenOn(0);
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A loopback TCP port that was free a moment ago, outside the range outgoing connections use. */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port;
}

/**
 * n distinct free loopback ports. All n listeners are held open at once before
 * any is closed, so no port is handed out twice.
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) servers.push(await listenOnFreePort());
    return servers.map((server) => (server.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map(close));
  }
}
