// The agent's /debug view: one JSON object saying what the agent holds, where it got it from,
// and how its hub connection, streams, answers, indexes and state file are doing. Read by
// operators and by the tests; the original's fields (connections, goroutines, version) first.
import type { AnswerCache } from './api/answers.js';
import type { Cache } from './cache.js';
import type { HubClient } from './client.js';
import type { AgentHttp } from './http.js';
import type { Indexes } from './indexes/index.js';
import type { StatePersister } from './persist.js';
import type { StreamHub } from './streams.js';

export interface DebugSource {
  version: string;
  hostname: string;
  nodeIp: string;
  startedAt: number;
  cache: Cache;
  client: HubClient;
  streams: StreamHub;
  answers: AnswerCache;
  indexes: Indexes;
  /** Absent without -state-dir. */
  persister?: StatePersister;
  isStale: () => boolean;
  /** The HTTP server is created after this view is, so it is looked up at each request. */
  http: () => AgentHttp;
}

/** The /debug answer, computed anew at each request. */
export function debugView(src: DebugSource): () => unknown {
  const { cache, client, streams, answers, indexes, persister } = src;
  return () => ({
    connections: src.http().inFlight,
    // The original (Go) reports its goroutines; the nearest thing here is the live handles.
    goroutines: (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length,
    version: src.version,
    hostname: src.hostname,
    nodeIp: src.nodeIp,
    revision: cache.revision,
    hasState: cache.hasState,
    source: cache.source,
    stale: src.isStale(),
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
      // The hub tier as this agent knows it: where it may go (members learnt, then seeds).
      members: client.status.members,
      candidates: client.hubs,
      moves: client.status.moves,
    },
    streams: streams.stats,
    answers: { renders: answers.renders, hits: answers.hits, held: answers.held, dropped: answers.dropped },
    indexes: indexes.stats(),
    stateFile: persister ? { path: persister.path, revision: persister.savedRevision, lastSavedAt: persister.lastSavedAt || null, lastError: persister.lastSaveError, errors: persister.saveErrors } : null,
    uptimeMs: Date.now() - src.startedAt,
  });
}
