#!/usr/bin/env node
// `npm start`: a hub on the in-memory store seeded with a sample cluster, and one agent on
// 127.0.0.1:9001 — the whole data path without etcd. Ctrl-C stops both.
import { fileURLToPath } from 'node:url';
import { createLogger } from '../shared/log.js';
import { runtimeProblems } from '../shared/runtime.js';
// The hub and the agent are imported once the runtime is checked (shared/runtime.ts).

const PROGRAM = 'lainlet-demo';

/** One line on stderr, no stack trace. */
function fail(msg: string, code = 1): never {
  process.stderr.write(`${PROGRAM}: ${msg.replace(/\s*\n\s*/g, ' ')}\n`);
  process.exit(code);
}

const portText = process.env.LAINLET_DEMO_PORT ?? '9001';
if (!/^\d+$/.test(portText) || Number(portText) > 65535) fail(`LAINLET_DEMO_PORT must be a port number (0-65535), not ${JSON.stringify(portText)}`, 2);
const port = Number(portText);

const problems = runtimeProblems({ uws: true, crc32: true });
if (problems.length > 0) fail(problems.join('; '));

const [{ startAgent }, { startHub }, { readSeedFile }, { MemoryStore }] = await Promise.all([
  import('../agent/agent.js'), import('../hub/hub.js'), import('../hub/store/create.js'), import('../hub/store/memory.js'),
]);

const clusterFile = fileURLToPath(new URL('../../demo/cluster.json', import.meta.url));
const log = createLogger(PROGRAM);
// The demo's logs would drown the instructions: warnings and errors only, unless asked.
if (!process.env.LAINLET_LOG_LEVEL) log.level = 'warn';

const store = new MemoryStore(readSeedFile(clusterFile));
// Every hub setting but the address is the hub's own default (hub/defaults.ts).
const hub = await startHub({ store, host: '127.0.0.1', port: 0 }, log.child({ component: 'hub' })).catch((e: Error) => fail(`cannot start the hub: ${e.message}`));
await hub.ready;
const agent = await startAgent({
  host: '127.0.0.1', port, nodeIp: '127.0.0.1', hostname: 'node1', noauth: false,
  hubs: [`ws://127.0.0.1:${hub.port}`],
}, log.child({ component: 'agent' })).catch((e: NodeJS.ErrnoException) => fail(e.code === 'EADDRINUSE'
  ? `cannot listen on 127.0.0.1:${port}: the port is in use (choose another with LAINLET_DEMO_PORT=...)`
  : `cannot start the agent on 127.0.0.1:${port}: ${e.message}`));

// A little life: the demo ticks one key of its own, so a watch shows updates; every 5 s is
// often enough to see, rarely enough to read (the banner below says so).
const TICK_MS = 5000;
let tick = 0;
const ticker = setInterval(() => store.put('/lain/config/demo/tick', String(++tick)), TICK_MS);

const base = `127.0.0.1:${agent.port}`;
process.stdout.write(`
lainlet demo: a hub (in-memory store, sample cluster, ws://127.0.0.1:${hub.port}) and an agent on http://${base}

Try:
  curl '${base}/v2/configwatcher?target=domain'
  curl '${base}/v2/coreinfowatcher?appname=hello'
  curl '${base}/v2/webrouter/webprocs'
  curl '${base}/v2/containers?nodename=node1'
  curl -N '${base}/v2/configwatcher?target=demo/tick&watch=1&heartbeat=2'   (an update every ${TICK_MS / 1000} s)
  curl '${base}/debug'

Ctrl-C stops both.
`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  clearInterval(ticker);
  await agent.stop();
  await hub.stop();
  process.stdout.write('demo stopped\n');
  process.exit(0);
};
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
