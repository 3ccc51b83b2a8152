// Event streams (API.md §3), grouped: every stream watching the same (endpoint, scope) is in
// one group, so a change is rendered, compared and framed ONCE per group and the same bytes
// are written to each socket.
//
// Framing is the original's, written raw on the socket (no chunked encoding):
//   id: N\nevent: NAME\ndata: LINE\n\n       heartbeats: id: 0\nevent: heartbeat\n\n
// A stream whose socket buffers more than maxBufferedBytes is closed: its client reconnects
// and gets `init` (API.md §11 item 3) — it is never left silently stale.
import type { Socket } from 'node:net';
import type { AnswerCache } from './api/answers.js';
import type { Answer, Endpoint } from './api/types.js';
import type { ChangedKey, IndexChanges, IndexName } from './indexes/index.js';

export const STREAM_HEADER = 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nVary: Accept-Encoding\r\n\r\n';
const HEARTBEAT = Buffer.from('id: 0\nevent: heartbeat\n\n');
/** The longest delay a node timer holds: beyond it setTimeout/setInterval fire after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/**
 * How long a connection we close keeps reading after its last byte went out (Go's
 * rstAvoidanceDelay): closing a socket with unread input makes the kernel send RST, and a
 * client that is still writing may then lose the answer before it reads it.
 */
const LINGER_MS = 500;

/**
 * Calls `beat` every periodMs, like Go's time.Ticker, for any period. setInterval cannot: past
 * MAX_TIMER_MS it fires every millisecond (TimeoutOverflowWarning), so longer periods are waited
 * out in chained timers of at most maxTimerMs. Returns the function that stops it.
 */
export function every(periodMs: number, beat: () => void, maxTimerMs = MAX_TIMER_MS): () => void {
  if (periodMs <= maxTimerMs) {
    const interval = setInterval(beat, periodMs);
    return () => clearInterval(interval);
  }
  let left = periodMs;
  let timer: NodeJS.Timeout | undefined;
  const wait = () => {
    const ms = Math.min(left, maxTimerMs);
    left -= ms;
    timer = setTimeout(fire, ms);
  };
  const fire = () => {
    if (left <= 0) {
      left = periodMs;
      beat();
    }
    // beat() may have stopped it.
    if (timer !== undefined) wait();
  };
  wait();
  return () => {
    clearTimeout(timer);
    timer = undefined;
  };
}

/**
 * Ends a connection the agent owns (a stream, or an answer after which it closes): the last
 * bytes, FIN, then reading on until the client closes too or LINGER_MS have passed.
 */
export function endConnection(socket: Socket, lastBytes?: string | Buffer): void {
  if (socket.destroyed || socket.writableEnded) return;
  const linger = () => {
    const timer = setTimeout(() => socket.destroy(), LINGER_MS).unref();
    socket.once('close', () => clearTimeout(timer));
  };
  if (lastBytes === undefined) socket.end(linger);
  else socket.end(lastBytes, linger);
  socket.resume();
}

export function eventFrame(id: number, event: string, payload: string): string {
  if (payload === '') return `id: ${id}\nevent: ${event}\n\n`;
  // Payloads are single-line JSON or error texts; split like the original for safety.
  const data = payload.includes('\n') ? payload.split('\n').map((l) => `data: ${l}\n`).join('') : `data: ${payload}\n`;
  return `id: ${id}\nevent: ${event}\n${data}\n`;
}

/**
 * A subscriber of a group that is not a socket (the gRPC mirror, agent/grpc/): handed every
 * answer the group's sockets are sent, with the event it goes out as.
 */
export type StreamListener = (answer: Answer, event: 'update' | 'delete' | 'error') => void;

interface Stream {
  socket: Socket;
  group: StreamGroup;
  stopHeartbeat?: () => void;
}

class StreamGroup {
  readonly streams = new Set<Stream>();
  readonly listeners = new Set<StreamListener>();
  /** The answer every stream in the group has been sent last. */
  last: Answer;
  nextId = 2;

  constructor(readonly key: string, readonly endpoint: Endpoint, readonly scope: string, initial: Answer) {
    this.last = initial;
  }
}

export interface StreamStats {
  open: number;
  groups: number;
  eventsSent: number;
  closedSlow: number;
}

export class StreamHub {
  private readonly groups = new Map<string, StreamGroup>();
  /** Groups by the index whose changes concern them. */
  private readonly byIndex = new Map<IndexName, Set<StreamGroup>>();
  readonly stats: StreamStats = { open: 0, groups: 0, eventsSent: 0, closedSlow: 0 };

  constructor(private readonly answers: AnswerCache, private readonly maxBufferedBytes: number) {}

  /**
   * Starts a stream on a socket node:http has let go of (agent/http.ts takeOver). Writes the
   * header block and the init event (or an error event and closes). The socket belongs to the
   * stream from here on; heartbeatSec 0 means none.
   */
  open(socket: Socket, endpoint: Endpoint, scope: string, heartbeatSec: number): void {
    socket.setNoDelay(true);
    const answer = this.answers.get(endpoint, scope);
    if (answer.status !== 200) {
      endConnection(socket, STREAM_HEADER + eventFrame(0, 'error', answer.body));
      return;
    }
    const group = this.groupFor(endpoint, scope, answer);
    const stream: Stream = { socket, group };
    group.streams.add(stream);
    this.stats.open++;
    socket.write(STREAM_HEADER + eventFrame(1, 'init', answer.body));
    if (heartbeatSec > 0) stream.stopHeartbeat = every(heartbeatSec * 1000, () => this.write(stream, HEARTBEAT, false));
    socket.once('close', () => this.remove(stream));
  }

  /**
   * Joins `listener` to the group of (endpoint, scope): the current answer is returned (the
   * caller sends it first) and from then on the listener gets every update the group's sockets
   * get, rendered once for all. Not joined when the current answer is an error.
   */
  subscribe(endpoint: Endpoint, scope: string, listener: StreamListener): { initial: Answer; close: () => void } {
    const initial = this.answers.get(endpoint, scope);
    if (initial.status !== 200) return { initial, close: () => {} };
    const group = this.groupFor(endpoint, scope, initial);
    group.listeners.add(listener);
    return { initial, close: () => { if (group.listeners.delete(listener)) this.dropIfIdle(group); } };
  }

  private groupFor(endpoint: Endpoint, scope: string, answer: Answer): StreamGroup {
    const key = endpoint.path + '\u0000' + scope;
    let group = this.groups.get(key);
    if (!group) {
      group = new StreamGroup(key, endpoint, scope, answer);
      this.groups.set(key, group);
      let set = this.byIndex.get(endpoint.index);
      if (!set) this.byIndex.set(endpoint.index, (set = new Set()));
      set.add(group);
      this.stats.groups = this.groups.size;
    }
    // The group's last answer is always current after each change; keep it exact anyway.
    group.last = answer;
    return group;
  }

  /** Called after every cache change with what the indexes say it touched. */
  changed(changes: IndexChanges): void {
    for (const [index, keys] of Object.entries(changes) as Array<[IndexName, ChangedKey[]]>) {
      const groups = this.byIndex.get(index);
      if (!groups || keys.length === 0) continue;
      for (const group of groups) this.update(group, keys);
    }
  }

  closeAll(): void {
    for (const g of this.groups.values()) for (const s of g.streams) s.socket.destroy();
  }

  private update(group: StreamGroup, keys: ChangedKey[]): void {
    let touched = false;
    let onlyDeletes = true;
    for (const k of keys) {
      if (group.scope === '' || k.key.startsWith(group.scope)) {
        touched = true;
        if (!k.deleted) { onlyDeletes = false; break; }
      }
    }
    if (!touched) return;
    const answer = this.answers.get(group.endpoint, group.scope);
    if (answer.body === group.last.body && answer.status === group.last.status) return;
    group.last = answer;
    // Encoded once for the whole group: every socket is written the same bytes.
    let bytes: Buffer;
    let closeAfter = false;
    if (answer.status !== 200) {
      // e.g. webprocs' ratio guard failing mid-stream: error event, then close (API.md §3 step 6).
      bytes = Buffer.from(eventFrame(0, 'error', answer.body));
      closeAfter = true;
    } else {
      bytes = Buffer.from(eventFrame(group.nextId++, onlyDeletes ? 'delete' : 'update', answer.body));
    }
    for (const s of group.streams) {
      this.write(s, bytes);
      if (closeAfter) endConnection(s.socket);
    }
    const event = closeAfter ? 'error' : onlyDeletes ? 'delete' : 'update';
    for (const listener of group.listeners) listener(answer, event);
  }

  private write(stream: Stream, bytes: Buffer, isEvent = true): void {
    const socket = stream.socket;
    if (socket.destroyed || socket.writableEnded) return;
    if (socket.writableLength > this.maxBufferedBytes) {
      this.stats.closedSlow++;
      socket.destroy();
      return;
    }
    socket.write(bytes);
    if (isEvent) this.stats.eventsSent++;
  }

  private remove(stream: Stream): void {
    stream.stopHeartbeat?.();
    const group = stream.group;
    if (!group.streams.delete(stream)) return;
    this.stats.open--;
    this.dropIfIdle(group);
  }

  private dropIfIdle(group: StreamGroup): void {
    if (group.streams.size > 0 || group.listeners.size > 0) return;
    this.groups.delete(group.key);
    this.byIndex.get(group.endpoint.index)?.delete(group);
    this.stats.groups = this.groups.size;
  }
}
