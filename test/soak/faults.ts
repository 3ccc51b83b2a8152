// The fault plan — a function of the seed and the duration only — and its execution.
//
// An episode is a fault and its heal on one target (a hub, an agent, etcd, the link from a hub
// to etcd, the link from an agent to a hub). Episodes on one target never overlap: a target's
// episodes run in order, each at its planned time or as soon as the previous one is over.
import { Rng } from './prng.js';

export const FAULT_WEIGHTS = {
  'hub-kill': 4, 'hub-term': 2, 'hub-stop': 3,
  'agent-kill': 4, 'agent-term': 2, 'agent-stop': 3,
  'etcd-link-cut': 3, 'etcd-link-refuse': 2, 'etcd-link-budget': 5, 'etcd-link-delay': 2, 'etcd-link-throttle': 2, 'partition-compact': 3,
  'hub-link-cut': 3, 'hub-link-refuse': 2, 'hub-link-budget': 4, 'hub-link-delay': 2, 'hub-link-throttle': 2,
  'compact': 4, 'etcd-restart': 1, 'etcd-kill': 1,
} as const;
/**
 * With a cluster of etcd members (--etcd-members 3): one member at a time is SIGKILLed (and
 * restarted), restarted gracefully, SIGSTOPped, cut from the other members (minority), or
 * loses the leadership (MoveLeader); whole-etcd restarts are out. A separate table, so that the
 * plans of the single-etcd soak stay what their seeds always gave.
 */
export const CLUSTER_FAULT_WEIGHTS = {
  ...Object.fromEntries(Object.entries(FAULT_WEIGHTS).filter(([k]) => k !== 'etcd-restart' && k !== 'etcd-kill')) as Omit<typeof FAULT_WEIGHTS, 'etcd-restart' | 'etcd-kill'>,
  'member-kill': 3, 'member-restart': 2, 'member-stop': 2, 'member-partition': 3, 'leader-move': 3,
} as const;
export type FaultKind = keyof typeof FAULT_WEIGHTS | keyof typeof CLUSTER_FAULT_WEIGHTS;
export const ALL_FAULT_KINDS: ReadonlySet<string> = new Set([...Object.keys(FAULT_WEIGHTS), ...Object.keys(CLUSTER_FAULT_WEIGHTS)]);

export interface Episode {
  /** ms after the start of the run */
  at: number;
  kind: FaultKind;
  /** 'hub1', 'agent3', 'etcd', 'etcd-link0', 'hub-link2.1' (agent 2 → hub 1) */
  target: string;
  /** how long the fault lasts (ms) */
  duration: number;
  /** kind-specific numbers: byte budgets, delay ms, bytes/s */
  params: number[];
}

export interface Topology { hubs: number; agents: number; etcdMembers?: number }

/** Planned time a restart or heal takes beyond the fault itself, so per-target episodes rarely queue. */
const SETTLE_MS = 1000;

export function planFaults(seed: number, seconds: number, topo: Topology): Episode[] {
  const rng = new Rng(seed, 1);
  const episodes: Episode[] = [];
  const busyUntil = new Map<string, number>();
  const end = seconds * 1000 - 1500;
  const members = topo.etcdMembers ?? 1;
  const weights: Record<string, number> = members > 1 ? CLUSTER_FAULT_WEIGHTS : FAULT_WEIGHTS;
  for (let t = 800; t < end; t += rng.int(250, 1100)) {
    const kind = rng.weighted(weights) as FaultKind;
    const hub = rng.int(0, topo.hubs - 1);
    const agent = rng.int(0, topo.agents - 1);
    const target = kind.startsWith('hub-link') ? `hub-link${agent}.${hub}`
      : kind.startsWith('hub-') ? `hub${hub}`
      : kind.startsWith('agent-') ? `agent${agent}`
      : kind.startsWith('etcd-link') || kind === 'partition-compact' ? `etcd-link${hub}`
      : 'etcd'; // whole etcd, or (member-*, leader-move) one member at a time
    const duration = kind === 'compact' ? 0 : kind === 'etcd-restart' ? 0 : rng.int(200, kind.endsWith('-stop') ? 3000 : 2500);
    const params = kind.endsWith('-budget') ? Array.from({ length: rng.int(1, 3) }, () => rng.int(0, 1) ? rng.int(0, 600) : rng.int(600, 40_000)).concat(rng.int(0, 1))
      : kind.endsWith('-delay') ? [rng.int(20, 400)]
      : kind.endsWith('-throttle') ? [rng.int(2_000, 60_000)]
      : kind.startsWith('member-') || kind === 'leader-move' ? [rng.int(0, members - 1)]
      : [];
    // A target already busy at t keeps its episode; this draw is dropped (the draws stay the same).
    if ((busyUntil.get(target) ?? 0) > t) continue;
    busyUntil.set(target, t + duration + SETTLE_MS);
    episodes.push({ at: t, kind, target, duration, params });
  }
  return episodes;
}

export interface FaultCounts { [kind: string]: number }

/** Runs each target's episodes in order; resolves when all are done (or skipped after `stopped()`). */
export async function runPlan(
  episodes: Episode[],
  execute: (e: Episode) => Promise<boolean>,
  startedAt: number,
  stopped: () => boolean,
  counts: FaultCounts,
): Promise<void> {
  const byTarget = new Map<string, Episode[]>();
  for (const e of episodes) {
    const list = byTarget.get(e.target) ?? [];
    list.push(e);
    byTarget.set(e.target, list);
  }
  await Promise.all([...byTarget.values()].map(async (list) => {
    for (const e of list) {
      const wait = startedAt + e.at - Date.now();
      if (wait > 0) await sleepUnless(wait, stopped);
      if (stopped()) return;
      if (await execute(e)) counts[e.kind] = (counts[e.kind] ?? 0) + 1;
    }
  }));
}

async function sleepUnless(ms: number, stopped: () => boolean): Promise<void> {
  const until = Date.now() + ms;
  while (!stopped() && Date.now() < until) await new Promise((r) => setTimeout(r, Math.min(100, until - Date.now())));
}
