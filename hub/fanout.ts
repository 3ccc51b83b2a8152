// What the agent-facing server (hub/server.ts) needs of the state it serves, and what a hub
// exposes of its fan-out. Two implementations of each:
//  - in one thread: HubState itself is the FanoutState, and one HubServer is the Fanout;
//  - across worker threads: each worker serves a RingState (hub/worker-state.ts), a view of the
//    main thread's HubState kept from the frame ring (hub/ring.ts), and the main thread's
//    WorkerPool (hub/pool.ts) is the Fanout, summing the workers' counters.

/** One agent as /status shows it. */
export interface AgentInfo {
  id: number; node: string; version: string; remote: string; phase: string; rev: number;
  /** Connected at (ms since the epoch). */
  since: number;
  queuedBytes: number;
  /** The protocol version the connection speaks. */
  protocol: number;
  /** The worker thread serving it (a hub with workers). */
  worker?: number;
}

/** One delta of the history a catch-up sends; its bytes come from FanoutState.frameOf. */
export interface FrameRef { readonly rev: number }

/** The snapshot of one revision, encoded once and shared by every agent (and worker). */
export interface SnapshotParts { rev: number; frames: readonly Buffer[] }

export interface StateListener {
  /** A new delta; `frame` is the encoded DeltaFrame. */
  onDelta(frame: Buffer, prev: number, rev: number): void;
  /** The revision moved without a change to kept keys, or the stale flag flipped. */
  onProgress(rev: number, stale: boolean): void;
  /**
   * The store's history was reset (its revision went backwards or its identity changed):
   * every agent holds state from the old history and must be sent a reset snapshot.
   */
  onReset(rev: number): void;
  /**
   * A list at our own revision showed the state wrong (the store's watch missed a change; see
   * HubState.replaceAll): no delta can carry that, so every connected agent is sent a snapshot again.
   */
  onCorrected?(rev: number): void;
  /** The revisions unknown to the hub (HubState gaps), or the one about to be known, changed. */
  onGaps?(gaps: ReadonlyArray<readonly [number, number]>): void;
  /** A snapshot that snapshotFrames() could not give at once is there now (worker threads). */
  onSnapshotReady?(): void;
}

export interface FanoutState {
  /** The state is complete up to this revision (0 = nothing loaded yet). */
  readonly revision: number;
  /** The revision of the last change to the kept keys (<= revision); deltas chain on it. */
  readonly lastChangeRev: number;
  /** True while the hub cannot reach its store. */
  readonly stale: boolean;
  readonly loaded: boolean;
  /** The store identity the state belongs to ('' = unknown). */
  readonly epoch: string;
  setListener(listener: StateListener): void;
  /**
   * The deltas that bring an agent at `rev` to the current state: [] when it is current
   * already, null when the history does not reach back that far (it needs a snapshot).
   */
  framesAfter(rev: number): readonly FrameRef[] | null;
  /** Whether the state at `rev` is about to be known (HubState.pendingGap): wait rather than send a snapshot. */
  pending(rev: number): boolean;
  /** A delta's encoded bytes, or null when they are gone (a ring overwrote them): send a snapshot. */
  frameOf(ref: FrameRef): Buffer | null;
  /** The current state's snapshot, or undefined while it is being fetched (onSnapshotReady follows). */
  snapshotFrames(): SnapshotParts | undefined;
  /** The same marked `reset` (see SnapshotFrame.reset). */
  resetSnapshotFrames(): SnapshotParts | undefined;
}

export interface HubCounters {
  snapshotsSent: number;
  resumes: number;
  deltasSentFrames: number;
  bytesSent: number;
  slowAgentDisconnects: number;
  /** Clients refused: a missing or wrong token, or a protocol violation. */
  rejectedClients: number;
  /** Agents sent away after waiting aheadTimeoutMs for the hub. */
  waitTimeouts: number;
  /** Agents sent a reset snapshot (their state was from another store history). */
  resetSnapshots: number;
  /** Agents closed because the bytes queued to all agents passed maxTotalBackpressure. */
  totalBackpressureDisconnects: number;
}

export const COUNTER_NAMES: ReadonlyArray<keyof HubCounters> = [
  'snapshotsSent', 'resumes', 'deltasSentFrames', 'bytesSent', 'slowAgentDisconnects', 'rejectedClients',
  'waitTimeouts', 'resetSnapshots', 'totalBackpressureDisconnects',
];

/** A hub's fan-out, whichever threads it runs on. */
export interface Fanout {
  /** The port agents connect to (known after listen). */
  readonly port: number;
  /** Agents connected (all workers). */
  readonly agentCount: number;
  /** Counters (summed over the workers). */
  readonly counters: HubCounters;
  /** Agents told to move that are still connected. */
  readonly movingCount: number;
  listen(): Promise<number>;
  /**
   * Graceful shutdown: agents are told to move, spread over `spreadMs` — to `targets` in turn
   * (agents of protocol 2), or to the next hub of their own list; waits for them to leave.
   */
  drainAgents(spreadMs: number, graceMs: number, targets?: readonly string[]): Promise<void>;
  /** The members frame for agents of protocol 2 (hub/members.ts). */
  setMembers(frame: Buffer): void;
  /** Asks up to `count` agents to move, the i-th to targets[i % n]; resolves to how many were asked. */
  moveAgents(count: number, targets: readonly string[], reason: string, spreadMs: number): number | Promise<number>;
  /** The agents connected, for /status. */
  agents(): AgentInfo[] | Promise<AgentInfo[]>;
  /** Stops serving: no more connections, progress frames or agents. */
  close(): Promise<void>;
  /** The hub became current (or was reset): agents waiting for that can be served. */
  notifyCurrent(): void;
}
