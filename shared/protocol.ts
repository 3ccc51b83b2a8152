// The wire protocol between hub and agent: binary msgpack frames over a WebSocket.
//
// Every frame is a plain msgpack map with a one-letter-ish type tag `t`. We
// deliberately use msgpackr WITHOUT its record/structure extension: a frame is
// encoded once and the same bytes go to every agent, so no frame may depend on
// structures defined earlier in a particular connection (DESIGN.md, Known traps).
//
// Revisions are etcd revisions (v3) or etcd indexes (v2). They stay well below
// 2^53, so a JS number carries them exactly.
import { Packr } from 'msgpackr';

/**
 * The protocol's base version, which every hub and agent speaks. A hello says `v` (the base)
 * and `vmax` (the highest it speaks); the connection then uses the lower of the two ends'
 * highest. Hubs of version 1 check `v` only and ignore `vmax`, agents of version 1 send no
 * `vmax`: so a rolling upgrade works in both orders.
 *   1 — snapshots, deltas, progress, move, err;
 *   2 — adds the `members` frame (the hub tier's live members), `move` with a target `to`, and
 *       the agent's version in the hello.
 */
export const PROTOCOL_VERSION = 1;
export const PROTOCOL_VERSION_MAX = 2;

/**
 * agent → hub, first frame on a connection. `rev` is the agent's revision (0 = nothing);
 * `epoch` the store identity its state came from (optional: older agents do not send it);
 * `vmax` the highest protocol version it speaks (absent: 1); `ver` its program version.
 */
export interface HelloFrame { t: 'hello'; v: number; node: string; rev: number; epoch?: string; vmax?: number; ver?: string }

/**
 * hub → agent: the whole state at `rev`, in parts. Parts of one snapshot share `rev`;
 * `part` counts from 0 and `last` marks the final one. The agent swaps its state only
 * when the last part arrived, so a connection lost mid-snapshot changes nothing.
 */
export interface SnapshotFrame {
  t: 'snap'; rev: number; part: number; last: boolean; puts: Array<[string, string]>; stale: boolean;
  /** The store identity this state belongs to ('' or absent: unknown). */
  epoch?: string;
  /**
   * The store's history was reset (etcd restored from an older backup or rebuilt): the agent
   * must take this state even though its revision is lower than the agent's. Only ever sent
   * after the hub checked, against the store itself, that the agent's revision is not part of
   * the store's history.
   */
  reset?: boolean;
}

/**
 * hub → agent: everything that changed after `prev` up to and including `rev`.
 * An agent at revision r may apply it when prev <= r < rev; prev > r means a gap.
 */
export interface DeltaFrame { t: 'delta'; prev: number; rev: number; puts: Array<[string, string]>; dels: string[] }

/**
 * hub → agent: heartbeat. The hub's state is complete up to `rev`; `stale` = hub lost etcd.
 * `pi` is the hub's progress interval in ms (agents derive their silence timeout from it);
 * `epoch` the store identity. Both optional so that older hubs and agents interoperate.
 */
export interface ProgressFrame { t: 'prog'; rev: number; stale: boolean; pi?: number; epoch?: string }

/**
 * hub → agent: please reconnect elsewhere (or here again) after `afterMs`. Sent on graceful
 * shutdown, and (version 2) to balance the hub tier: `to` is then the hub to move to.
 */
export interface MoveFrame { t: 'move'; afterMs: number; reason: string; to?: string }

/** One live hub of the tier, as the membership registry has it. */
export interface MemberInfo { url: string; agents: number }

/** hub → agent (version 2): the hub tier's live members; sent on going live and when they change. */
export interface MembersFrame { t: 'members'; hubs: MemberInfo[] }

/** either direction: a fatal problem; the sender closes the connection after it. */
export interface ErrorFrame { t: 'err'; code: string; msg: string }

export type HubFrame = SnapshotFrame | DeltaFrame | ProgressFrame | MoveFrame | MembersFrame | ErrorFrame;
export type AgentFrame = HelloFrame;
export type Frame = HubFrame | AgentFrame;

const packr = new Packr({
  useRecords: false,
  // Stryker disable next-line BooleanLiteral: moreTypes changes only how BigInt, Set, Error, RegExp, ArrayBuffer and typed arrays encode; frames hold strings, numbers, booleans, arrays and plain objects alone
  moreTypes: false,
  mapsAsObjects: true,
  bundleStrings: false,
});

/**
 * Encodes a frame into a Buffer of its own. msgpackr returns a view on a shared working buffer
 * that only grows; a frame the hub keeps (its history, snapshot parts) would otherwise pin a
 * whole such buffer, and the history's byte bound would not be what it says.
 */
export function encodeFrame(frame: Frame): Buffer {
  return Buffer.from(packr.pack(frame));
}

export class ProtocolError extends Error {
  constructor(readonly code: string, message: string) { super(message); }
}

/** Decodes and validates a frame. Throws ProtocolError on anything malformed. */
export function decodeFrame(bytes: Uint8Array): Frame {
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (err) {
    throw new ProtocolError('bad_frame', `undecodable msgpack frame: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ProtocolError('bad_frame', 'frame is not a map');
  }
  const f = value as Record<string, unknown>;
  switch (f.t) {
    case 'hello':
      if (typeof f.v !== 'number' || typeof f.node !== 'string' || !isRevision(f.rev) || !isOptional(f.epoch, 'string')
        || !isOptional(f.vmax, 'number') || !isOptional(f.ver, 'string')) break;
      return f as unknown as HelloFrame;
    case 'snap':
      if (!isRevision(f.rev) || typeof f.part !== 'number' || typeof f.last !== 'boolean' || !isPairs(f.puts)
        || !isOptional(f.epoch, 'string') || !isOptional(f.reset, 'boolean')) break;
      return f as unknown as SnapshotFrame;
    case 'delta':
      if (!isRevision(f.prev) || !isRevision(f.rev) || !isPairs(f.puts) || !isStrings(f.dels)) break;
      return f as unknown as DeltaFrame;
    case 'prog':
      if (!isRevision(f.rev) || !isOptional(f.pi, 'number') || !isOptional(f.epoch, 'string')) break;
      return f as unknown as ProgressFrame;
    case 'move':
      if (typeof f.afterMs !== 'number' || !isOptional(f.to, 'string')) break;
      return f as unknown as MoveFrame;
    case 'members':
      if (!Array.isArray(f.hubs) || !f.hubs.every((h) => h !== null && typeof h === 'object' && typeof (h as MemberInfo).url === 'string' && typeof (h as MemberInfo).agents === 'number')) break;
      return f as unknown as MembersFrame;
    case 'err':
      if (typeof f.code !== 'string' || typeof f.msg !== 'string') break;
      return f as unknown as ErrorFrame;
    default:
      throw new ProtocolError('bad_frame', `unknown frame type ${JSON.stringify(f.t)}`);
  }
  throw new ProtocolError('bad_frame', `malformed ${String(f.t)} frame`);
}

function isOptional(v: unknown, type: 'string' | 'number' | 'boolean'): boolean {
  return v === undefined || v === null || typeof v === type;
}

function isRevision(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isStrings(v: unknown): v is string[] {
  if (!Array.isArray(v)) return false;
  for (const s of v) if (typeof s !== 'string') return false;
  return true;
}

function isPairs(v: unknown): v is Array<[string, string]> {
  if (!Array.isArray(v)) return false;
  for (const p of v) {
    if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== 'string' || typeof p[1] !== 'string') return false;
  }
  return true;
}

/** The etcd key ranges the agents' API reads (DESIGN.md, Data flow 2). Everything else under /lain is not forwarded. */
export const API_KEY_RANGES = [
  'config/',
  'deployd/pod_groups/',
  'deployd/depends/pods/',
  'nodes/nodes/',
] as const;

/** Returns a filter for full etcd keys under `prefix` (e.g. "/lain/") that keeps only the API's ranges. */
export function keyRangeFilter(prefix: string): (key: string) => boolean {
  const base = prefix.endsWith('/') ? prefix : prefix + '/';
  const ranges = API_KEY_RANGES.map((r) => base + r);
  return (key) => {
    for (const r of ranges) if (key.startsWith(r)) return true;
    return false;
  };
}
