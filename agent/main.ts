#!/usr/bin/env -S node --max-semi-space-size=2
// lainlet-agent: the per-node daemon serving the original lainlet's /v2 API from a local cache.
// The shebang gives V8 a 2 MB young generation: once its answers are cached the agent allocates
// little, and the default (16 MB semi-spaces) costs ~30 MB of RSS on every node
// (bench/RESULTS.md, agent memory). Flags that save more were measured and left out: --no-opt
// (-4 MB) and --lite-mode (-5 to -12 MB) take GETs down to 0.2-0.3 of the node:http ceiling.
// Accepts the original's command line (Go flag syntax) plus the hub-tier flags.
import '../shared/tick-map.js';
import { readFileSync } from 'node:fs';
import { createLogger } from '../shared/log.js';
import { checkIp, FlagError, MAX_TIMER_MS, parseEndpoints, parseFlags, parseHubAddresses, parseListenAddress, usage, type FlagSpec, type FlagValues } from '../shared/flags.js';
import { runtimeProblems } from '../shared/runtime.js';
import { readToken, tokenFileWarning } from '../shared/token.js';
import { VERSION } from '../shared/version.js';
import { HUB_DEFAULTS } from '../hub/defaults.js';
import type { Hub } from '../hub/hub.js';
import { AGENT_DEFAULTS } from './defaults.js';
// ./agent.js is imported once the runtime is checked: it loads agent/persist.ts, whose
// `import { crc32 } from 'node:zlib'` is a link error (a stack trace) before Node.js 20.15.

const PROGRAM = 'lainlet-agent';

const SPECS: FlagSpec[] = [
  { name: 'web', kind: 'string', default: ':9001', help: 'HTTP API listen address (":9001" = all interfaces)' },
  { name: 'ip', kind: 'string', default: '', help: 'this node\'s IP: a local caller, and the default nodeip of /v2/localspecquery' },
  { name: 'noauth', kind: 'bool', default: false, help: 'disable authorization checks' },
  { name: 'debug', kind: 'bool', default: false, help: 'debug logging' },
  { name: 'v', kind: 'bool', default: false, help: 'print the version and exit' },
  { name: 'version', kind: 'bool', default: false, help: 'print the version and exit' },
  { name: 'hub', kind: 'string', default: '', help: 'hub addresses, comma-separated ws://host:port or wss://host:port' },
  { name: 'etcd', kind: 'string', default: '', help: 'standalone mode: etcd endpoints (host:port,...); runs an embedded hub instead of -hub' },
  { name: 'store', kind: 'string', default: 'etcd', help: 'standalone mode: etcd (v3 API) or etcd2 (v2 keys API)' },
  { name: 'prefix', kind: 'string', default: HUB_DEFAULTS.prefix, help: 'etcd key prefix holding the Lain state' },
  { name: 'hostname', kind: 'string', default: '', help: 'node name used by /v2/rebellion/localprocs (default: the OS hostname)' },
  { name: 'state-dir', kind: 'string', default: '', help: 'directory for the persisted state (served, stale, when no hub is reachable)' },
  { name: 'token-file', kind: 'string', default: '', help: 'file holding the bearer token the hubs require' },
  { name: 'ca-file', kind: 'string', default: '', help: 'CA certificate (PEM) to verify wss:// hubs' },
  {
    name: 'silence-timeout', kind: 'int', default: AGENT_DEFAULTS.silenceTimeoutMs, min: 1000, max: MAX_TIMER_MS,
    help: 'milliseconds without a frame before a hub is considered dead (keep it 3 × the hubs\' --progress-interval)',
    why: 'a healthy hub is quiet between its progress frames, and either side stalls for hundreds of ms on a GC or a big snapshot; a shorter timeout drops healthy hubs in a connect/drop loop',
  },
  {
    name: 'reconnect-max', kind: 'int', default: AGENT_DEFAULTS.backoffCapMs, min: AGENT_DEFAULTS.backoffBaseMs, max: MAX_TIMER_MS,
    help: `longest wait in milliseconds between hub connection attempts (full-jitter backoff from ${AGENT_DEFAULTS.backoffBaseMs} ms)`,
    why: `the backoff starts at ${AGENT_DEFAULTS.backoffBaseMs} ms; below that an unreachable hub is retried in a tight loop, a log line each time`,
  },
  // The original's gRPC mirror of the API (GRPC.md §2): off unless -grpc.addr is given.
  { name: 'grpc.addr', kind: 'string', default: '', help: 'gRPC API listen address (":9000" = all interfaces); empty = no gRPC server' },
  { name: 'grpc.TLS', kind: 'bool', default: false, help: 'serve gRPC over TLS with -grpc.key and -grpc.cert' },
  { name: 'grpc.key', kind: 'string', default: '', help: 'PEM private key for -grpc.TLS' },
  { name: 'grpc.cert', kind: 'string', default: '', help: 'PEM certificate (chain) for -grpc.TLS' },
];

/** A configuration this program will not run with: one line, the usage, exit 2 (as Go's flag package). */
function refuse(msg: string): never {
  process.stderr.write(`${PROGRAM}: ${msg}\n${usage(PROGRAM, SPECS)}\n`);
  process.exit(2);
}

/** Cannot run here or cannot start: one line, exit 1. */
function fail(msg: string): never {
  process.stderr.write(`${PROGRAM}: ${msg.replace(/\s*\n\s*/g, ' ')}\n`);
  process.exit(1);
}

function orRefuse<T>(f: () => T): T {
  try { return f(); } catch (e) { return refuse((e as Error).message); }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.some((a) => a === '-h' || a === '--h' || a === '-help' || a === '--help')) {
    process.stdout.write(usage(PROGRAM, SPECS) + '\n');
    return;
  }
  let values: FlagValues;
  let set: Set<string>;
  try {
    ({ values, set } = parseFlags(argv, SPECS, { args: false }));
  } catch (err) {
    refuse((err as FlagError).message);
  }
  if (values.v || values.version) { process.stdout.write(`${VERSION}\n`); return; }
  const hubList = values.hub as string;
  const etcdList = values.etcd as string;
  if (hubList && etcdList) refuse('-hub and -etcd are alternatives: give one');
  if (!hubList && !etcdList) refuse('give -hub ws://host:port[,...] (hub tier) or -etcd host:port[,...] (standalone)');
  const web = orRefuse(() => parseListenAddress(values.web as string));
  const nodeIp = orRefuse(() => checkIp(values.ip as string));
  const grpcAddr = values['grpc.addr'] as string;
  const grpcListen = grpcAddr ? orRefuse(() => parseListenAddress(grpcAddr)) : undefined;
  let grpcTls: { keyFile: string; certFile: string } | undefined;
  if (grpcListen && values['grpc.TLS']) {
    grpcTls = { keyFile: values['grpc.key'] as string, certFile: values['grpc.cert'] as string };
    if (!grpcTls.keyFile || !grpcTls.certFile) refuse('keyfile or certfile can\'t be empty when TLS is enabled.');
    for (const flag of ['grpc.cert', 'grpc.key'] as const) {
      try { readFileSync(values[flag] as string); } catch (e) { fail(`cannot read -${flag}: ${(e as Error).message}`); }
    }
  }
  let hubs: string[] = [];
  let endpoints: string[] = [];
  if (etcdList) {
    endpoints = orRefuse(() => parseEndpoints(etcdList, '-etcd'));
    if (endpoints.length === 0) refuse(`-etcd ${JSON.stringify(etcdList)} names no endpoint`);
    if (!['etcd', 'etcd3', 'etcd2'].includes(values.store as string)) refuse(`invalid value ${JSON.stringify(values.store)} for flag -store: want etcd (v3 API) or etcd2 (v2 keys API)`);
    // The embedded hub listens on loopback for this agent alone, without token or TLS.
    if (values['token-file']) refuse('-token-file is for -hub: the embedded hub of standalone mode (-etcd) takes no token');
    if (values['ca-file']) refuse('-ca-file is for wss:// hubs: the embedded hub of standalone mode (-etcd) is plain ws:// on loopback');
  } else {
    hubs = orRefuse(() => parseHubAddresses(hubList, '-hub'));
    if (hubs.length === 0) refuse(`-hub ${JSON.stringify(hubList)} names no hub`);
    if (set.has('store')) refuse('-store is for standalone mode (-etcd): with -hub the hubs read the store');
    if (values['ca-file'] && !hubs.some((h) => /^wss:/i.test(h))) refuse('-ca-file is given but no -hub address is wss://: the connections would not use TLS');
  }
  const tokenFile = values['token-file'] as string;
  const token = tokenFile ? orRefuse(() => readToken(tokenFile)) : undefined;
  if (values['ca-file']) { try { readFileSync(values['ca-file'] as string); } catch (e) { refuse(`cannot read -ca-file: ${(e as Error).message}`); } }

  // Standalone mode embeds a hub: uWebSockets.js must have its native binary here.
  const problems = runtimeProblems({ crc32: true, uws: Boolean(etcdList) });
  if (problems.length > 0) fail(problems.join('; '));

  const log = createLogger(PROGRAM, values.debug as boolean);
  const tokenWarning = tokenFile ? tokenFileWarning(tokenFile) : undefined;
  if (tokenWarning) log.warn({ file: tokenWarning.file, mode: tokenWarning.mode }, tokenWarning.msg);
  const { startAgent } = await import('./agent.js');

  let embedded: Hub | undefined;
  if (etcdList) {
    // Standalone: a hub inside this process on loopback, holding this node's single etcd watch.
    // Loaded only here: the etcd client (gRPC) and uWebSockets.js cost an agent in hub mode
    // start-up time and memory for nothing.
    const [{ startHub }, { createStore }] = await Promise.all([import('../hub/hub.js'), import('../hub/store/create.js')]);
    const store = orRefuse(() => createStore({ kind: values.store as string, endpoints }));
    embedded = await startHub({
      store, prefix: values.prefix as string, host: '127.0.0.1', port: 0,
      historyMaxCount: AGENT_DEFAULTS.embeddedHubHistoryMaxCount, historyMaxBytes: AGENT_DEFAULTS.embeddedHubHistoryMaxBytes,
    }, log.child({ component: 'embedded-hub' })).catch((e: Error) => fail(`cannot start the embedded hub: ${e.message}`));
    hubs = [`ws://127.0.0.1:${embedded.port}`];
    log.info({ etcd: etcdList, store: store.description }, 'standalone mode: embedded hub started');
  }

  const agent = await startAgent({
    host: web.host,
    port: web.port,
    nodeIp,
    hostname: (values.hostname as string) || undefined,
    noauth: values.noauth as boolean,
    hubs,
    token,
    caFile: (values['ca-file'] as string) || undefined,
    stateDir: (values['state-dir'] as string) || undefined,
    prefix: values.prefix as string,
    silenceTimeoutMs: values['silence-timeout'] as number,
    backoffCapMs: values['reconnect-max'] as number,
    grpc: grpcListen ? { ...grpcListen, tls: grpcTls } : undefined,
  }, log).catch((e: Error) => fail(`cannot start: ${e.message}`));
  // Stopping gracefully (the state file saved) from here on: the handlers are in place before
  // 'agent listening' is printed, since whoever reads the line may signal at once, and this
  // process can be preempted between writing the line and a statement after it
  // (test/agent-bundle.test.ts sends SIGTERM on the line).
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    void (async () => {
      await agent.stop();
      await embedded?.stop();
      log.info('agent stopped');
      process.exit(0);
    })();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  log.info({ version: VERSION, web: `${web.host || '*'}:${agent.port}`, grpc: grpcListen ? `${grpcListen.host || '*'}:${agent.grpcPort}${grpcTls ? ' (TLS)' : ''}` : null, hubs, noauth: values.noauth, ip: values.ip }, 'agent listening');
}

main().catch((e: Error) => fail(`cannot start: ${e.message}`));
