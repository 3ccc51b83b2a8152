// Barriers for tests: wait on the event that proves a condition, never on a sleep.
//
// The agent writes a change's stream events synchronously while it applies the change, and
// its /debug revision moves in the same step; its eventsSent counter counts every event it has
// written to a stream socket (init and heartbeats aside). That makes two positive barriers:
//   - agentAt(base, rev): the agent has applied etcd revision `rev` (and written its events);
//   - streamsCaughtUp(base, streams, since): every event the agent has written since `since`
//     has arrived on `streams`. Once the agent is at the last revision that matters, nothing
//     more can come: an absence check is then a plain comparison, not a wait.
import { httpGet, waitFor, type EventStream } from './procs.js';

export interface AgentProgress {
  /** The etcd revision the agent has applied. */
  revision: number;
  /** Stream events written (not init, not heartbeats), over the agent's life. */
  eventsSent: number;
}

export async function agentProgress(base: string): Promise<AgentProgress> {
  const res = await httpGet(`${base}/debug`);
  if (res.status !== 200) throw new Error(`${base}/debug: status ${res.status}`);
  const debug = JSON.parse(res.body) as { revision: number; streams: { eventsSent: number } };
  return { revision: debug.revision, eventsSent: debug.streams.eventsSent };
}

/** Resolves once the agent at `base` has applied etcd revision `revision` (a number or etcd's string). */
export async function agentAt(base: string, revision: number | string, timeoutMs = 10_000): Promise<AgentProgress> {
  const want = Number(revision);
  let last: AgentProgress | undefined;
  await waitFor(async () => (last = await agentProgress(base)).revision >= want, {
    timeoutMs,
    intervalMs: 10,
    message: `the agent at ${base} to apply revision ${want} (last seen ${last?.revision ?? 'none'})`,
  });
  return last!;
}

/** The events on `streams` the agent's eventsSent counts: all but init and heartbeats. */
export function countedEvents(streams: Iterable<EventStream>): number {
  let n = 0;
  for (const s of streams) for (const e of s.events) if (e.event !== 'init' && e.event !== 'heartbeat') n++;
  return n;
}

/**
 * Resolves once every event the agent has written since its eventsSent was `since` has arrived
 * on `streams` (which must be all the streams open on it). Returns how many that was.
 */
export async function streamsCaughtUp(base: string, streams: Iterable<EventStream>, since: number, timeoutMs = 10_000): Promise<number> {
  const list = [...streams];
  const sent = (await agentProgress(base)).eventsSent - since;
  await waitFor(() => countedEvents(list) >= sent, {
    timeoutMs,
    intervalMs: 10,
    message: `the ${sent} events the agent sent to arrive (${countedEvents(list)} so far)`,
  });
  return sent;
}

/**
 * `promise`, or a clear failure after `ms`: for an operation that must finish (a hang is the
 * failure), not a measure of how fast it does.
 */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
