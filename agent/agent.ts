// Wires an agent together: hub client → cache → indexes → endpoints → HTTP, plus the state
// file. Used by the agent's main, the demo and the tests.
import { hostname as osHostname } from 'node:os';
import { collectGarbage } from '../shared/gc.js';
import { HUB_DEFAULTS } from '../hub/defaults.js';
import type { Logger } from '../shared/log.js';
import { VERSION } from '../shared/version.js';
import { AnswerCache } from './api/answers.js';
import { createEndpoints } from './api/endpoints/index.js';
import { Cache } from './cache.js';
import { HubClient } from './client.js';
import type { GrpcApi, GrpcTls } from './grpc/server.js';
import { AgentHttp } from './http.js';
import { Indexes } from './indexes/index.js';
import { POD_GROUP_RECORD_VERSION } from './model/podgroup.js';
import { debugView } from './debug.js';
import { AGENT_DEFAULTS } from './defaults.js';
import { AgentMetrics } from './metrics.js';
import { StatePersister } from './persist.js';
import { StreamHub } from './streams.js';

export interface AgentOptions {
  /** HTTP listen host ("" = all interfaces) and port. */
  host: string;
  port: number;
  /** The node's IP: a local caller, and /v2/localspecquery's default. */
  nodeIp: string;
  hostname?: string;
  noauth: boolean;
  hubs: string[];
  token?: string;
  caFile?: string;
  stateDir?: string;
  prefix?: string;
  /** 3 × the hubs' progress interval. Options left out take their value from AGENT_DEFAULTS. */
  silenceTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** A stream client that lets this much pile up unread is disconnected. */
  maxStreamBufferBytes?: number;
  /** The gRPC mirror (-grpc.addr, GRPC.md): off when absent. */
  grpc?: { host: string; port: number; tls?: GrpcTls };
}

// bench/lib imports AGENT_DEFAULTS from here; it lives in agent/defaults.ts.
export { AGENT_DEFAULTS };

export interface Agent {
  port: number;
  cache: Cache;
  indexes: Indexes;
  client: HubClient;
  http: AgentHttp;
  /** The gRPC mirror and its port, with opts.grpc. */
  grpc?: GrpcApi;
  grpcPort?: number;
  stop(): Promise<void>;
}

export async function startAgent(opts: AgentOptions, log: Logger): Promise<Agent> {
  const startedAt = Date.now();
  const hostname = opts.hostname || osHostname();
  const cache = new Cache();
  const indexes = new Indexes({ prefix: opts.prefix ?? HUB_DEFAULTS.prefix, logger: log });
  const endpoints = createEndpoints({ indexes, nodeIp: opts.nodeIp, hostname, noauth: opts.noauth });
  const answers = new AnswerCache((index) => indexes.generation(index));
  const streams = new StreamHub(answers, opts.maxStreamBufferBytes ?? AGENT_DEFAULTS.maxStreamBufferBytes);
  const notReadyReason = () => (cache.hasState ? null : 'lainlet agent not synced yet: no state from a hub or state file');
  // The gRPC mirror (@grpc/grpc-js, proto-loader: ~100 ms of loading) is imported only with
  // -grpc.addr. It is loaded here, before the state file, so that Lainlet.Status sees the
  // changes the state file makes exactly as before. test/agent-bundle.test.ts pins both sides.
  const grpcModule = opts.grpc ? await import('./grpc/server.js') : undefined;
  const grpc = grpcModule ? new grpcModule.GrpcApi({
    endpoints, answers, streams, notReadyReason, version: VERSION,
    keysByIndex: () => indexes.stats().keys,
    maxBufferedBytes: opts.maxStreamBufferBytes ?? AGENT_DEFAULTS.maxStreamBufferBytes,
  }) : undefined;
  // The file keeps the decoded pod groups beside their raw values: a start from it need not
  // JSON.parse ~10 MB of them again (issue 13: the largest phase of such a start).
  const persister = opts.stateDir ? new StatePersister(opts.stateDir, cache, log, {
    decoded: { version: POD_GROUP_RECORD_VERSION, recordOf: (key, raw) => indexes.recordOf(key, raw) },
  }) : undefined;

  cache.onChange((changes) => {
    const touched = indexes.apply(changes);
    streams.changed(touched);
    grpc?.changed(touched);
    persister?.changed();
  });

  const saved = persister?.load();
  if (saved) {
    // Records of another version are left: the raw values are decoded as this agent decodes.
    const records = saved.decoded?.v === POD_GROUP_RECORD_VERSION ? saved.decoded.podGroups : undefined;
    if (records) indexes.offerDecoded(records);
    cache.replace(saved.rev, saved.entries, 'state-file');
    cache.epoch = saved.epoch ?? '';
    cache.hubs = saved.hubs ?? [];
    const podGroupRecords = records ? indexes.offerResult()
      : saved.decoded ? `version ${saved.decoded.v}, not ${POD_GROUP_RECORD_VERSION}: values decoded` : 'none: values decoded';
    log.info({ rev: saved.rev, keys: saved.entries.length, savedAt: new Date(saved.savedAt).toISOString(), podGroupRecords }, 'loaded state file; serving it (stale) until a hub is reached');
  }

  // The initial sync is the agent's memory peak (snapshot frames, decoding temporaries, the
  // first state file): once it is behind us, collect once so the garbage leaves the RSS.
  let settled = false;
  const settle = () => {
    if (settled || !cache.hasState) return;
    settled = true;
    setTimeout(collectGarbage, AGENT_DEFAULTS.settleGcDelayMs).unref();
  };
  const client = new HubClient({
    hubs: opts.hubs,
    knownHubs: cache.hubs,
    node: hostname,
    token: opts.token,
    caFile: opts.caFile,
    silenceTimeoutMs: opts.silenceTimeoutMs ?? AGENT_DEFAULTS.silenceTimeoutMs,
    backoffBaseMs: opts.backoffBaseMs ?? AGENT_DEFAULTS.backoffBaseMs,
    backoffCapMs: opts.backoffCapMs ?? AGENT_DEFAULTS.backoffCapMs,
  }, cache, log);

  // The tier's members go into the state file with the state.
  client.onMembers = (urls) => { cache.hubs = urls; persister?.changed(); };
  if (persister) persister.onSaved = settle;
  else client.onStatus = () => { if (client.status.live) settle(); };
  if (saved) settle(); // loading a large state file is a peak of its own
  const isStale = () => !client.status.live || cache.hubStale || cache.source !== 'hub';
  const metrics = new AgentMetrics({ cache, client, streams, isStale, persister, grpc: grpc?.stats });

  const http: AgentHttp = new AgentHttp({
    endpoints,
    answers,
    streams,
    notReadyReason,
    version: VERSION,
    debug: debugView({
      version: VERSION, hostname, nodeIp: opts.nodeIp, startedAt,
      cache, client, streams, answers, indexes, persister, isStale, http: () => http,
    }),
    extraRoutes: { '/metrics': async () => ({ status: 200, ...(await metrics.scrape()) }) },
    // No log line per request unless -debug: a busy node answers thousands a second.
    onRequest: log.isLevelEnabled('debug')
      ? (path, status) => { metrics.request(path, status); log.debug({ path, status }, 'request'); }
      : metrics.request,
  });
  const port = await http.listen(opts.host, opts.port);
  const grpcPort = grpc && opts.grpc ? await grpc.listen(opts.grpc.host, opts.grpc.port, opts.grpc.tls).catch(async (e: Error) => {
    await http.close();
    throw new Error(`gRPC server: cannot listen on -grpc.addr: ${e.message}`);
  }) : undefined;
  client.start();

  return {
    port, cache, indexes, client, http, grpc, grpcPort,
    async stop() {
      client.stop();
      answers.close();
      await persister?.saveNow();
      grpc?.close();
      await http.close();
    },
  };
}
