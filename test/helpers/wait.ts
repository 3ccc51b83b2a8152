// Barriers for tests: wait on the event that proves a condition, never on a sleep.
//
// The agent writes a change's stream events synchronously while it applies the change, and
// its /debug revision moves in the same step; its eventsSent counter counts every event it has
// written to a stream socket (init and heartbeats aside). That makes two positive barriers:
//   - agentAt(base, rev): the agent has applied etcd revision `rev` (and written its events);
//   - streamsCaughtUp(base, streams, since): every event the agent has written since `since`
//     has arrived on `streams`. Once the agent is at the last revision that matters, nothing
//     more can come: an absence check is then a plain comparison, not a wait.
import net from 'node:net';
import { httpGet, type EventStream } from '../../testkit/http.js';
import { waitFor } from '../../testkit/procs.js';

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

/**
 * Reads from a fresh TCP connection after writing `bytes`, until `done(received)` holds or the
 * server closes; then closes. For a stream that never ends, `done` says what must have arrived
 * (instead of reading for a fixed time).
 */
export function rawUntil(port: number, host: string, bytes: string, done: (received: string) => boolean, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let received = '';
    const socket = net.connect({ port, host });
    socket.setEncoding('latin1');
    const finish = (error?: Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(received);
    };
    const timer = setTimeout(() => finish(new Error(`${host}:${port}: what was awaited did not arrive within ${timeoutMs} ms; received ${JSON.stringify(received)}`)), timeoutMs);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (text: string) => {
      received += text;
      if (done(received)) finish();
    });
    socket.on('close', () => finish());
    socket.on('error', (error) => (received.length > 0 ? finish() : finish(error)));
  });
}

/** Resolves after the current event-loop turn's I/O callbacks (the poll phase) have run. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export interface FakeClock {
  /** Moves the fake time on by `ms`, firing each due timer in time order. */
  tick(ms: number): void;
  readonly now: number;
  /** Puts the real timers back. */
  uninstall(): void;
}

/**
 * Replaces the global setTimeout/setInterval (and their clear functions) with a fake clock,
 * for code whose subject is time. Install, drive with tick() and uninstall within one
 * synchronous stretch: everything else in the process keeps the real timers.
 */
export function installFakeClock(): FakeClock {
  interface FakeTimer { id: number; at: number; interval?: number; fn: () => void }
  const real = { setTimeout, clearTimeout, setInterval, clearInterval };
  const timers = new Map<number, FakeTimer>();
  let now = 0;
  let nextId = 1;
  const add = (fn: () => void, ms: number, interval: boolean) => {
    const delay = Math.max(1, Math.trunc(ms) || 0);
    const timer: FakeTimer = { id: nextId++, at: now + delay, fn, interval: interval ? delay : undefined };
    timers.set(timer.id, timer);
    // A handle like Node's enough for the code under test (unref, ref, hasRef).
    return { id: timer.id, unref() { return this; }, ref() { return this; }, hasRef: () => true, [Symbol.toPrimitive]: () => timer.id };
  };
  const clear = (handle: unknown) => {
    if (handle && typeof handle === 'object' && 'id' in handle) timers.delete((handle as { id: number }).id);
  };
  const g = globalThis as unknown as Record<string, unknown>;
  g.setTimeout = (fn: () => void, ms = 0) => add(fn, ms, false);
  g.setInterval = (fn: () => void, ms = 0) => add(fn, ms, true);
  g.clearTimeout = clear;
  g.clearInterval = clear;
  return {
    get now() { return now; },
    tick(ms: number) {
      const end = now + ms;
      for (;;) {
        let due: FakeTimer | undefined;
        for (const timer of timers.values()) if (timer.at <= end && (!due || timer.at < due.at || (timer.at === due.at && timer.id < due.id))) due = timer;
        if (!due) break;
        now = due.at;
        if (due.interval === undefined) timers.delete(due.id);
        else due.at += due.interval;
        due.fn();
      }
      now = end;
    },
    uninstall() {
      Object.assign(g, real);
    },
  };
}
