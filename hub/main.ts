#!/usr/bin/env node
// lainlet-hub: holds the only etcd watch and serves the cluster state to agents.
// First: loads uWebSockets.js quietly before ./hub.js does (shared/uws-first.ts).
import '../shared/uws-first.js';
import '../shared/tick-map.js';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { createLogger } from '../shared/log.js';
import { FlagError, MAX_TIMER_MS, parseEndpoints, parseFlags, parseListenAddress, usage, type FlagSpec, type FlagValues } from '../shared/flags.js';
import { runtimeProblems } from '../shared/runtime.js';
import { readToken, tokenFileWarning } from '../shared/token.js';
import { VERSION } from '../shared/version.js';
import { AGENT_DEFAULTS } from '../agent/defaults.js';
import { HUB_DEFAULTS } from './defaults.js';
import { startHub } from './hub.js';
import { createStore } from './store/create.js';
import { Etcd2Members, Etcd3Members, MemoryMembers } from './members.js';
import { hubMetrics } from './metrics.js';
import { keyRangeFilter } from '../shared/protocol.js';
import { hubStatus } from './status.js';
import type { MemoryStore } from './store/memory.js';

const SPECS: FlagSpec[] = [
  { name: 'etcd', kind: 'string', default: '', help: 'etcd endpoints, comma-separated host:port (http:// optional)' },
  { name: 'listen', kind: 'string', default: '127.0.0.1:9101', help: 'address agents connect to (host:port)' },
  { name: 'prefix', kind: 'string', default: HUB_DEFAULTS.prefix, help: 'etcd key prefix holding the Lain state' },
  { name: 'store', kind: 'string', default: 'etcd', help: 'state backend: etcd (v3 API), etcd2 (v2 keys API) or memory' },
  { name: 'seed', kind: 'string', default: '', help: 'with --store memory: JSON file whose "kvs" object seeds the store' },
  {
    name: 'history-count', kind: 'int', default: HUB_DEFAULTS.historyMaxCount, min: 1, help: 'deltas kept for resuming agents',
    why: 'without history every agent that reconnects is sent a whole snapshot',
  },
  {
    name: 'history-bytes', kind: 'int', default: HUB_DEFAULTS.historyMaxBytes, min: 64 * 1024, help: 'bytes of deltas kept for resuming agents',
    why: 'a smaller history holds hardly one pod group\'s delta, so resuming agents get snapshots',
  },
  { name: 'history-prefill', kind: 'int', default: HUB_DEFAULTS.historyPrefillRevisions, min: 0, help: 'store revisions a starting hub replays to fill its history (0 = none)' },
  {
    name: 'max-backpressure', kind: 'int', default: HUB_DEFAULTS.maxBackpressure, min: 64 * 1024, help: 'bytes queued to one agent before it is disconnected as too slow',
    why: 'below that one burst of ordinary deltas cuts off every agent as too slow',
  },
  {
    name: 'max-total-backpressure', kind: 'int', default: HUB_DEFAULTS.maxTotalBackpressure, min: 64 * 1024, help: 'bytes queued to all agents together before the most backed-up are disconnected',
  },
  {
    name: 'progress-interval', kind: 'int', default: HUB_DEFAULTS.progressIntervalMs, min: 100, max: MAX_TIMER_MS, help: 'milliseconds between progress (heartbeat) frames',
    why: 'each interval sends a frame to every agent; more often is load without use',
  },
  { name: 'shutdown-spread', kind: 'int', default: HUB_DEFAULTS.shutdownSpreadMs, min: 0, max: MAX_TIMER_MS, help: 'on SIGTERM, milliseconds over which agents are told to move' },
  {
    name: 'workers', kind: 'int', default: availableParallelism(), min: 0, max: 256,
    help: 'WebSocket worker threads sharing the port (0 = serve agents on the main thread, beside the store sync)',
  },
  {
    name: 'advertise', kind: 'string', default: '',
    help: 'URL agents reach this hub at (ws:// or wss://), registered in the hub tier (default: from --listen, unless that is a wildcard)',
  },
  { name: 'members-prefix', kind: 'string', default: '', help: `etcd key prefix where the hubs register (default: --prefix + ${HUB_DEFAULTS.membersPrefixUnderPrefix}; never inside the key ranges agents are sent)` },
  { name: 'members-refresh', kind: 'int', default: HUB_DEFAULTS.membersRefreshMs, min: 100, max: MAX_TIMER_MS, help: 'milliseconds between writes and reads of the hub registry (and balance rounds)' },
  { name: 'members-ttl', kind: 'int', default: HUB_DEFAULTS.memberTtlSec, min: 2, max: 3600, help: 'seconds a hub stays in the registry after its last keep-alive (a hub gone without a word)' },
  { name: 'balance', kind: 'bool', default: true, help: 'move agents to the less loaded hubs of the tier (--balance=false: only register and tell agents the members)' },
  { name: 'token-file', kind: 'string', default: '', help: 'file holding the bearer token agents must present' },
  { name: 'tls-cert', kind: 'string', default: '', help: 'TLS certificate (PEM); agents then connect with wss://' },
  { name: 'tls-key', kind: 'string', default: '', help: 'TLS private key (PEM)' },
  { name: 'insecure', kind: 'bool', default: false, help: 'allow a non-loopback listen address without a token' },
  { name: 'debug', kind: 'bool', default: false, help: 'debug logging' },
  { name: 'v', kind: 'bool', default: false, help: 'print the version and exit' },
  { name: 'version', kind: 'bool', default: false, help: 'print the version and exit' },
];

const PROGRAM = 'lainlet-hub';

/** A configuration this program will not run with: one line, the usage, exit 2 (as Go's flag package). */
function refuse(msg: string): never {
  process.stderr.write(`${PROGRAM}: ${msg}\n${usage(PROGRAM, SPECS, '--')}\n`);
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

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.some((a) => a === '-h' || a === '--h' || a === '-help' || a === '--help')) {
    process.stdout.write(usage(PROGRAM, SPECS, '--') + '\n');
    return;
  }
  let values: FlagValues;
  let set: Set<string>;
  try {
    ({ values, set } = parseFlags(argv, SPECS, { args: false, dash: '--' }));
  } catch (err) {
    refuse((err as FlagError).message);
  }
  if (values.v || values.version) { process.stdout.write(`${VERSION}\n`); return; }
  const { host, port } = orRefuse(() => parseListenAddress(values.listen as string));
  const storeKind = values.store as string;
  if (!['etcd', 'etcd3', 'etcd2', 'memory'].includes(storeKind)) refuse(`invalid value ${JSON.stringify(storeKind)} for flag --store: want etcd (v3 API), etcd2 (v2 keys API) or memory`);
  let endpoints: string[] = [];
  if (storeKind === 'memory') {
    if (values.etcd) refuse('--etcd is for --store etcd or etcd2: --store memory reads no etcd');
  } else {
    endpoints = orRefuse(() => parseEndpoints(values.etcd as string, '--etcd'));
    if (endpoints.length === 0) refuse(`--etcd host:port[,...] is required with --store ${storeKind}`);
    if (set.has('seed')) refuse('--seed is for --store memory');
  }
  const tokenFile = values['token-file'] as string;
  if (!tokenFile && !isLoopback(host) && !values.insecure) {
    refuse(`refusing to listen on ${values.listen} without --token-file: the hub serves the whole ${values.prefix} keyspace, secrets included, to anyone who connects. Give --token-file, listen on loopback, or pass --insecure.`);
  }
  const token = tokenFile ? orRefuse(() => readToken(tokenFile)) : undefined;
  const tlsCert = values['tls-cert'] as string;
  const tlsKey = values['tls-key'] as string;
  if (Boolean(tlsCert) !== Boolean(tlsKey)) refuse('--tls-cert and --tls-key go together');
  if (tlsCert) { try { readFileSync(tlsCert); readFileSync(tlsKey); } catch (e) { refuse(`cannot read TLS files: ${(e as Error).message}`); } }
  const store = orRefuse(() => createStore({ kind: storeKind, endpoints, seedFile: values.seed as string }));

  const problems = runtimeProblems({ uws: true });
  if (problems.length > 0) fail(problems.join('; '));

  const log = createLogger(PROGRAM, values.debug as boolean);
  const tokenWarning = tokenFile ? tokenFileWarning(tokenFile) : undefined;
  if (tokenWarning) log.warn({ file: tokenWarning.file, mode: tokenWarning.mode }, tokenWarning.msg);
  const progressMs = values['progress-interval'] as number;
  if (progressMs * 3 > AGENT_DEFAULTS.silenceTimeoutMs) {
    log.warn({ progressIntervalMs: progressMs }, `--progress-interval ${progressMs} is more than a third of the agents' default -silence-timeout (${AGENT_DEFAULTS.silenceTimeoutMs} ms): agents on that default drop this hub as silent; raise their -silence-timeout to at least ${progressMs * 3}`);
  }

  const advertised = (values.advertise as string) || (host && !['0.0.0.0', '::', '[::]'].includes(host) ? `${tlsCert ? 'wss' : 'ws'}://${host.includes(':') ? `[${host}]` : host}:${port}` : '');
  if (advertised && !/^wss?:\/\/[^/]+/.test(advertised)) refuse(`invalid value ${JSON.stringify(advertised)} for flag --advertise: want ws://host:port or wss://host:port`);
  const membersPrefix = (values['members-prefix'] as string) || `${values.prefix as string}${HUB_DEFAULTS.membersPrefixUnderPrefix}`;
  if (keyRangeFilter(values.prefix as string)(`${membersPrefix}x`)) refuse(`--members-prefix ${membersPrefix} is inside the key ranges agents are sent: the registry would reach every node`);
  const membersBackend = storeKind === 'memory' ? new MemoryMembers(store as MemoryStore) : storeKind === 'etcd2' ? new Etcd2Members(endpoints) : new Etcd3Members(endpoints);
  if ((values['members-ttl'] as number) * 1000 < 2 * (values['members-refresh'] as number)) refuse(`--members-ttl ${values['members-ttl'] as number} s is shorter than two --members-refresh periods: a live hub would drop out of the registry`);
  const status = hubStatus(advertised || undefined);

  const metrics = hubMetrics();
  const hub = await startHub({
    store,
    prefix: values.prefix as string,
    host: host || '0.0.0.0',
    port,
    historyMaxCount: values['history-count'] as number,
    historyMaxBytes: values['history-bytes'] as number,
    maxBackpressure: values['max-backpressure'] as number,
    maxTotalBackpressure: values['max-total-backpressure'] as number,
    progressIntervalMs: values['progress-interval'] as number,
    historyPrefillRevisions: values['history-prefill'] as number,
    token,
    workers: values.workers as number,
    tls: tlsCert ? { certFile: tlsCert, keyFile: tlsKey } : undefined,
    routes: { '/metrics': () => ({ status: 200, contentType: metrics.contentType, body: metrics.render() }), ...status.routes },
    members: {
      backend: membersBackend, prefix: membersPrefix, advertise: port === 0 ? undefined : advertised || undefined, balance: values.balance as boolean,
      refreshMs: values['members-refresh'] as number, ttlSec: values['members-ttl'] as number,
    },
  }, log).catch((e: Error) => fail(`cannot start: ${e.message}`));
  metrics.bind(hub);
  status.bind(hub);
  if (!advertised) log.warn({ listen: values.listen }, 'not registered in the hub tier (--listen is a wildcard): give --advertise ws://<address>:<port> so other hubs and agents can find this hub');
  log.info({ version: VERSION, listen: `${host || '0.0.0.0'}:${hub.port}`, store: store.description, prefix: values.prefix, tls: Boolean(tlsCert), token: Boolean(tokenFile), workers: values.workers }, 'hub listening');
  void hub.ready.then(() => log.info({ revision: hub.state.revision, keys: hub.state.entries.size }, 'hub ready'));

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, agents: hub.server.agentCount }, 'shutting down: moving agents to other hubs');
    void hub.stop({ spreadMs: signal === 'SIGTERM' ? (values['shutdown-spread'] as number) : 0 }).then(() => {
      log.info('hub stopped');
      process.exit(0);
    });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((e: Error) => fail(`cannot start: ${e.message}`));
