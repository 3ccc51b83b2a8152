// Outputs that are Go maps keyed by a pod group's Spec.Name (coreinfo, proxy, webprocs,
// rebellion, backupspec). Two cache keys may carry the same Spec.Name; Go kept whichever its
// map iteration met last, we keep the one last in key order so the answer is stable.
import type { PodGroupEntry } from '../../indexes/index.js';

/**
 * The JSON object of `entryOf` over `entries` (ordered by Spec.Name, then key). `entryOf` returns
 * the encoded `"name":value` member, or undefined to leave the pod group out.
 */
export function objectByName(entries: readonly PodGroupEntry[], entryOf: (entry: PodGroupEntry) => string | undefined): string {
  let out = '{';
  let pendingName: string | undefined;
  let pending = '';
  for (const entry of entries) {
    const member = entryOf(entry);
    if (member === undefined) continue;
    if (pendingName !== entry.pg.name) {
      if (pendingName !== undefined) out += (out.length > 1 ? ',' : '') + pending;
      pendingName = entry.pg.name;
    }
    pending = member;
  }
  if (pendingName !== undefined) out += (out.length > 1 ? ',' : '') + pending;
  return out + '}';
}
