#!/usr/bin/env node
// lainlet-hub: holds the only etcd watch and serves the cluster state to agents.
import { readFileSync } from 'node:fs';
import { createLogger } from '../shared/log.js';
import { FlagError, parseEndpoints, parseFlags, parseListenAddress, usage, type FlagSpec } from '../shared/flags.js';
import { readToken, tokenChecker } from '../shared/token.js';
import { VERSION } from '../shared/version.js';
import { HUB_DEFAULTS, startHub } from './hub.js';
import { createStore } from './store/create.js';
import { hubMetrics } from './metrics.js';

const SPECS: FlagSpec[] = [
  { name: 'etcd', kind: 'string', default: '', help: 'etcd endpoints, comma-separated host:port (http:// optional)' },
  { name: 'listen', kind: 'string', default: '127.0.0.1:9101', help: 'address agents connect to (host:port)' },
  { name: 'prefix', kind: 'string', default: HUB_DEFAULTS.prefix, help: 'etcd key prefix holding the Lain state' },
  { name: 'store', kind: 'string', default: 'etcd', help: 'state backend: etcd (v3 API), etcd2 (v2 keys API) or memory' },
  { name: 'seed', kind: 'string', default: '', help: 'with --store memory: JSON file whose "kvs" object seeds the store' },
  { name: 'history-count', kind: 'int', default: HUB_DEFAULTS.historyMaxCount, help: 'deltas kept for resuming agents' },
  { name: 'history-bytes', kind: 'int', default: HUB_DEFAULTS.historyMaxBytes, help: 'bytes of deltas kept for resuming agents' },
  { name: 'history-prefill', kind: 'int', default: HUB_DEFAULTS.historyPrefillRevisions, help: 'store revisions a starting hub replays to fill its history (0 = none)' },
  { name: 'max-backpressure', kind: 'int', default: HUB_DEFAULTS.maxBackpressure, help: 'bytes queued to one agent before it is disconnected as too slow' },
  { name: 'progress-interval', kind: 'int', default: HUB_DEFAULTS.progressIntervalMs, help: 'milliseconds between progress (heartbeat) frames' },
  { name: 'shutdown-spread', kind: 'int', default: 10_000, help: 'on SIGTERM, milliseconds over which agents are told to move' },
  { name: 'token-file', kind: 'string', default: '', help: 'file holding the bearer token agents must present' },
  { name: 'tls-cert', kind: 'string', default: '', help: 'TLS certificate (PEM); agents then connect with wss://' },
  { name: 'tls-key', kind: 'string', default: '', help: 'TLS private key (PEM)' },
  { name: 'insecure', kind: 'bool', default: false, help: 'allow a non-loopback listen address without a token' },
  { name: 'debug', kind: 'bool', default: false, help: 'debug logging' },
  { name: 'v', kind: 'bool', default: false, help: 'print the version and exit' },
  { name: 'version', kind: 'bool', default: false, help: 'print the version and exit' },
];

function fail(msg: string): never {
  process.stderr.write(`lainlet-hub: ${msg}\n`);
  process.exit(2);
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseFlags(process.argv.slice(2), SPECS));
  } catch (err) {
    if (process.argv.includes('-h') || process.argv.includes('--help') || process.argv.includes('-help')) {
      process.stdout.write(usage('lainlet-hub', SPECS) + '\n');
      process.exit(0);
    }
    fail(`${(err as FlagError).message}\n${usage('lainlet-hub', SPECS)}`);
  }
  if (values.v || values.version) { process.stdout.write(`${VERSION}\n`); return; }
  const log = createLogger('lainlet-hub', values.debug as boolean);
  const { host, port } = (() => { try { return parseListenAddress(values.listen as string); } catch (e) { return fail((e as Error).message); } })();
  const tokenFile = values['token-file'] as string;
  if (!tokenFile && !isLoopback(host) && !values.insecure) {
    fail(`refusing to listen on ${values.listen} without --token-file: the hub serves the whole ${values.prefix} keyspace, secrets included, to anyone who connects. Give --token-file, listen on loopback, or pass --insecure.`);
  }
  let authorize: ((a: string) => boolean) | undefined;
  if (tokenFile) {
    try { authorize = tokenChecker(readToken(tokenFile)); } catch (e) { fail((e as Error).message); }
  }
  const tlsCert = values['tls-cert'] as string;
  const tlsKey = values['tls-key'] as string;
  if (Boolean(tlsCert) !== Boolean(tlsKey)) fail('--tls-cert and --tls-key go together');
  if (tlsCert) { try { readFileSync(tlsCert); readFileSync(tlsKey); } catch (e) { fail(`cannot read TLS files: ${(e as Error).message}`); } }

  let store;
  try {
    store = createStore({ kind: values.store as string, endpoints: parseEndpoints(values.etcd as string), seedFile: values.seed as string });
  } catch (e) { fail((e as Error).message); }

  const metrics = hubMetrics();
  const hub = await startHub({
    store,
    prefix: values.prefix as string,
    host: host || '0.0.0.0',
    port,
    historyMaxCount: values['history-count'] as number,
    historyMaxBytes: values['history-bytes'] as number,
    maxBackpressure: values['max-backpressure'] as number,
    progressIntervalMs: values['progress-interval'] as number,
    historyPrefillRevisions: values['history-prefill'] as number,
    authorize,
    tls: tlsCert ? { certFile: tlsCert, keyFile: tlsKey } : undefined,
    routes: { '/metrics': () => ({ status: 200, contentType: metrics.contentType, body: metrics.render() }) },
  }, log).catch((e: Error) => fail(e.message));
  metrics.bind(hub);
  log.info({ version: VERSION, listen: `${host || '0.0.0.0'}:${hub.port}`, store: store.description, prefix: values.prefix, tls: Boolean(tlsCert), token: Boolean(tokenFile) }, 'hub listening');
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

void main();
