// One of the hub's worker threads (hub/pool.ts starts them): its own uWebSockets.js App on the
// hub's port (SO_REUSEPORT: the kernel spreads the agents' connections over the workers),
// serving a share of the agents from the frame ring the main thread writes.
//
// Everything a single-threaded hub does holds here per worker — the token check at the
// upgrade, TLS, rogue clients, the backpressure limits, progress frames, SIGTERM's `move` —
// because it is the same HubServer, serving a RingState instead of the HubState itself.
// What only the main thread can do (read the store, list the present, render /metrics, encode
// a snapshot) is asked of it by message; deltas never travel by message.
import '../shared/uws-first.js';
import '../shared/tick-map.js';
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { tokenChecker } from '../shared/token.js';
import { HubServer, type RouteAnswer } from './server.js';
import { RingReader } from './ring.js';
import { RingState } from './worker-state.js';
import { workerCounters, type MainToWorker, type WorkerInit, type WorkerToMain } from './pool-protocol.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const post = (m: WorkerToMain) => port.postMessage(m);

// Log lines go to the main thread's logger (one output, the worker's index on every line).
const log = pino({ level: init.logLevel }, { write: (line: string) => post({ t: 'log', line }) });

const shared = workerCounters(init.counters, init.index);
const reader = new RingReader(init.ring.sab, init.ring.size);
let requestId = 0;
const routes = new Map<number, (answer: RouteAnswer) => void>();
const probes = new Map<number, { resolve: (v: { revision: number }) => void; reject: (e: Error) => void }>();

const state = new RingState(reader, {
  onOverrun: (why) => {
    log.error({ why }, 'worker fell behind the frame ring: closing its agents (they resume from their revision)');
    shared.gauges.overruns = state.overruns;
    server.closeAll(1013, 'hub worker fell behind');
    post({ t: 'summary?' });
  },
  onCurrent: () => server.notifyCurrent(),
  fetchSnapshot: (reset) => post({ t: 'snap?', reset }),
});

const server = new HubServer(state, {
  ...init.server,
  authorize: init.token ? tokenChecker(init.token) : undefined,
  sharedPort: true,
  counters: shared.counters,
  onAgentCount: (n) => { shared.gauges.agents = n; shared.gauges.moving = server.movingCount; },
  hubAgentCount: () => shared.hubAgents(),
  // The extra routes (/metrics) answer for the whole hub: the main thread renders them.
  routes: Object.fromEntries(init.routes.map((path) => [path, () => new Promise<RouteAnswer>((resolve) => {
    const id = ++requestId;
    routes.set(id, resolve);
    post({ t: 'route?', id, path });
  })])),
}, log);
server.isCurrent = () => state.current && state.loaded;
server.probeStore = () => new Promise((resolve, reject) => {
  const id = ++requestId;
  probes.set(id, { resolve, reject });
  post({ t: 'probe?', id });
});
server.listPresent = (why) => post({ t: 'list?', why, aheadRev: server.maxWaitingRev });

/** Waits on the ring's wake word and reads what was published, forever (until closed). */
let closing = false;
async function follow(): Promise<void> {
  while (!closing) {
    const seen = reader.wakeValue();
    state.drain();
    shared.gauges.lag = state.lag;
    await reader.waitAfter(seen);
  }
}

port.on('message', (m: MainToWorker) => {
  switch (m.t) {
    case 'summary':
      state.restart(m.seq, m.summary);
      return;
    case 'snap':
      state.acceptSnapshot(m.reset, m.seq, { rev: m.rev, frames: m.parts.map(([off, len]) => Buffer.from(m.sab, off, len)) });
      return;
    case 'probe': {
      const p = probes.get(m.id);
      probes.delete(m.id);
      if (m.error !== undefined) p?.reject(new Error(m.error)); else p?.resolve({ revision: m.revision });
      return;
    }
    case 'route': {
      const r = routes.get(m.id);
      routes.delete(m.id);
      r?.({ status: m.status, contentType: m.contentType, body: m.body });
      return;
    }
    case 'drain':
      void server.drainAgents(m.spreadMs, m.graceMs, m.targets).then(() => post({ t: 'drained' }));
      shared.gauges.moving = server.movingCount;
      return;
    case 'members':
      server.setMembers(Buffer.from(m.frame));
      return;
    case 'move':
      post({ t: 'moved', id: m.id, asked: server.moveAgents(m.count, m.targets, m.reason, m.spreadMs) });
      shared.gauges.moving = server.movingCount;
      return;
    case 'agents?':
      post({ t: 'agents', id: m.id, agents: server.agents().map((a) => ({ ...a, worker: init.index })) });
      return;
    case 'close':
      closing = true;
      server.abort();
      port.close();
      return;
    case 'stall': {
      // Fault injection (tests): the thread is stuck (a long GC pause, a busy loop) while the
      // main thread goes on writing the ring.
      post({ t: 'stalling' });
      const until = Date.now() + m.ms;
      while (Date.now() < until) { /* stuck on purpose */ }
      return;
    }
    case 'crash':
      // Fault injection (tests): fail as a bug in this thread would.
      setImmediate(() => { throw new Error(`injected worker crash: ${m.why}`); });
      return;
  }
});

// A worker that throws must not leave its sockets open: Node aborts the whole process when a
// thread ends with uWebSockets.js handles still open. Close them; the main thread restarts us.
process.on('uncaughtException', (err) => {
  log.error({ err: err.message }, 'worker crashed; closing its sockets (the main thread restarts it)');
  closing = true;
  try { server.abort(); } catch { /* closing anyway */ }
  post({ t: 'crashed', error: err.message });
  port.close();
});

void server.listen().then(
  (p) => { post({ t: 'listening', port: p }); post({ t: 'summary?' }); void follow(); },
  (err: Error) => { post({ t: 'crashed', error: `cannot listen: ${err.message}` }); port.close(); },
);
