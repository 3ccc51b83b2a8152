#!/usr/bin/env -S node --max-semi-space-size=2
// lainlet-agent: the per-node daemon serving the original lainlet's /v2 API from a local cache.
// The shebang gives V8 a 2 MB young generation: once its answers are cached the agent allocates
// little, and the default (16 MB semi-spaces) costs ~30 MB of RSS on every node
// (bench/RESULTS.md, agent memory).
// Accepts the original's command line (Go flag syntax) plus the hub-tier flags.
import { readFileSync } from 'node:fs';
import { createLogger } from '../shared/log.js';
import { FlagError, parseEndpoints, parseFlags, parseListenAddress, usage, type FlagSpec, type FlagValues } from '../shared/flags.js';
import { readToken } from '../shared/token.js';
import { VERSION } from '../shared/version.js';
import type { Hub } from '../hub/hub.js';
import { startAgent } from './agent.js';

const SPECS: FlagSpec[] = [
  { name: 'web', kind: 'string', default: ':9001', help: 'HTTP API listen address (":9001" = all interfaces)' },
  { name: 'ip', kind: 'string', default: '', help: 'this node\'s IP: a local caller, and the default nodeip of /v2/localspecquery' },
  { name: 'noauth', kind: 'bool', default: false, help: 'disable authorization checks' },
  { name: 'debug', kind: 'bool', default: false, help: 'debug logging' },
  { name: 'v', kind: 'bool', default: false, help: 'print the version and exit' },
  { name: 'hub', kind: 'string', default: '', help: 'hub addresses, comma-separated ws://host:port or wss://host:port' },
  { name: 'etcd', kind: 'string', default: '', help: 'standalone mode: etcd endpoints (host:port,...); runs an embedded hub instead of -hub' },
  { name: 'store', kind: 'string', default: 'etcd', help: 'standalone mode: etcd (v3 API) or etcd2 (v2 keys API)' },
  { name: 'prefix', kind: 'string', default: '/lain/', help: 'etcd key prefix holding the Lain state' },
  { name: 'hostname', kind: 'string', default: '', help: 'node name used by /v2/rebellion/localprocs (default: the OS hostname)' },
  { name: 'state-dir', kind: 'string', default: '', help: 'directory for the persisted state (served, stale, when no hub is reachable)' },
  { name: 'token-file', kind: 'string', default: '', help: 'file holding the bearer token the hubs require' },
  { name: 'ca-file', kind: 'string', default: '', help: 'CA certificate (PEM) to verify wss:// hubs' },
  { name: 'silence-timeout', kind: 'int', default: 15_000, help: 'milliseconds without a frame before a hub is considered dead' },
  { name: 'reconnect-max', kind: 'int', default: 30_000, help: 'longest wait in milliseconds between hub connection attempts (full-jitter backoff from 200 ms)' },
  // Accepted so the original's systemd unit works unchanged; this agent serves no gRPC.
  { name: 'grpc.addr', kind: 'string', default: '', help: 'ignored (the original\'s gRPC mirror is not served)' },
  { name: 'grpc.TLS', kind: 'bool', default: false, help: 'ignored' },
  { name: 'grpc.key', kind: 'string', default: '', help: 'ignored' },
  { name: 'grpc.cert', kind: 'string', default: '', help: 'ignored' },
];

function fail(msg: string): never {
  process.stderr.write(`lainlet-agent: ${msg}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.some((a) => a === '-h' || a === '-help' || a === '--help')) {
    process.stdout.write(usage('lainlet-agent', SPECS) + '\n');
    return;
  }
  let values: FlagValues;
  try {
    ({ values } = parseFlags(argv, SPECS));
  } catch (err) {
    fail(`${(err as FlagError).message}\n${usage('lainlet-agent', SPECS)}`);
  }
  if (values.v) { process.stdout.write(`${VERSION}\n`); return; }
  const log = createLogger('lainlet-agent', values.debug as boolean);
  const hubList = values.hub as string;
  const etcdList = values.etcd as string;
  if (hubList && etcdList) fail('-hub and -etcd are alternatives: give one');
  if (!hubList && !etcdList) fail('give -hub ws://host:port[,...] (hub tier) or -etcd host:port[,...] (standalone)');
  let web;
  try { web = parseListenAddress(values.web as string); } catch (e) { fail((e as Error).message); }
  if (values['grpc.addr']) log.warn({ grpcAddr: values['grpc.addr'] }, '-grpc.addr is accepted for compatibility but no gRPC API is served');
  let token: string | undefined;
  if (values['token-file']) { try { token = readToken(values['token-file'] as string); } catch (e) { fail((e as Error).message); } }
  if (values['ca-file']) { try { readFileSync(values['ca-file'] as string); } catch (e) { fail(`cannot read -ca-file: ${(e as Error).message}`); } }

  let embedded: Hub | undefined;
  let hubs: string[];
  if (etcdList) {
    // Standalone: a hub inside this process on loopback, holding this node's single etcd watch.
    // Loaded only here: the etcd client (gRPC) and uWebSockets.js cost an agent in hub mode
    // start-up time and memory for nothing.
    const [{ startHub, HUB_DEFAULTS }, { createStore }] = await Promise.all([import('../hub/hub.js'), import('../hub/store/create.js')]);
    const store = (() => { try { return createStore({ kind: values.store as string, endpoints: parseEndpoints(etcdList) }); } catch (e) { return fail((e as Error).message); } })();
    embedded = await startHub({
      store, prefix: values.prefix as string, host: '127.0.0.1', port: 0,
      historyMaxCount: 1000, historyMaxBytes: 32 * 1024 * 1024,
      maxBackpressure: HUB_DEFAULTS.maxBackpressure, progressIntervalMs: HUB_DEFAULTS.progressIntervalMs,
    }, log.child({ component: 'embedded-hub' }));
    hubs = [`ws://127.0.0.1:${embedded.port}`];
    log.info({ etcd: etcdList, store: store.description }, 'standalone mode: embedded hub started');
  } else {
    hubs = hubList.split(',').map((s) => s.trim()).filter(Boolean);
    for (const h of hubs) if (!/^wss?:\/\//.test(h)) fail(`-hub address ${JSON.stringify(h)} must start with ws:// or wss://`);
  }

  const agent = await startAgent({
    host: web.host,
    port: web.port,
    nodeIp: values.ip as string,
    hostname: (values.hostname as string) || undefined,
    noauth: values.noauth as boolean,
    hubs,
    token,
    caFile: (values['ca-file'] as string) || undefined,
    stateDir: (values['state-dir'] as string) || undefined,
    prefix: values.prefix as string,
    silenceTimeoutMs: values['silence-timeout'] as number,
    backoffCapMs: values['reconnect-max'] as number,
  }, log).catch((e: Error) => fail(`cannot start: ${e.message}`));
  log.info({ version: VERSION, web: `${web.host || '*'}:${agent.port}`, hubs, noauth: values.noauth, ip: values.ip }, 'agent listening');

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
}

void main();
