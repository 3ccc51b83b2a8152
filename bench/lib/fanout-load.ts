// The fan-out load, run as a child process of the benchmark (see ipc.ts):
//  - sinks: raw TCP WebSocket clients that do the upgrade, say hello at the current revision
//    and then only count the bytes they receive — thousands of them cost the load generator
//    little, so the hub is what gets measured;
//  - probes: a few full clients (ws + the project's decodeFrame) connected after the sinks that
//    time every delta carrying a "bench:<seq>:<t>" marker (t = CLOCK_MONOTONIC ms at the put)
//    and record each delta frame's size.
// A sink counts as synced once its first frame after the hello arrives: a hello at the hub's
// revision needs no catch-up, so that frame is the progress frame the hub sends an agent when
// it goes live. When armed with a marker (`arm`), every sink also scans what it receives for
// that byte string and the time the first and the last sink saw it are kept: the latency of a
// delta to the LAST agent, at the cost of one indexOf per read while armed.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import WebSocket from 'ws';
import { decodeFrame, encodeFrame, PROTOCOL_VERSION } from '../../shared/protocol.js';
import { serveCommands } from './ipc.js';
import { monoMs, summarize } from './stats.js';

const MARKER = /bench:(\d+):([\d.]+)/;

/** A masked client frame (RFC 6455 §5.3; an all-zero mask is a valid mask). */
function clientFrame(opcode: number, payload: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len]) : Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 255]);
  return Buffer.concat([head, Buffer.alloc(4), payload]);
}

/** Server → client frame header size for a payload of `len` bytes (unmasked). */
export function serverHeaderBytes(len: number): number {
  return len < 126 ? 2 : len < 65536 ? 4 : 10;
}

let sinkBytes = 0;
let sinksOpen = 0;
let sinksClosed = 0;
let sinksSynced = 0;
/** The armed marker (null: sinks only count bytes), and who has seen it. */
let marker: Buffer | null = null;
let armId = 0;
let markerSeen = 0;
let markerFirst = NaN;
let markerLast = NaN;
const sockets: net.Socket[] = [];
const probes: WebSocket[] = [];
let latencies: number[] = [];
let frameBytes: number[] = [];
const seen = new Set<number>();

function openSink(port: number, rev: number, node: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    sockets.push(sock);
    let handshake = true;
    let head = '';
    let synced = false;
    let seenArm = 0;
    const received = (chunk: Buffer, from: number) => {
      if (chunk.length <= from) return;
      sinkBytes += chunk.length - from;
      if (!synced) { synced = true; sinksSynced++; }
      if (marker !== null && seenArm !== armId && chunk.indexOf(marker, from) >= 0) {
        seenArm = armId;
        const now = monoMs();
        if (markerSeen++ === 0) markerFirst = now;
        markerLast = now;
      }
    };
    sock.on('connect', () => {
      sock.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    sock.on('data', (chunk: Buffer) => {
      if (!handshake) { received(chunk, 0); return; }
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      if (!head.startsWith('HTTP/1.1 101')) { reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`)); sock.destroy(); return; }
      handshake = false;
      sinksOpen++;
      sock.write(clientFrame(0x2, encodeFrame({ t: 'hello', v: PROTOCOL_VERSION, node, rev })));
      received(chunk, chunk.length - (head.length - end - 4));
      // An unsolicited pong now and then keeps uWebSockets.js's idle timeout from closing us.
      const keepalive = setInterval(() => sock.write(clientFrame(0xA, Buffer.alloc(0))), 20_000);
      sock.once('close', () => clearInterval(keepalive));
      resolve();
    });
    sock.on('error', (e) => { if (handshake) reject(e); });
    sock.on('close', () => { if (!handshake) { sinksOpen--; sinksClosed++; } });
  });
}

function openProbe(port: number, rev: number, node: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
    probes.push(ws);
    ws.binaryType = 'nodebuffer';
    ws.on('open', () => { ws.send(encodeFrame({ t: 'hello', v: PROTOCOL_VERSION, node, rev })); resolve(); });
    ws.on('error', reject);
    ws.on('message', (data: Buffer) => {
      const now = monoMs();
      const f = decodeFrame(data);
      if (f.t !== 'delta') return;
      for (const [, v] of f.puts) {
        const m = MARKER.exec(v);
        if (!m) continue;
        latencies.push(now - Number(m[2]));
        seen.add(Number(m[1]));
        frameBytes.push(data.length + serverHeaderBytes(data.length));
      }
    });
  });
}

serveCommands({
  open: async (m) => {
    const port = m.port as number, rev = m.rev as number;
    const n = m.sinks as number;
    /** Node names go on from here (sinks opened again after some were dropped). */
    const first = (m.first as number | undefined) ?? 0;
    // Batches of 100, so the hub is not handed a thousand handshakes in one go.
    for (let i = 0; i < n; i += 100) {
      await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, j) => openSink(port, rev, `sink-${first + i + j}`)));
    }
    for (let i = 0; i < ((m.probes as number) ?? 1); i++) await openProbe(port, rev, `probe-${i}`);
    return { sinksOpen, probes: probes.length };
  },
  status: () => ({ sinksOpen, sinksClosed, sinksSynced, sinkBytes, probesOpen: probes.filter((p) => p.readyState === WebSocket.OPEN).length, rss: process.memoryUsage().rss }),
  arm: (m) => { marker = Buffer.from(m.marker as string, 'latin1'); armId++; markerSeen = 0; markerFirst = NaN; markerLast = NaN; return null; },
  armed: () => ({ seen: markerSeen, first: markerFirst, last: markerLast }),
  disarm: () => { marker = null; return null; },
  reset: () => { latencies = []; frameBytes = []; seen.clear(); return null; },
  report: () => ({ latency: summarize(latencies), deliveries: latencies.length, distinctSeqs: seen.size, frameBytes: summarize(frameBytes) }),
  closeAll: () => {
    for (const s of sockets) s.destroy();
    for (const p of probes) p.terminate();
    sockets.length = 0;
    probes.length = 0;
    return null;
  },
});
