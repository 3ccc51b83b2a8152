// Wires an agent together: hub client → cache → indexes → endpoints → HTTP, plus the state
// file. Used by the agent's main, the demo and the tests.
import { hostname as osHostname } from 'node:os';
import { collectGarbage } from '../shared/gc.js';
import type { Logger } from '../shared/log.js';
import { VERSION } from '../shared/version.js';
import { AnswerCache } from './api/answers.js';
import { createEndpoints } from './api/endpoints/index.js';
import { Cache } from './cache.js';
import { HubClient } from './client.js';
import { AgentHttp } from './http.js';
import { Indexes } from './indexes/index.js';
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
  /** 3 × the hubs' progress interval. */
  silenceTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** A stream client that lets this much pile up unread is disconnected. */
  maxStreamBufferBytes?: number;
}

export const AGENT_DEFAULTS = {
  silenceTimeoutMs: 15_000,
  // Full-jitter backoff from ~200 ms up to 30 s (issue #4): quick after a blip, gentle on a
  // hub tier that is coming back with every node of the cluster knocking.
  backoffBaseMs: 200,
  backoffCapMs: 30_000,
  // A few MB: several full all-apps answers of a large cluster.
  maxStreamBufferBytes: 4 * 1024 * 1024,
};

export interface Agent {
  port: number;
  cache: Cache;
  indexes: Indexes;
  client: HubClient;
  http: AgentHttp;
  stop(): Promise<void>;
}

export async function startAgent(opts: AgentOptions, log: Logger): Promise<Agent> {
  const startedAt = Date.now();
  const hostname = opts.hostname || osHostname();
  const cache = new Cache();
  const indexes = new Indexes({ prefix: opts.prefix ?? '/lain/', logger: log });
  const endpoints = createEndpoints({ indexes, nodeIp: opts.nodeIp, hostname, noauth: opts.noauth });
  const answers = new AnswerCache((index) => indexes.generation(index));
  const streams = new StreamHub(answers, opts.maxStreamBufferBytes ?? AGENT_DEFAULTS.maxStreamBufferBytes);
  const persister = opts.stateDir ? new StatePersister(opts.stateDir, cache, log) : undefined;

  cache.onChange((changes) => {
    const touched = indexes.apply(changes);
    streams.changed(touched);
    persister?.changed();
  });

  const saved = persister?.load();
  if (saved) {
    cache.replace(saved.rev, saved.entries, 'state-file');
    cache.epoch = saved.epoch ?? '';
    log.info({ rev: saved.rev, keys: saved.entries.length, savedAt: new Date(saved.savedAt).toISOString() }, 'loaded state file; serving it (stale) until a hub is reached');
  }

  // The initial sync is the agent's memory peak (snapshot frames, decoding temporaries, the
  // first state file): once it is behind us, collect once so the garbage leaves the RSS.
  let settled = false;
  const settle = () => {
    if (settled || !cache.hasState) return;
    settled = true;
    setTimeout(collectGarbage, 100).unref();
  };
  const client = new HubClient({
    hubs: opts.hubs,
    node: hostname,
    token: opts.token,
    caFile: opts.caFile,
    silenceTimeoutMs: opts.silenceTimeoutMs ?? AGENT_DEFAULTS.silenceTimeoutMs,
    backoffBaseMs: opts.backoffBaseMs ?? AGENT_DEFAULTS.backoffBaseMs,
    backoffCapMs: opts.backoffCapMs ?? AGENT_DEFAULTS.backoffCapMs,
  }, cache, log);

  if (persister) persister.onSaved = settle;
  else client.onStatus = () => { if (client.status.live) settle(); };
  if (saved) settle(); // loading a large state file is a peak of its own
  const isStale = () => !client.status.live || cache.hubStale || cache.source !== 'hub';
  const metrics = new AgentMetrics({ cache, client, streams, isStale, persister });

  const http: AgentHttp = new AgentHttp({
    endpoints,
    answers,
    streams,
    notReadyReason: () => (cache.hasState ? null : 'lainlet agent not synced yet: no state from a hub or state file'),
    version: VERSION,
    debug: (): unknown => ({
      connections: http.inFlight,
      goroutines: (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length,
      version: VERSION,
      hostname,
      nodeIp: opts.nodeIp,
      revision: cache.revision,
      hasState: cache.hasState,
      source: cache.source,
      stale: isStale(),
      hub: {
        address: client.status.hub,
        connected: client.status.connected,
        live: client.status.live,
        revision: client.status.hubRevision,
        hubStale: cache.hubStale,
        lastFrameAgeMs: client.status.lastFrameAt ? Date.now() - client.status.lastFrameAt : null,
        reconnects: client.status.reconnects,
        snapshots: client.status.snapshots,
        resets: client.status.resets,
        silenceTimeoutMs: client.silenceTimeoutMs,
        lastError: client.status.lastError,
      },
      streams: streams.stats,
      answers: { renders: answers.renders, hits: answers.hits },
      indexes: indexes.stats(),
      stateFile: persister ? { path: persister.path, revision: persister.savedRevision, lastSavedAt: persister.lastSavedAt || null, lastError: persister.lastSaveError, errors: persister.saveErrors } : null,
      uptimeMs: Date.now() - startedAt,
    }),
    extraRoutes: { '/metrics': async () => ({ status: 200, ...(await metrics.scrape()) }) },
    // No log line per request unless -debug: a busy node answers thousands a second.
    onRequest: log.isLevelEnabled('debug')
      ? (path, status) => { metrics.request(path, status); log.debug({ path, status }, 'request'); }
      : metrics.request,
  });
  const port = await http.listen(opts.host, opts.port);
  client.start();

  return {
    port, cache, indexes, client, http,
    async stop() {
      client.stop();
      persister?.saveNow();
      await http.close();
    },
  };
}
